"""PAG and SEG beside SAG in a real, running webui, driven only through its HTTP API.

Same seed throughout: each method changes the picture and names itself in the infotext, scale 0 is
bit-identical to off, a bad layer is refused with the model's layer names, and the methods hold with
other samplers, CFG 1, hires fix, inpainting, X/Y/Z and Tiled Diffusion (a nested job, ADetailer's flow, is in
test_webui_nested_jobs.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from test_webui_api import OFF, changed_share, generate, init_image, job, script_info
from test_webui_tiled_diffusion import SIZE as TILED_SIZE
from test_webui_tiled_diffusion import TILED, tiled
from webui_client import WebuiClient, with_sag

PAG = [{"pag_enabled": True}]
SEG = [{"seg_enabled": True}]
ALL = [{"enabled": True, "pag_enabled": True, "seg_enabled": True, "seg_blur_sigma": 2.0}]
SEG_STRONG = {"seg_enabled": True, "seg_scale": 10.0}
"""SEG moves the e2e checkpoint's random-weight pictures little at its default scale (0.3% of pixels at 128 px)."""


def assert_changed(on, off, infotext: str) -> None:
    assert len(on.images) == len(off.images)
    for image, plain in zip(on.images, off.images):
        assert changed_share(image, plain) > 0.01
    assert all(infotext in text for text in on.infotexts), on.infotexts
    assert not any("skipped steps" in text or "failed steps" in text for text in on.infotexts)


@pytest.mark.parametrize("args,infotext", [
    (PAG, "PAG scale: 3.0"), ([SEG_STRONG], "SEG scale: 10.0"),
    ([{**SEG_STRONG, "seg_blur_sigma": 1.5, "layer": "output 4"}], "SEG blur sigma: 1.5, SAG layer: output 4"),
    (ALL, "SAG scale: 0.75, PAG scale: 3.0, SEG scale: 3.0, SEG blur sigma: 2.0"),
])
def test_each_method_and_all_together_change_the_picture(webui, size, steps, args, infotext):
    payload = job(size, steps)
    assert_changed(generate(webui, payload, args), generate(webui, payload, OFF), infotext)


def test_seg_at_its_defaults_changes_the_picture(webui, size, steps):
    payload = job(size, steps)
    seg, off = generate(webui, payload, SEG), generate(webui, payload, OFF)
    assert not np.array_equal(seg.images[0], off.images[0]) and "SEG scale: 3.0" in seg.infotexts[0]


@pytest.mark.parametrize("args", [[{"pag_enabled": True, "pag_scale": 0.0}],
                                  [{"seg_enabled": True, "seg_scale": 0.0, "enabled": True, "scale": 0.0}]])
def test_scale_zero_is_bit_identical_to_off(webui, size, steps, args):
    payload = job(size, steps)
    assert np.array_equal(generate(webui, payload, args).images[0], generate(webui, payload, OFF).images[0])


def test_png_info_reads_the_methods_back(webui, size, steps):
    answer = generate(webui, job(size, steps), [{"pag_enabled": True, "pag_scale": 2.5, "layer": "output 3"}])
    assert "PAG scale: 2.5, SAG layer: output 3" in answer.infotexts[0]
    read = webui.post("/sdapi/v1/png-info", {"image": "data:image/png;base64," + answer.body["images"][0]})
    assert read.status == 200, read.body
    if "parameters" in read.body:  # webui 1.7+
        parameters = read.body["parameters"]
        assert (parameters["PAG scale"], parameters["SAG layer"]) == (2.5, "output 3")
        assert "SAG scale" not in parameters and "SEG scale" not in parameters


def test_a_layer_the_model_lacks_is_refused_with_its_layers_and_the_next_job_runs(webui, size, steps):
    answer = webui.txt2img(with_sag(job(size, 2), [{"pag_enabled": True, "layer": "output 11"}]))
    assert answer.status == 422
    errors = answer.body["errors"]
    assert "layer (Guided attention layer): the loaded model has no self-attention layer 'output 11'" in errors
    assert "; its layers are input " in errors and ", middle, output " in errors  # the tiny checkpoint's own
    assert "PAG scale: 3.0" in generate(webui, job(size, steps), PAG).infotexts[0]


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "DDIM", "UniPC"])
def test_other_sampler_families(webui, size, steps, sampler):
    payload = job(size, steps, sampler_name=sampler)
    assert_changed(generate(webui, payload, ALL), generate(webui, payload, OFF), "PAG scale: 3.0")


