"""SAG beside ControlNet (Mikubill/sd-webui-controlnet) in a real webui, one ControlNet unit active.

Needs ControlNet installed beside SAG with at least one SD1.5 ControlNet model (skipped otherwise;
`SAG_E2E_CONTROLNET_MODEL` picks one by its listed name, else the first listed). ControlNet v1.1.4xx
has no per-model yaml: it builds an SD1.5 ControlNet of fixed widths from the model's keys, so the
checkpoint must have SD1.5's U-Net widths (any weights). How our runs were set up: README,
"Compatibility"; `tools/e2e/build-webui.sh --controlnet TAG` builds such a host.

How ControlNet tells cond from uncond rows (scripts/hook.py, v1.1.455): before sampling it prepends a
marker token to every prompt conditioning (+1024 for the prompt, -1024 for the negative prompt); its
U-Net forward strips that token and reads it as `cond_mark` per row. In the "Balanced" mode it adds the
control to every row; in "ControlNet is more important" it multiplies the control by `cond_mark`, so
negative-prompt rows get none. SAG's extra pass sends the denoiser's own `text_uncond` (marker
included), so ControlNet reads every row of that pass as a negative-prompt row and gives it exactly
the control it gives the negative-prompt rows of the CFG pass at that step.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from test_webui_api import OFF, ON, changed_share, generate, job
from webui_client import WebuiClient, encode_image

CONTROLNET = "controlnet"
CALLS = "sag e2e unet calls"
HIRES = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.6)


@pytest.fixture(scope="module")
def control_model(webui: WebuiClient) -> str:
    if CONTROLNET not in webui.get("/sdapi/v1/scripts").body["txt2img"]:
        pytest.skip("install ControlNet (sd-webui-controlnet) into the webui beside SAG")
    models = webui.get("/controlnet/model_list").body["model_list"]
    wanted = os.environ.get("SAG_E2E_CONTROLNET_MODEL", "").strip()
    if wanted:
        assert wanted in models, f"{wanted} is not among ControlNet's models {models}"
        return wanted
    if not models:
        pytest.skip("put an SD1.5 ControlNet model into ControlNet's models folder")
    return models[0]


def control_picture(size: int) -> np.ndarray:
    """A white square on black: the control image, used as it is (preprocessor "none")."""
    picture = np.zeros((size, size, 3), np.uint8)
    picture[size // 4:size - size // 4, size // 4:size - size // 4] = 255
    return picture


def with_unit(payload: dict, model: str, size: int, mode: str = "Balanced") -> dict:
    unit = {"enabled": True, "module": "none", "model": model, "image": encode_image(control_picture(size)),
            "weight": 1.0, "control_mode": mode}
    return {**payload, "alwayson_scripts": {**payload.get("alwayson_scripts", {}), CONTROLNET: {"args": [unit]}}}


def case_payload(webui: WebuiClient, case: str, size: int, steps: int) -> tuple[dict, bool]:
    """A job of the named kind and whether it goes to img2img."""
    if case == "batch of two":
        return job(size, steps, batch_size=2), False
    if case == "hires fix":
        return job(size, steps, **HIRES), False
    if case == "img2img":
        init = encode_image(generate(webui, job(size, steps, seed=99), OFF).images[0])
        return job(size, steps, init_images=[init], denoising_strength=0.6), True
    return job(size, steps), False


@pytest.mark.parametrize("case", ["txt2img", "batch of two", "hires fix", "img2img"])
def test_sag_with_one_controlnet_unit(webui, control_model, size, steps, case):
    payload, img2img = case_payload(webui, case, size, steps)
    controlled = with_unit(payload, control_model, size)
    on = generate(webui, controlled, ON, img2img)
    off = generate(webui, controlled, OFF, img2img)
    unaware = generate(webui, controlled, None, img2img)
    uncontrolled = generate(webui, payload, OFF, img2img)

    pictures = payload["batch_size"]
    # the pictures, then ControlNet's control images (one per pass size: two with hires fix)
    assert len(on.images) == len(off.images) == len(unaware.images) == pictures + (2 if case == "hires fix" else 1)
    assert all("SAG scale: 0.75" in text and "ControlNet 0" in text for text in on.infotexts)
    assert not any("SAG skipped steps" in text for text in on.infotexts)
    for index in range(pictures):
        assert changed_share(on.images[index], off.images[index]) > 0.01
        assert np.array_equal(off.images[index], unaware.images[index])
        assert changed_share(off.images[index], uncontrolled.images[index]) > 0.01  # the control acted
    if case == "hires fix":
        assert on.images[0].shape == (size * 3 // 2, size * 3 // 2, 3)


def recorded_calls(webui: WebuiClient, payload: dict, sag: list) -> list[dict]:
    answer = generate(webui, {**payload, "alwayson_scripts": {**payload["alwayson_scripts"],
                                                               CALLS: {"args": [True]}}}, sag)
    assert answer.status == 200
    return webui.get("/sag-e2e/unet-calls").body


def test_controlnet_reads_every_row_of_sags_extra_pass_as_a_negative_prompt_row(webui, control_model, size, steps):
    if CALLS not in webui.get("/sdapi/v1/scripts").body["txt2img"]:
        pytest.skip("install tests/e2e/extensions/sag-e2e-unet-calls into the webui beside SAG")
    payload = with_unit(job(size, steps, batch_size=2), control_model, size)
    with_sag = recorded_calls(webui, payload, ON)
    without = recorded_calls(webui, payload, OFF)

    cfg_calls = [call for call in with_sag if call["rows"] == 4]
    sag_calls = [call for call in with_sag if call["rows"] == 2]
    assert len(cfg_calls) == len(sag_calls) == steps and len(with_sag) == 2 * steps
    assert all(call["marks"] == [1.0, 1.0, 0.0, 0.0] for call in cfg_calls)  # prompt rows, then negative rows
    assert all(call["marks"] == [0.0, 0.0] for call in sag_calls)
    assert {call["tokens"] for call in with_sag} == {78}  # ControlNet's marker token + 77 prompt tokens
    assert [call["rows"] for call in without] == [4] * steps


def test_controlnet_reads_pags_and_segs_extra_rows_as_prompt_rows(webui, control_model, size, steps):
    """PAG's and SEG's extra rows carry the prompt's conditioning (marker included): ControlNet gives them the
    prompt rows' control, so the perturbed prediction differs from the prompt's by the perturbation alone."""
    if CALLS not in webui.get("/sdapi/v1/scripts").body["txt2img"]:
        pytest.skip("install tests/e2e/extensions/sag-e2e-unet-calls into the webui beside SAG")
    payload = with_unit(job(size, steps, batch_size=2), control_model, size)
    calls = recorded_calls(webui, payload, [{"enabled": True, "pag_enabled": True, "seg_enabled": True}])
    extra = [call for call in calls if call["rows"] == 6]
    assert len(extra) == steps and len(calls) == 2 * steps
    assert all(call["marks"] == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0] for call in extra)  # SAG's, then PAG's and SEG's


def test_sag_with_controlnet_is_more_important(webui, control_model, size, steps):
    """This mode gives negative-prompt rows, and so SAG's extra pass, no control at all."""
    controlled = with_unit(job(size, steps), control_model, size, mode="ControlNet is more important")
    on = generate(webui, controlled, ON)
    off = generate(webui, controlled, OFF)
    unaware = generate(webui, controlled, None)
    assert "Control Mode: ControlNet is more important" in on.infotexts[0]
    assert changed_share(on.images[0], off.images[0]) > 0.01
    assert np.array_equal(off.images[0], unaware.images[0])
