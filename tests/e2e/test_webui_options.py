"""SAG under ordinary webui options, in a real webui over HTTP (see conftest.py for the switches).

Each option changes how the webui batches or reads a job: prompt padding (`pad_cond_uncond`, and from 1.8.0
`pad_cond_uncond_v0`: cond and uncond padded to one length and run in one batch), Script-dropdown scripts that read
`processed.images` by position (SD upscale, Outpainting mk2), the DDIM CFG++ sampler (1.10), hypernetworks (they
rewrite cross-attention keys and values) and CFG scale 1. Under each, SAG must guide (on differs from off), blur sigma
0 must change nothing (SAG's blurred prediction is then the plain one), and nothing else of the job may move. Every
test skips, saying why, where the webui lacks the option, sampler, script or the test hypernetwork.

Webui quirks met here:
- `override_settings_restore_afterwards` restores only options already in `opts.data`, i.e. saved in config.json
  (webui v1.10.1 modules/processing.py `process_images`: `stored_opts = {... if k in opts.data}`); an option left at
  its default leaks into the next jobs. 1.6.0 reads `opts.data[k]` for every overridden key and fails the job
  with a KeyError instead. The `padding_options` fixture therefore saves the padding options' defaults first.
- The emphasis option "Original" (webui v1.10.1 modules/sd_emphasis.py `EmphasisOriginal`) rescales the text
  encoder's output by original_mean / new_mean, which is 0 / 0 where that mean sums to exactly 0. The random test
  checkpoint's CLIP final layer norm (weight 1, bias 0) gives zero-mean tokens, so some prompts hit it: with
  test_webui_api's "blurry, low quality" every job fails with "A tensor with NaNs was produced in Unet". Jobs here
  use the negative prompt "blurry", which does not.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from test_webui_api import OFF, ON, assert_sag_changed, changed_share, generate, on_and_off
from test_webui_api import job as api_job
from webui_client import WebuiClient, encode_image, with_sag

# 12 x 10 tokens: two 75-token chunks against the one chunk of NEGATIVE, so cond and uncond differ in length
LONG_PROMPT = ", ".join(["a photo of a cat sitting on a red sofa"] * 12)
SHORT_NEGATIVE = "blurry"
SIGMA_ZERO = [True, 0.75, 0.0, 1.0]
ON_WITH_PREVIEW = [*ON, 0.0, 1.0, True]
# Mean |pixel difference| (0-255 levels) allowed between SAG at blur sigma 0 and SAG off: none. With nothing blurred,
# SAG takes the extra pass's prediction from the host's own uncond rows (sag_core/methods/sag.py SelfAttentionGuidance.extra), so no call
# of another batch size can round differently. Before that, at 128x128, 6 steps, tiny SD1 (webui 1.10.1): 0.0000-0.0001
# without padding, and 15 pixels off by one level with pad_cond_uncond (prompt and negative rows in one call).
SIGMA_ZERO_TOLERANCE = 0.0
# webui v1.10.1 modules/shared_options.py: the option key and the infotext entry it writes when on (1.6/1.7: only the
# first)
PADDINGS = {"pad_cond_uncond": "Pad conds: True", "pad_cond_uncond_v0": "Pad conds v0: True"}
HYPERNETWORK = "sag-e2e-random"  # tools/e2e/make_hypernetwork.py, put in ROOT/hypernetworks by build-webui.sh


def job(size: int, steps: int, **fields) -> dict:
    """test_webui_api's job with the short negative prompt (see the module docstring for why)."""
    return api_job(size, steps, **{"negative_prompt": SHORT_NEGATIVE, **fields})


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two images, in colour levels."""
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def assert_sigma_zero_is_off(webui: WebuiClient, payload: dict, img2img: bool = False) -> None:
    """SAG at blur sigma 0 gives SAG off's images bit for bit (SIGMA_ZERO_TOLERANCE), with SAG in the infotext."""
    zero = generate(webui, payload, SIGMA_ZERO, img2img)
    off = generate(webui, payload, OFF, img2img)
    assert len(zero.images) == len(off.images)
    differences = [mean_difference(a, b) for a, b in zip(zero.images, off.images)]
    print(f"blur sigma 0 vs off, mean |difference| per image: {differences}")  # shown by pytest -rP: re-measure
    assert max(differences) <= SIGMA_ZERO_TOLERANCE, f"mean |difference| per image: {differences}"
    assert all("SAG blur sigma: 0.0" in text for text in zero.infotexts)


def padded(size: int, steps: int, option: str | None, **fields) -> dict:
    """A job whose prompt is longer than its negative prompt, with padding option `option` on for this request only."""
    payload = job(size, steps, prompt=LONG_PROMPT, **fields)
    if option is not None:
        payload.update(override_settings={option: True}, override_settings_restore_afterwards=True)
    return payload


