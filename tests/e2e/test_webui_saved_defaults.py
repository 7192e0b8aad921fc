"""A default the user saved in ui-config.json is the one the webui uses after a restart.

Opt-in: start the webui (SAG_E2E_URL) with its ui-config.json holding
`"customscript/self_attention_guidance.py/txt2img/SAG scale/value": V` (what Settings → Defaults → Apply
writes) and set SAG_E2E_SAVED_SCALE=V. The key's shape is pinned by tests/test_upgrade_keys.py.
"""

from __future__ import annotations

import os

import pytest

from test_webui_api import generate, job, script_info
from webui_client import TITLE


@pytest.fixture(scope="module")
def saved_scale() -> float:
    value = os.environ.get("SAG_E2E_SAVED_SCALE", "").strip()
    if not value:
        pytest.skip("set SAG_E2E_SAVED_SCALE to the SAG scale saved in the webui's ui-config.json")
    return float(value)


def test_the_saved_scale_is_the_default_of_the_control_and_of_a_job_that_leaves_it_out(webui, saved_scale, size,
                                                                                           steps):
    slider = script_info(webui, TITLE.lower(), False)["args"][1]
    assert slider["label"] == "SAG scale" and slider["value"] == saved_scale
    answer = generate(webui, job(size, steps), [True])  # the API fills the rest from the controls' defaults
    assert f"SAG scale: {saved_scale:g}" in answer.infotexts[0]
