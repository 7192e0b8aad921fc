"""Script args as the webui's API delivers them: both forms accepted, every bad input refused by name.

Each case goes through the API's own argument merge (the host's copy of Api.init_script_args) and
the real script; a refused setting must fail the job (the webui would swallow an exception raised
in `process`) with a message that names the field and what is allowed.
"""

import math

import pytest
import torch
from fastapi import HTTPException

import harness
from sag_core.params import SagParamError

BAD_INPUTS = [
    ([True, "0.5"], "scale", "got '0.5'"),
    ([True, "high"], "scale", "got 'high'"),
    ([True, None], "scale", "got None"),
    ([True, float("nan")], "scale", "got nan"),
    ([True, math.inf], "scale", "got inf"),
    ([True, -math.inf], "scale", "got -inf"),
    ([True, 5.5], "scale", "from -2 to 5"),
    ([True, -3], "scale", "from -2 to 5"),
    ([True, [0.5]], "scale", "got [0.5]"),
    ([True, False], "scale", "got False"),
    (["true", 0.5], "enabled", "true or false; got 'true'"),
    (["false"], "enabled", "true or false; got 'false'"),
    ([1, 0.5], "enabled", "true or false; got 1"),
    ([None], "enabled", "true or false; got None"),
    ([True, 0.5, -0.1], "blur_sigma", "from 0 to 10"),
    ([True, 0.5, 10.5], "blur_sigma", "from 0 to 10"),
    ([True, 0.5, "2"], "blur_sigma", "got '2'"),
    ([True, 0.5, 2.0, 4.5], "threshold", "from 0 to 4"),
    ([True, 0.5, 2.0, -1], "threshold", "from 0 to 4"),
    ([True, 0.5, 2.0, 1.0, -0.1], "start", "from 0 to 1"),
    ([True, 0.5, 2.0, 1.0, 0.0, 1.2], "end", "from 0 to 1"),
    ([True, 0.5, 2.0, 1.0, 0.7, 0.3], "start", "must not be after end"),
    ([True, 0.5, 2.0, 1.0, 0.0, 1.0, 0.3], "preview", "true or false; got 0.3"),
    ([True, 0.5, 2.0, 1.0, 0.0, 1.0, "yes"], "preview", "true or false; got 'yes'"),
    ([True, 0.5, 2.0, 1.0, 0.0, 1.0, False, 0.3], "pag_enabled", "true or false; got 0.3"),
    ([True, 0.5, 2.0, 1.0, 0.0, 1.0, True, *[None] * 7, 9], "args", "more than 14 positional values"),
    ([{"pag_enabled": True, "pag_scale": 11}], "pag_scale", "from 0 to 10"),
    ([{"seg_enabled": True, "seg_scale": -1}], "seg_scale", "from 0 to 10"),
    ([{"seg_enabled": True, "seg_blur_sigma": -0.5}], "seg_blur_sigma", "from 0 to 9999"),
    ([{"seg_enabled": "on"}], "seg_enabled", "true or false; got 'on'"),
    ([{"enabled": True, "layer": "up 1"}], "layer",
     "one of the loaded model's self-attention layers: input 5, input 7, middle, output 0, output 1, output 2, "
     "output 3; got 'up 1'"),
    ([{"pag_enabled": True, "layer": 3}], "layer", "got 3"),
    ([{"enabled": True, "layer": "output 11"}], "layer", "its layers are input 5, input 7, middle, output 0"),
    ([{"enabled": True, "smooth_mask": "yes"}], "smooth_mask", "true or false; got 'yes'"),
    ([{"enabled": True, "preview": 1}], "preview", "true or false; got 1"),
    ([{"enabled": True, "sacle": 0.5}], "sacle", "unknown field 'sacle'"),
    ([{"enabled": "yes"}], "enabled", "true or false; got 'yes'"),
    ([{"enabled": True, "scale": "0.5"}], "scale", "got '0.5'"),
    ([{"enabled": True, "blur_sigma": math.nan}], "blur_sigma", "got nan"),
    ([{"enabled": True, "start": 0.9, "end": 0.1}], "start", "must not be after end"),
    ([{"enabled": True}, 0.3], "args", "must be the only value in args; got 1 more value"),
]