def save_options(webui: WebuiClient, values: dict) -> None:
    answer = webui.post("/sdapi/v1/options", values, cached=False)
    assert answer.status == 200, answer.body


@pytest.fixture(scope="module")
def padding_options(webui: WebuiClient) -> Iterator[list[str]]:
    """The padding options this webui has, saved off for the tests (so overrides are restored), then as they were."""
    options = webui.get("/sdapi/v1/options").body
    before = {option: options[option] for option in PADDINGS if option in options}
    save_options(webui, {option: False for option in before})
    yield list(before)
    save_options(webui, before)


def padding(padding_options: list[str], option: str) -> str:
    """`option` if this webui has it, else skip; afterwards check that the job left it off."""
    if option not in padding_options:
        pytest.skip(f"this webui has no {option} option (pad_cond_uncond_v0 came with 1.8.0)")
    return option


def assert_padding_restored(webui: WebuiClient) -> None:
    options = webui.get("/sdapi/v1/options").body
    assert not any(options.get(option) for option in PADDINGS), "a per-request padding option stayed on"


def test_sigma_zero_equals_off_with_a_long_prompt_and_no_padding(webui, padding_options, size, steps):
    assert_sigma_zero_is_off(webui, padded(size, steps, None))


@pytest.mark.parametrize("option", PADDINGS)
def test_sigma_zero_equals_off_under_padding(webui, padding_options, size, steps, option):
    payload = padded(size, steps, padding(padding_options, option))
    assert PADDINGS[option] in generate(webui, payload, OFF).infotexts[0]  # the override took effect
    assert_sigma_zero_is_off(webui, payload)
    assert_padding_restored(webui)


@pytest.mark.parametrize("option", PADDINGS)
def test_sag_changes_the_picture_under_padding(webui, padding_options, size, steps, option):
    on, off = on_and_off(webui, padded(size, steps, padding(padding_options, option)))
    assert_sag_changed(on, off)
    assert PADDINGS[option] in on.infotexts[0]
    assert_padding_restored(webui)


def require_script(webui: WebuiClient, name: str) -> None:
    if name not in webui.get("/sdapi/v1/scripts").body["img2img"]:
        pytest.skip(f"this webui lists no img2img script {name!r}")


def pattern(side: int) -> str:
    """A small smooth colour picture (PNG, base64) as an img2img input."""
    ramp = np.linspace(0, 255, side)
    pixels = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 255 - ramp[None, :]), axis=2)
    return encode_image(pixels.astype(np.uint8))


SCRIPTED_SIDE = 128  # the smallest side whose middle grid (side / 64) has more than one token, so SAG's mask acts


def scripted(steps: int, script_name: str, script_args: list, **fields) -> dict:
    """An img2img job at 128 x 128 from a 128 x 128 picture, run through a Script-dropdown script."""
    return job(SCRIPTED_SIDE, steps, init_images=[pattern(SCRIPTED_SIDE)], denoising_strength=0.6,
               script_name=script_name, script_args=script_args, **fields)


def from_the_same_start(webui: WebuiClient, payload: dict, args: list) -> object:
    """The img2img answer to `payload` with SAG `args`, run after a fixed txt2img job so that it never depends on the
    requests before it.

    The webui encodes an img2img input with the VAE's posterior sample, drawn from torch's global generator
    (repositories/stable-diffusion-stability-ai ldm/modules/distributions/distributions.py
    `DiagonalGaussianDistribution.sample`, called from processing.py `StableDiffusionProcessingImg2Img.init`), before
    the job seeds that generator itself (modules/rng.py `ImageRNG.first` -> `randn` -> `manual_seed`, webui 1.6.0 to
    1.10.1). So the same img2img request gives another picture after another job (measured on 1.6.0 at 128 px: 7.5
    mean levels after an SD upscale job, SAG off; 7.8 for a fresh webui's first job against its second). A one-step
    txt2img job with the same seed leaves the generator in the same state each time.
    """
    reseeded = webui.post("/sdapi/v1/txt2img", with_sag(job(64, 1, seed=payload["seed"]), OFF), cached=False)
    assert reseeded.status == 200, reseeded.body
    return webui.post("/sdapi/v1/img2img", with_sag(payload, args), cached=False)


