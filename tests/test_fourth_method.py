"""A method registered by the one registry line appears in the UI, infotext, X/Y/Z and the API, and acts.

The registry is read when sag_core.params is first imported, so the check runs in a fresh interpreter:
it appends tests/fourth_method.py's method to sag_core.methods.METHODS, loads the extension into the
test host, and reports what it saw as JSON. Nothing outside tests/fourth_method.py names the method.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, sys
from tests import host
host.use()
import torch
import sag_core.methods
from tests.fourth_method import MOMENTUM
sag_core.methods.METHODS = (*sag_core.methods.METHODS, MOMENTUM)  # the one registry line

import harness
from models import TinyLatentDiffusion, tiny_unet
from modules import shared, sd_hijack_unet
from sag_core.hints import hints_script
from sag_core.params import FIELDS, SagParams

sd_hijack_unet.apply_optimizations()
ext = harness.load_extension()
script = ext.script
on = SagParams(momentum_enabled=True, momentum_scale=2.0, momentum_decay=0.5)
pasted = {"Steps": "8", **{key: str(value) for key, value in on.infotext().items()}}
ext.module.on_infotext_pasted("", pasted)

def latent(cfg_scale, **named):
    shared.sd_model = TinyLatentDiffusion(tiny_unet())
    torch.manual_seed(0)
    api_args = [named] if named else None
    processed = harness.run_job(ext.txt2img, api_args=api_args, steps=4, cfg_scale=cfg_scale, sampler_name="Euler",
                                width=64, height=64, seed=3)
    return processed.samples, processed

plain, _ = latent(7.0)
momentum, processed = latent(5.0, momentum_enabled=True, momentum_scale=2.0)
old = [True, 0.5, 3.0, 1.5, 0.1, 0.9, False, True, 2.0, False, 3.0, 9999.0, "output 1", True]
print(json.dumps({
    "fields": [f.attr for f in FIELDS],
    "controls": [getattr(c, "label", None) for c in script.ui(False)[:-1]][-3:],
    "infotext_fields": [key for _, key in ext.txt2img.infotext_fields if isinstance(key, str)][-2:],
    "hinted": "Switch the test-only CFG momentum on." in hints_script(FIELDS),
    "infotext": on.infotext(),
    "round_trip": SagParams.from_infotext(pasted) == on,
    "axes": [o.label for o in ext.xyz.axis_options if o.label.startswith("[SAG] Momentum")],
    "positional": SagParams.from_args([*old, True, 1.5, 0.3]).as_args()[-3:],
    "old_positional": SagParams.from_args(old).as_args(),
    "named": SagParams.from_args([{"momentum_enabled": True}]).acts("momentum"),
    "same_as_cfg_7": torch.allclose(momentum, plain, atol=1e-5, rtol=1e-5),
    "moved": float((momentum - latent(5.0)[0]).abs().max()),
    "infotext_written": processed.infotexts[0],
}))
'''


@pytest.fixture(scope="module")
def seen() -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_its_fields_follow_every_released_position_and_get_controls_and_hints(seen):
    assert seen["fields"][:14] == ["enabled", "scale", "blur_sigma", "threshold", "start", "end", "preview",
                                   "pag_enabled", "pag_scale", "seg_enabled", "seg_scale", "seg_blur_sigma", "layer",
                                   "smooth_mask"]
    assert seen["fields"][14:] == ["momentum_enabled", "momentum_scale", "momentum_decay"]
    assert seen["controls"] == ["CFG momentum", "Momentum scale", "Momentum decay"]
    assert seen["hinted"]


def test_its_infotext_is_written_read_back_and_pasted(seen):
    assert seen["infotext"] == {"Momentum scale": 2.0, "Momentum decay": 0.5}
    assert seen["infotext_fields"] == ["Momentum scale", "Momentum decay"]
    assert seen["round_trip"]
    assert "Momentum scale: 2.0" in seen["infotext_written"]


def test_it_gets_x_y_z_axes_and_api_arguments_while_old_payloads_read_the_same(seen):
    assert seen["axes"] == ["[SAG] Momentum scale", "[SAG] Momentum decay"]
    assert seen["positional"] == [True, 1.5, 0.3]
    assert seen["old_positional"][:14] == [True, 0.5, 3.0, 1.5, 0.1, 0.9, False, True, 2.0, False, 3.0, 9999.0,
                                           "output 1", True]
    assert seen["old_positional"][14:] == [False, 1.0, 0.0]
    assert seen["named"]


def test_it_acts_in_the_test_host_as_cfg_at_the_summed_scale(seen):
    """At decay 0 its term is scale * (cond - uncond): CFG 5 with momentum 2 is the host's own CFG 7."""
    assert seen["same_as_cfg_7"]
    assert seen["moved"] > 1e-3
