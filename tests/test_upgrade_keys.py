"""What users keep across upgrades: UI defaults saved in ui-config.json and the infotext of old pictures.

The webui stores a script control's default under `customscript/<script file>/<tab>/<label>/<field>`
(tests/host/modules/ui_loadsave.py follows modules/ui_loadsave.py), so renaming the script file or a
label silently resets users' saved defaults; the infotext keys are read back from every PNG ever
made. Both sets are pinned here as literals: a change must be deliberate and keep reading the old.
"""

import gradio as gr
import pytest

import harness
from modules import scripts
from modules.ui_loadsave import UiLoadsave
from sag_core.host.infotext import FORGE_KEYS, SKIPPED_KEY
from sag_core.params import SagParams

SCRIPT_FILE = "self_attention_guidance.py"
SLIDER_FIELDS = ("visible", "value", "minimum", "maximum", "step")
SAVED_FIELDS = {
    "Self-Attention Guidance": ("visible", "value"),
    "SAG scale": SLIDER_FIELDS,
    "SAG blur sigma": SLIDER_FIELDS,
    "SAG mask threshold": SLIDER_FIELDS,
    "SAG start": SLIDER_FIELDS,
    "SAG end": SLIDER_FIELDS,
    "Show where SAG acted": ("visible", "value"),
    # after 0.2.0: PAG, SEG, the layer and the smooth mask; the keys above are 0.2.0's, unchanged
    "Perturbed-Attention Guidance": ("visible", "value"),
    "PAG scale": SLIDER_FIELDS,
    "Smoothed Energy Guidance": ("visible", "value"),
    "SEG scale": SLIDER_FIELDS,
    "SEG blur sigma": ("visible", "value"),
    "Guided attention layer": ("visible", "value"),
    "SAG smooth mask": ("visible", "value"),
}
WRITTEN_INFOTEXT_KEYS = ["SAG scale", "SAG blur sigma", "SAG threshold", "SAG start", "SAG end", "SAG skipped steps"]
NEW_INFOTEXT_KEYS = ["PAG scale", "SEG scale", "SEG blur sigma", "SAG layer", "SAG smooth mask"]  # after 0.2.0
FORGE_INFOTEXT_KEYS = ["sag_enabled", "sag_scale", "sag_blur_sigma", "sag_threshold"]

pytestmark = pytest.mark.usefixtures("sd1_host")


def build_tab(ext, tab: str, ui_settings: dict | None = None):
    """One tab's SAG UI as the webui builds it, then walked by the webui's ui-config loader."""
    runner = scripts.ScriptRunner(is_img2img=tab == "img2img")
    runner.add(ext.module.SelfAttentionGuidanceScript, str(harness.SCRIPT_PATH))
    with gr.Blocks() as block:
        runner.create_ui()
    loadsave = UiLoadsave(ui_settings)
    loadsave.add_block(block, tab)
    return runner, loadsave


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_the_ui_config_keys_our_controls_create_are_exactly_the_pinned_ones(ext, tab):
    _, loadsave = build_tab(ext, tab)
    pinned = {f"customscript/{SCRIPT_FILE}/{tab}/{label}/{field}"
              for label, fields in SAVED_FIELDS.items() for field in fields}
    assert set(loadsave.ui_settings) == pinned


def test_defaults_a_user_saved_in_ui_config_are_the_ones_the_next_job_uses(ext):
    key = f"customscript/{SCRIPT_FILE}/txt2img"
    saved = {f"{key}/Self-Attention Guidance/value": True, f"{key}/SAG scale/value": 0.5,
             f"{key}/SAG blur sigma/value": 3.0, f"{key}/SAG end/value": 0.8}
    runner, _ = build_tab(ext, "txt2img", saved)
    processed = harness.run_job(runner, api_args=None, sag=tuple(runner.default_args()[1:]), steps=4)
    assert processed.infotexts == ["SAG scale: 0.5, SAG blur sigma: 3.0, SAG end: 0.8"]


def test_the_infotext_keys_written_and_read_are_the_pinned_ones(ext):
    every_key = SagParams(True, 0.5, 3.0, 1.5, 0.1, 0.9).infotext()
    assert [*every_key, SKIPPED_KEY] == WRITTEN_INFOTEXT_KEYS
    assert [key for _, key in ext.txt2img.infotext_fields[1:6]] == WRITTEN_INFOTEXT_KEYS[:-1]
    family = SagParams(True, 0.5, pag_enabled=True, pag_scale=2.0, seg_enabled=True, seg_scale=1.5, seg_blur_sigma=4.0,
                       layer="output 1", smooth_mask=True).infotext()
    assert list(family) == ["SAG scale", *NEW_INFOTEXT_KEYS]
    assert sorted(FORGE_KEYS) == sorted(FORGE_INFOTEXT_KEYS[1:])


def test_an_infotext_written_by_0_1_0_reads_back_to_its_settings(ext):
    """Parameters of a picture made with 0.1.0, as the webui hands them to on_infotext_pasted."""
    params = {"Steps": "20", "Sampler": "Euler a", "SAG scale": "0.6", "SAG blur sigma": "3.0", "SAG end": "0.5",
              "SAG skipped steps": "2"}
    ext.module.on_infotext_pasted("", params)
    assert SagParams.from_infotext(params) == SagParams(True, 0.6, 3.0, 1.0, 0.0, 0.5)