def assert_preview_changes_nothing(webui: WebuiClient, payload: dict) -> None:
    """SAG with preview on returns what it returns with preview off, and SAG changed the result."""
    shown = from_the_same_start(webui, payload, ON_WITH_PREVIEW)
    hidden = from_the_same_start(webui, payload, ON)
    off = from_the_same_start(webui, payload, OFF)
    assert shown.status == hidden.status == off.status == 200, (shown.body, hidden.body, off.body)
    assert len(shown.images) == len(hidden.images)
    for with_preview, without in zip(shown.images, hidden.images):
        assert np.array_equal(with_preview, without)
    assert changed_share(hidden.images[-1], off.images[-1]) > 0.01


def test_sd_upscale_result_is_unchanged_by_the_preview(webui, steps):
    require_script(webui, "sd upscale")
    # webui scripts/sd_upscale.py ui(): [info, overlap, upscaler (name or index), scale factor]; 128 -> 256 px in 3 x 3
    # tiles of 128 with an overlap of 32, each batch of tiles one process_images call
    payload = scripted(steps, "sd upscale", ["", 32, "Lanczos", 2.0])
    assert_preview_changes_nothing(webui, payload)
    assert generate(webui, payload, ON, img2img=True).images[0].shape == (2 * SCRIPTED_SIDE, 2 * SCRIPTED_SIDE, 3)


def test_outpainting_mk2_result_is_unchanged_by_the_preview(webui, steps):
    require_script(webui, "outpainting mk2")
    # webui scripts/outpainting_mk_2.py ui(): [info, pixels, mask blur, directions, fall-off exponent, colour
    # variation]; a batch of 2 so that the script reads proc.images[0] and [1] of each pass
    payload = scripted(steps, "outpainting mk2", ["", 32, 8, ["left", "right"], 1.0, 0.05], batch_size=2)
    assert_preview_changes_nothing(webui, payload)


@pytest.fixture(scope="module")
def ddim_cfgpp(webui: WebuiClient) -> str:
    name = "DDIM CFG++"
    if name not in [sampler["name"] for sampler in webui.get("/sdapi/v1/samplers").body]:
        pytest.skip(f"this webui has no {name} sampler (added in 1.10.0)")
    return name


def test_ddim_cfgpp_is_guided(webui, ddim_cfgpp, size, steps):
    assert_sag_changed(*on_and_off(webui, job(size, steps, sampler_name=ddim_cfgpp)))


def test_ddim_cfgpp_sigma_zero_equals_off(webui, ddim_cfgpp, size, steps):
    assert_sigma_zero_is_off(webui, job(size, steps, sampler_name=ddim_cfgpp))


@pytest.fixture(scope="module")
def hypernetwork(webui: WebuiClient) -> str:
    if HYPERNETWORK not in [entry["name"] for entry in webui.get("/sdapi/v1/hypernetworks").body]:
        pytest.skip(f"no hypernetwork {HYPERNETWORK}: make it with tools/e2e/make_hypernetwork.py and start the "
                    "webui with --hypernetwork-dir at its folder (tools/e2e/start-webui.sh does)")
    return HYPERNETWORK


def with_hypernetwork(size: int, steps: int, name: str) -> dict:
    plain = job(size, steps)
    return {**plain, "prompt": f"{plain['prompt']} <hypernet:{name}:1>"}


def test_the_hypernetwork_acts(webui, hypernetwork, size, steps):
    used = generate(webui, with_hypernetwork(size, steps, hypernetwork), OFF)
    unused = generate(webui, job(size, steps), OFF)
    assert changed_share(used.images[0], unused.images[0]) > 0.01


def test_sag_guides_with_a_hypernetwork(webui, hypernetwork, size, steps):
    assert_sag_changed(*on_and_off(webui, with_hypernetwork(size, steps, hypernetwork)))


def test_sigma_zero_equals_off_with_a_hypernetwork(webui, hypernetwork, size, steps):
    assert_sigma_zero_is_off(webui, with_hypernetwork(size, steps, hypernetwork))


def test_off_with_a_hypernetwork_equals_the_webui_without_the_extension(webui, baseline, hypernetwork, size, steps):
    payload = with_hypernetwork(size, steps, hypernetwork)
    off = generate(webui, payload, OFF)
    without = generate(baseline, payload, None)
    assert np.array_equal(off.images[0], without.images[0])


def test_cfg_scale_1_guides_the_prompt_branch(webui, size, steps):
    on, off = on_and_off(webui, job(size, steps, cfg_scale=1))
    assert_sag_changed(on, off)
    assert "SAG branch: prompt" in on.infotexts[0]


def test_cfg_scale_1_sigma_zero_equals_off(webui, size, steps):
    assert_sigma_zero_is_off(webui, job(size, steps, cfg_scale=1))


def test_cfg_scale_7_names_no_branch(webui, size, steps):
    on = generate(webui, job(size, steps), ON)
    assert "SAG scale: 0.75" in on.infotexts[0] and "SAG branch" not in on.infotexts[0]
