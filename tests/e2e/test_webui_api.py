"""SAG in a real, running webui, driven only through its HTTP API (see conftest.py for the switches).

Every check compares generations with the same seed, so it holds for any checkpoint: SAG on and off
differ, off is untouched, settings reach the infotext, refused settings fail with the documented
message, X/Y/Z sweeps work, across samplers, sizes, batches, hires fix, img2img and inpainting.
"""

from __future__ import annotations

import numpy as np
import pytest

from sag_core.params import FIELDS
from webui_client import TITLE, WebuiClient, encode_image, with_sag

PROMPT = "a photo of a lighthouse on a rocky cliff at dusk, waves, detailed"
NEGATIVE = "blurry, low quality"
ON = [True, 0.75, 2.0, 1.0]
OFF = [False]
SCRIPT_NAME = TITLE.lower()


def job(size: int, steps: int, **fields) -> dict:
    return {"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": 1234, "steps": steps, "width": size,
            "height": size, "cfg_scale": 7, "sampler_name": "Euler a", "batch_size": 1, "n_iter": 1,
            "save_images": False, "send_images": True, **fields}


def changed_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels whose colour differs by more than 2 levels in some channel."""
    assert a.shape == b.shape
    return float((np.abs(a.astype(np.int16) - b.astype(np.int16)) > 2).any(axis=2).mean())


def generate(webui: WebuiClient, payload: dict, args: list | None, img2img: bool = False):
    answer = (webui.img2img if img2img else webui.txt2img)(with_sag(payload, args))
    assert answer.status == 200, answer.body
    return answer


def on_and_off(webui: WebuiClient, payload: dict, img2img: bool = False):
    return generate(webui, payload, ON, img2img), generate(webui, payload, OFF, img2img)


def assert_sag_changed(on, off) -> None:
    assert len(on.images) == len(off.images)
    for with_sag_image, plain in zip(on.images, off.images):
        assert changed_share(with_sag_image, plain) > 0.01
    assert all("SAG scale: 0.75" in text for text in on.infotexts)
    assert not any("SAG" in text for text in off.infotexts)
    assert not any("SAG skipped steps" in text for text in on.infotexts)


def script_info(webui: WebuiClient, name: str, is_img2img: bool) -> dict:
    scripts = webui.get("/sdapi/v1/script-info").body
    if not isinstance(scripts, list):  # webui 1.6.0 fails to validate gradio 3.41's (label, value) choices
        pytest.skip(f"this webui's /sdapi/v1/script-info fails (fixed in 1.7.0): {str(scripts)[:120]}")
    return next(s for s in scripts if s["name"] == name and s["is_img2img"] == is_img2img)


def test_the_script_is_listed_for_txt2img_and_img2img_with_its_inputs(webui):
    listed = webui.get("/sdapi/v1/scripts").body
    assert SCRIPT_NAME in listed["txt2img"] and SCRIPT_NAME in listed["img2img"]
    for is_img2img in (False, True):
        info = script_info(webui, SCRIPT_NAME, is_img2img)
        assert info["is_alwayson"] is True
        assert [arg["label"] for arg in info["args"][:len(FIELDS)]] == [f.label for f in FIELDS]
        assert [arg["value"] for arg in info["args"][:len(FIELDS)]] == [f.default for f in FIELDS]


def test_on_and_off_differ_with_the_same_seed(webui, size, steps):
    assert_sag_changed(*on_and_off(webui, job(size, steps)))


def test_off_is_the_same_as_a_request_that_never_mentions_sag(webui, size, steps):
    off = generate(webui, job(size, steps), OFF)
    unaware = generate(webui, job(size, steps), None)
    assert np.array_equal(off.images[0], unaware.images[0])


def test_off_equals_the_webui_without_the_extension(webui, baseline, size, steps):
    off = generate(webui, job(size, steps), OFF)
    without = generate(baseline, job(size, steps), None)
    assert np.array_equal(off.images[0], without.images[0])
    assert off.infotexts == without.infotexts


def test_infotext_carries_the_settings_and_png_info_reads_them_back(webui, size, steps):
    answer = generate(webui, job(size, steps), [True, 0.6, 3.0, 1.2, 0.0, 0.8])
    text = answer.infotexts[0]
    for entry in ("SAG scale: 0.6", "SAG blur sigma: 3.0", "SAG threshold: 1.2", "SAG end: 0.8"):
        assert entry in text
    assert "SAG start" not in text  # defaults other than the scale are left out
    read = webui.post("/sdapi/v1/png-info", {"image": "data:image/png;base64," + answer.body["images"][0]})
    assert read.status == 200, read.body
    if "parameters" not in read.body:  # webui 1.6 answers the text only; 1.7 added the parsed parameters
        assert read.body["info"] == text
        return
    parameters = read.body["parameters"]
    assert (parameters["SAG scale"], parameters["SAG blur sigma"], parameters["SAG end"]) == (0.6, 3.0, 0.8)
    assert parameters["SAG start"] == 0.0  # filled in by the extension's paste callback


REFUSED = [
    ([True, 9.0], "scale (SAG scale) must be a number from -2 to 5; got 9.0"),
    ([True, "0.5"], "scale (SAG scale) must be a number from -2 to 5; got '0.5'"),
    (["yes"], "enabled (Self-Attention Guidance) must be true or false; got 'yes'"),
    ([True, 0.75, 2.0, 1.0, 0.9, 0.1], "start (0.9) must not be after end (0.1)"),
    ([{"enabled": True, "sacle": 0.5}], "unknown field 'sacle'"),
    ([True, 0.75, 2.0, 1.0, 0.0, 1.0, False, 0.5], "pag_enabled (Perturbed-Attention Guidance) must be true or false; "
                                                   "got 0.5"),
    ([{"pag_enabled": True, "pag_scale": 12}], "pag_scale (PAG scale) must be a number from 0 to 10; got 12"),
    ([{"seg_enabled": True, "layer": "mid"}], "layer (Guided attention layer) must be one of the loaded model's "
                                              "self-attention layers: input "),
]


@pytest.mark.parametrize("args,message", REFUSED)
def test_refused_settings_fail_the_job_with_the_documented_error(webui, size, args, message):
    """A bad request is the client's error: HTTP 422 (as the webui answers a bad payload), the message in `detail`
    and `errors`; the webui logs SAG's one line for it and no traceback (api.py handle_exception)."""
    answer = webui.txt2img(with_sag(job(size, 2), args))
    assert answer.status == 422
    assert answer.body["detail"] == answer.body["errors"]
    assert "Self-Attention Guidance: " in answer.body["errors"] and message in answer.body["errors"]