def test_cfg_scale_1_guides_with_pag_and_seg_alone(webui, size, steps):
    payload = job(size, steps, cfg_scale=1)
    assert_changed(generate(webui, payload, [{"pag_enabled": True, "seg_enabled": True}]),
                   generate(webui, payload, OFF), "PAG scale: 3.0, SEG scale: 3.0")


def test_hires_fix_and_a_batch_of_two(webui, size, steps):
    hires = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=max(2, steps // 2),
                 denoising_strength=0.6, batch_size=2)
    payload = job(size, steps, **hires)
    assert_changed(generate(webui, payload, ALL), generate(webui, payload, OFF), "SEG scale: 3.0")


def test_inpainting_changes_only_the_masked_part(webui, size, steps):
    mask = np.zeros((size, size, 3), np.uint8)
    mask[size // 4:size * 3 // 4, size // 8:size * 5 // 8] = 255
    payload = job(size, steps, init_images=[init_image(webui, size, steps)], mask=mask_image(mask), mask_blur=0,
                  inpainting_fill=1, denoising_strength=0.75)
    on, off = generate(webui, payload, ALL, img2img=True), generate(webui, payload, OFF, img2img=True)
    inside = mask[..., 0] > 0
    difference = (np.abs(on.images[0].astype(np.int16) - off.images[0]) > 2).any(axis=2)
    assert difference[inside].mean() > 0.01 and not difference[~inside].any()


def mask_image(mask: np.ndarray) -> str:
    from webui_client import encode_image
    return encode_image(mask)


def test_xyz_sweep_over_pag_scale(webui, size, steps):
    x_type = script_info(webui, "x/y/z plot", False)["args"][0]
    axis = x_type["choices"].index("[SAG] PAG scale")
    script_args = [axis, "0, 3", [], 0, "", [], 0, "", [], True, True, False, False, False, False, False, 0, False]
    answer = webui.txt2img(with_sag(job(size, steps, script_name="x/y/z plot", script_args=script_args), OFF))
    assert answer.status == 200, answer.body
    _, *cells = answer.images
    assert ["PAG scale: 0.0" in answer.infotexts[-2], "PAG scale: 3.0" in answer.infotexts[-1]] == [True, True]
    assert np.array_equal(cells[0], generate(webui, job(size, steps), OFF).images[0])
    assert changed_share(cells[0], cells[1]) > 0.01


def test_tiled_diffusion_steps_are_all_guided(webui: WebuiClient, steps):
    if TILED not in webui.get("/sdapi/v1/scripts").body["txt2img"]:
        pytest.skip("install Tiled Diffusion (multidiffusion-upscaler-for-automatic1111) into the webui beside SAG")
    payload = tiled(job(TILED_SIZE, steps), "MultiDiffusion")
    assert_changed(generate(webui, payload, ALL), generate(webui, payload, OFF), "PAG scale: 3.0")


def test_ddim_cfgpp_and_a_hypernetwork(webui, size, steps):
    """Two options of the webui that change how the prediction is made: DDIM CFG++ (1.10) and a hypernetwork."""
    from test_webui_options import HYPERNETWORK, with_hypernetwork
    samplers = [sampler["name"] for sampler in webui.get("/sdapi/v1/samplers").body]
    payloads = [job(size, steps, sampler_name="DDIM CFG++")] if "DDIM CFG++" in samplers else []
    if HYPERNETWORK in [entry["name"] for entry in webui.get("/sdapi/v1/hypernetworks").body]:
        payloads.append(with_hypernetwork(size, steps, HYPERNETWORK))
    if not payloads:
        pytest.skip("this webui has neither DDIM CFG++ (1.10.0+) nor the e2e hypernetwork")
    for payload in payloads:
        assert_changed(generate(webui, payload, ALL), generate(webui, payload, OFF), "PAG scale: 3.0")
        zero = [{"pag_enabled": True, "pag_scale": 0.0, "seg_enabled": True, "seg_scale": 0.0}]
        assert np.array_equal(generate(webui, payload, zero).images[0], generate(webui, payload, OFF).images[0])
