"""SAG beside Tiled Diffusion (pkuliyi2015/multidiffusion-upscaler-for-automatic1111) in a real webui.

Needs that extension installed beside SAG (skipped otherwise). Tiled Diffusion runs the U-Net on
overlapping tiles of the latent, several tiles per call; SAG must place every tile's saliency where the
tile was cut (tests/test_tiled_calls.py checks the exact mask against a stand-in). Here, with the real
extension: every step is guided (no `SAG skipped steps`, which SAG writes when a tile cannot be placed),
SAG changes the picture, its preview covers part of it, and SAG off leaves Tiled Diffusion's output alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from test_webui_api import OFF, ON, changed_share, generate, job
from webui_client import WebuiClient

TILED = "tiled diffusion"
ON_WITH_PREVIEW = [*ON, 0.0, 1.0, True]
SIZE = 256  # a 32 x 32 latent: 3 x 3 tiles of 16 with an overlap of 8, four tiles per U-Net call


@pytest.fixture(scope="module")
def tiled_webui(webui: WebuiClient) -> WebuiClient:
    if TILED not in webui.get("/sdapi/v1/scripts").body["txt2img"]:
        pytest.skip("install Tiled Diffusion (multidiffusion-upscaler-for-automatic1111) into the webui beside SAG")
    return webui


def tiled(payload: dict, method: str) -> dict:
    args = [True, method, False, True, 1024, 1024, 16, 16, 8, 4]
    return {**payload, "alwayson_scripts": {**payload.get("alwayson_scripts", {}), TILED: {"args": args}}}


@pytest.mark.parametrize("method", ["MultiDiffusion", "Mixture of Diffusers"])
def test_sag_guides_every_tiled_step_and_changes_the_picture(tiled_webui, steps, method):
    payload = tiled(job(SIZE, steps), method)
    on = generate(tiled_webui, payload, ON_WITH_PREVIEW)
    off = generate(tiled_webui, payload, OFF)
    unaware = generate(tiled_webui, payload, None)

    assert len(on.images) == 2  # the picture and its mask preview
    assert "SAG scale: 0.75" in on.infotexts[0] and "SAG skipped steps" not in on.infotexts[0]
    assert "Tiled Diffusion" in on.infotexts[0]
    assert changed_share(on.images[0], off.images[0]) > 0.01
    assert 0.02 < changed_share(on.images[1], on.images[0]) < 0.98  # the mask covers part of the picture
    assert np.array_equal(off.images[0], unaware.images[0])