def test_a_refused_job_leaves_nothing_behind(webui, size, steps):
    before = generate(webui, job(size, steps, seed=77), OFF)
    assert webui.txt2img(with_sag(job(size, steps, seed=78), [True, 99.0])).status == 422
    after = webui.post("/sdapi/v1/txt2img", with_sag(job(size, steps, seed=77), OFF), cached=False)
    assert after.status == 200 and np.array_equal(before.images[0], after.images[0])


def xyz_payload(webui: WebuiClient, size: int, steps: int, sag: list) -> dict:
    x_type = script_info(webui, "x/y/z plot", False)["args"][0]
    axis = x_type["choices"].index("[SAG] Scale")
    script_args = [axis, "0, 0.5, 1", [], 0, "", [], 0, "", [], True, True, False, False, False, False, False, 0,
                   False]
    return with_sag(job(size, steps, script_name="x/y/z plot", script_args=script_args), sag)


@pytest.mark.parametrize("preview", [False, True])
def test_xyz_sweep_over_scale_gives_one_cell_per_value_and_no_previews(webui, size, steps, preview):
    answer = webui.txt2img(xyz_payload(webui, size, steps, [False, 0.75, 2.0, 1.0, 0.0, 1.0, preview]))
    assert answer.status == 200, answer.body
    grid, *cells = answer.images
    assert len(cells) == 3 and grid.shape[1] >= 3 * size
    texts = answer.infotexts[-3:]
    assert [f"SAG scale: {value}" in text for value, text in zip(("0.0", "0.5", "1.0"), texts)] == [True] * 3
    assert changed_share(cells[0], cells[1]) > 0.01 and changed_share(cells[1], cells[2]) > 0.01
    plain = generate(webui, job(size, steps), OFF).images[0]
    assert np.array_equal(cells[0], plain)  # scale 0 is CFG alone


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DDIM", "UniPC"])
def test_every_sampler_family_is_guided(webui, size, steps, sampler):
    assert_sag_changed(*on_and_off(webui, job(size, steps, sampler_name=sampler)))


def test_an_odd_non_square_size(webui, steps):
    on, off = on_and_off(webui, job(200, steps, height=264))
    assert on.images[0].shape == (264, 200, 3)
    assert_sag_changed(on, off)


def test_a_batch_of_two(webui, size, steps):
    on, off = on_and_off(webui, job(size, steps, batch_size=2))
    assert len(on.images) == 2
    assert_sag_changed(on, off)


def test_hires_fix(webui, size, steps):
    hires = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=max(2, steps // 2),
                 denoising_strength=0.6)
    on, off = on_and_off(webui, job(size, steps, **hires))
    assert on.images[0].shape == (size * 3 // 2, size * 3 // 2, 3)
    assert_sag_changed(on, off)


def init_image(webui: WebuiClient, size: int, steps: int) -> str:
    return encode_image(generate(webui, job(size, steps, seed=99), OFF).images[0])


def test_img2img(webui, size, steps):
    payload = job(size, steps, init_images=[init_image(webui, size, steps)], denoising_strength=0.6)
    assert_sag_changed(*on_and_off(webui, payload, img2img=True))


@pytest.mark.parametrize("only_masked", [False, True])
def test_inpainting_changes_only_the_masked_part(webui, size, steps, only_masked):
    mask = np.zeros((size, size, 3), np.uint8)
    top, left, side = size // 4, size // 8, size // 2
    mask[top:top + side, left:left + side] = 255
    payload = job(size, steps, init_images=[init_image(webui, size, steps)], mask=encode_image(mask),
                  mask_blur=0, inpainting_fill=1, inpaint_full_res=only_masked, inpaint_full_res_padding=16,
                  denoising_strength=0.75)
    on, off = on_and_off(webui, payload, img2img=True)
    inside = mask[..., 0] > 0
    difference = (np.abs(on.images[0].astype(np.int16) - off.images[0]) > 2).any(axis=2)
    assert difference[inside].mean() > 0.01
    assert not difference[~inside].any()


def test_mask_preview_is_added_after_the_image_and_changes_nothing(webui, size, steps):
    plain = generate(webui, job(size, steps), ON)
    shown = generate(webui, job(size, steps), ON + [0.0, 1.0, True])
    image, preview = shown.images
    assert np.array_equal(image, plain.images[0])
    assert preview.shape == image.shape and changed_share(preview, image) > 0.01
    assert shown.infotexts == plain.infotexts * 2
