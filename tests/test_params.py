"""The parameter object and its field table: validation, both argument forms, infotext."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sag_core.params import FIELDS, FIELDS_BY_ATTR, INFOTEXT_FIELDS, SagParamError, SagParams
import dataclasses


def test_field_table_and_parameter_object_list_the_same_fields_with_the_same_defaults():
    assert [f.attr for f in FIELDS] == [f.name for f in dataclasses.fields(SagParams)]
    assert [f.default for f in FIELDS] == [f.default for f in dataclasses.fields(SagParams)]
    assert len({f.infotext for f in INFOTEXT_FIELDS}) == len(INFOTEXT_FIELDS)
    assert [f.attr for f in FIELDS if f not in INFOTEXT_FIELDS] == ["preview", "pag_enabled", "seg_enabled"]
    assert len({f.label for f in FIELDS}) == len(FIELDS)


def test_defaults_are_off_with_the_users_usual_settings():
    params = SagParams()
    assert (params.enabled, params.scale, params.blur_sigma, params.threshold) == (False, 0.75, 2.0, 1.0)
    assert (params.start, params.end) == (0.0, 1.0)


def test_positional_and_named_forms_give_the_same_object():
    positional = SagParams.from_args([True, 0.5, 1.5, 1.2])
    named = SagParams.from_args([{"enabled": True, "scale": 0.5, "blur_sigma": 1.5, "threshold": 1.2}])
    assert positional == named == SagParams(True, 0.5, 1.5, 1.2, 0.0, 1.0)


def test_integers_from_sliders_become_floats():
    params = SagParams.from_args([True, 1, 2, 1])
    assert isinstance(params.scale, float) and params.scale == 1.0


BAD = [
    ([True, 9.0], "scale", "from -2 to 5"),
    ([True, -2.5], "scale", "from -2 to 5"),
    ([True, "0.5"], "scale", "'0.5'"),
    ([True, float("nan")], "scale", "nan"),
    ([True, math.inf], "scale", "inf"),
    ([True, None], "scale", "None"),
    (["true"], "enabled", "true or false"),
    ([1], "enabled", "true or false"),
    ([True, 0.5, -1.0], "blur_sigma", "from 0 to 10"),
    ([True, 0.5, 1.0, 5.0], "threshold", "from 0 to 4"),
    ([True, 0.5, 1.0, 1.0, 0.8, 0.2], "start", "must not be after end"),
    ([True, 0.5, 1.0, 1.0, 0.0, 1.5], "end", "from 0 to 1"),
    ([True, 0.5, 1.0, 1.0, 0.0, 1.0, 7], "preview", "true or false; got 7"),
    ([True, 0.5, 1.0, 1.0, 0.0, 1.0, False, 7], "pag_enabled", "true or false; got 7"),
    ([True, 0.5, 1.0, 1.0, 0.0, 1.0, False, *[None] * 7, 7], "args", "at most 14"),
    ([{"seg_enabled": True, "seg_blur_sigma": 10000}], "seg_blur_sigma", "from 0 to 9999"),
    ([{"layer": "mid"}], "layer", "one of middle, output 0"),
    ([{"enabled": True, "sacle": 1.0}], "sacle", "unknown field"),
    ([{"enabled": True, "scale": True}], "scale", "True"),
]


@pytest.mark.parametrize("args,field,words", BAD)
def test_bad_values_are_refused_with_the_field_and_allowed_range(args, field, words):
    with pytest.raises(SagParamError) as caught:
        SagParams.from_args(args)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert words in str(caught.value)


def test_infotext_is_empty_when_off_and_round_trips_when_on():
    assert SagParams().infotext() == {}
    params = SagParams(True, 0.6, 3.0, 1.0, 0.1, 1.0)
    text = {key: str(value) for key, value in params.infotext().items()}
    assert text == {"SAG scale": "0.6", "SAG blur sigma": "3.0", "SAG start": "0.1"}
    assert SagParams.from_infotext(text) == params


def test_infotext_without_sag_keys_reads_as_off():
    assert SagParams.from_infotext({"Steps": "20"}) == SagParams()


def test_bad_infotext_value_names_the_key():
    with pytest.raises(SagParamError, match="SAG blur sigma"):
        SagParams.from_infotext({"SAG scale": "0.5", "SAG blur sigma": "blurry"})


@given(scale=st.floats(-2, 5), sigma=st.floats(0, 10), threshold=st.floats(0, 4),
       window=st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted))
def test_every_valid_setting_round_trips_through_args_and_infotext(scale, sigma, threshold, window):
    params = SagParams(True, scale, sigma, threshold, *window)
    assert SagParams.from_args(params.as_args()) == params
    assert SagParams.from_infotext({k: repr(v) for k, v in params.infotext().items()}) == params


@pytest.mark.parametrize("start,end,guided", [
    (0.0, 1.0, [True] * 10), (0.0, 0.5, [True] * 5 + [False] * 5), (0.3, 0.6, [False] * 3 + [True] * 3 + [False] * 4),
])
def test_window_selects_steps_by_fraction_of_the_pass(start, end, guided):
    params = SagParams(True, 1.0, 1.0, 1.0, start, end)
    assert [params.in_window(step / 10) for step in range(10)] == guided


def test_scale_zero_needs_no_work():
    assert not SagParams(True, 0.0).active
    assert SagParams(True, 0.5).active
    assert not SagParams(False, 0.5).active


def test_every_field_has_a_hint_and_a_label():
    for field in FIELDS:
        assert field.hint and field.label
    assert FIELDS_BY_ATTR["enabled"].is_bool


def test_named_dict_padded_with_defaults_by_the_webui_api_is_accepted():
    padded = [{"enabled": True, "scale": 0.5}] + [f.default for f in FIELDS[1:]]
    assert SagParams.from_args(padded) == SagParams(True, 0.5)


def test_named_dict_followed_by_other_values_is_refused():
    with pytest.raises(SagParamError, match="must be the only value in args; got 2 more value"):
        SagParams.from_args([{"enabled": True}, 0.5, 3.0])


@pytest.mark.parametrize("tail,sent", [
    ([0.3], 1),
    ([0.3, 2.0, 1.0, 0.0, 1.0, False], 1),         # the API padded one extra value with the defaults
    ([0.75, 2.0, 1.0, 0.0, 0.5, False], 5),         # the fifth value is the client's, the rest padding
    ([0.75, 2.0, 1.0, 0.0, 1.0, False, "x"], 7),    # one beyond the script's inputs (the spare slot)
])
def test_a_dict_followed_by_values_is_reported_with_the_count_the_client_sent(tail, sent):
    with pytest.raises(SagParamError, match=f"got {sent} more value\\(s\\) after it"):
        SagParams.from_args([{"enabled": True}, *tail])