GOOD_INPUTS = [
    ([True, 0.6, 1.5, 1.1], [{"enabled": True, "scale": 0.6, "blur_sigma": 1.5, "threshold": 1.1}]),
    ([True], [{"enabled": True}]),
    ([True, 0.75, 2.0, 1.0, 0.0, 0.5], [{"end": 0.5, "enabled": True}]),
    ([False, 1.0], [{"enabled": False, "scale": 1.0}]),
    ([True, 0.75, 2.0, 1.0, 0.0, 1.0, True], [{"enabled": True, "preview": True}]),
    ([True, 0.6, 2.0, 1.0, 0.0, 1.0, False, None], [{"enabled": True, "scale": 0.6}]),  # 0.2.0's UI: a spare None
    ([False, 0.75, 2.0, 1.0, 0.0, 1.0, False, True, 2.5], [{"pag_enabled": True, "pag_scale": 2.5}]),
    ([True, 0.75, 2.0, 1.0, 0.0, 1.0, False, False, 3.0, True, 3.0, 4.0, "output 0", True],
     [{"enabled": True, "seg_enabled": True, "seg_blur_sigma": 4.0, "layer": "output 0", "smooth_mask": True}]),
]


pytestmark = pytest.mark.usefixtures("sd1_host")


def test_the_bad_input_table_is_large_enough():
    assert len(BAD_INPUTS) >= 35


@pytest.mark.parametrize("args,field,words", BAD_INPUTS)
def test_bad_api_args_fail_the_job_with_the_field_and_the_allowed_values(ext, args, field, words):
    with pytest.raises(SagParamError) as refused:
        harness.run_job(ext.txt2img, api_args=args, steps=2)
    assert refused.value.field == field
    assert field in str(refused.value) and words in str(refused.value)
    assert not ext.txt2img.errors


def test_a_refused_setting_is_a_client_error_to_the_api_with_one_console_line(ext, capsys):
    """modules/api/api.py handle_exception (webui 1.6.0 to 1.10.1, e.g. 82a973c0 for 1.10.1) answers with the
    exception's `status_code` and `detail` and logs a traceback only for what is not a fastapi HTTPException."""
    with pytest.raises(SagParamError) as refused:
        harness.run_job(ext.txt2img, api_args=[True, 9], steps=2)
    message = "Self-Attention Guidance: scale (SAG scale) must be a number from -2 to 5; got 9"
    assert isinstance(refused.value, HTTPException)
    assert (refused.value.status_code, refused.value.detail, str(refused.value)) == (422, message, message)
    assert type(refused.value).__name__ == "SagParamError"  # the UI shows "SagParamError: <message>" as before
    assert capsys.readouterr().err.splitlines() == [
        "[Self-Attention Guidance] job refused: scale (SAG scale) must be a number from -2 to 5; got 9"]


@pytest.mark.parametrize("positional,named", GOOD_INPUTS)
def test_positional_and_named_api_args_give_the_same_generation(ext, positional, named):
    by_position = harness.run_job(ext.txt2img, api_args=positional, steps=3)
    by_name = harness.run_job(ext.txt2img, api_args=named, steps=3)
    assert torch.equal(by_position.samples, by_name.samples)
    assert by_position.infotexts == by_name.infotexts


def test_missing_api_args_take_defaults_so_no_args_means_off(ext):
    assert harness.run_job(ext.txt2img, api_args=[], steps=2).infotexts == [""]
    assert harness.run_job(ext.txt2img, api_args=[True], steps=2).infotexts == ["SAG scale: 0.75"]
