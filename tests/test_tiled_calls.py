"""SAG under a tiler that runs the U-Net on tiles of the latent (Tiled Diffusion's MultiDiffusion,
tests/host/extensions/tiled_diffusion.py): the saliency is the tiles' own, placed and averaged.
"""

import math
from copy import copy

import pytest
import torch
import torch.nn.functional as F

import harness
from extensions.tiled_diffusion import MixtureOfDiffusers, TiledDiffusionScript
from models import attention_probs
from modules import script_callbacks, shared
from sag_core.attention_hook import find_middle_self_attention
from sag_core.saliency import saliency_from_probs

ON = (True, 0.75, 2.0, 1.0)

pytestmark = pytest.mark.usefixtures("sd1_host")


def with_tiler(ext, **options):
    tiler = TiledDiffusionScript(**options)
    tiler.filename, tiler.args_from, tiler.args_to = "multidiffusion/scripts/tilediffusion.py", 0, 0
    runner = copy(ext.txt2img)
    runner.alwayson_scripts = [*ext.txt2img.alwayson_scripts, tiler]
    return runner, tiler


class FirstStep:
    """The middle attn1 inputs of every U-Net call, and the mask SAG used at the first step."""

    def __init__(self, ext):
        self.ext, self.attn1_inputs, self.mask = ext, [], None

    def __enter__(self):
        _, attention = find_middle_self_attention(shared.sd_model.model.diffusion_model)
        self.handle = attention.register_forward_pre_hook(lambda m, args: self.attn1_inputs.append(args[0]))

        def keep_mask(params):
            generation = self.ext.module.active.get()
            if self.mask is None and generation is not None:
                self.mask = generation.run.mean_mask()

        self.keep_mask = keep_mask
        script_callbacks.on_cfg_after_cfg(keep_mask)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        script_callbacks.remove_callbacks_for_function(self.keep_mask)


def placed_saliency(attention, inputs, calls, rows_per_tile, uncond_rows, latent):
    """Each image's uncond saliency per tile, from ldm's own attention map, stretched over its tile and averaged.

    `inputs` are the middle attn1 inputs of tiled U-Net calls whose tiles bring `rows_per_tile` rows each,
    the last `uncond_rows` of them uncond.
    """
    total, count = torch.zeros(uncond_rows, *latent), torch.zeros(uncond_rows, *latent)
    for x, bboxes in zip(inputs, calls):
        for index, bbox in enumerate(bboxes):
            rows = x[(index + 1) * rows_per_tile - uncond_rows:(index + 1) * rows_per_tile]
            saliency = saliency_from_probs(attention_probs(attention, rows), attention.heads)
            grid = (math.ceil(bbox.h / 8), math.ceil(bbox.w / 8))
            tile = F.interpolate(saliency.reshape(-1, 1, *grid), size=(bbox.h, bbox.w), mode="nearest")[:, 0]
            total[:, bbox.y:bbox.y + bbox.h, bbox.x:bbox.x + bbox.w] += tile
            count[:, bbox.y:bbox.y + bbox.h, bbox.x:bbox.x + bbox.w] += 1
    assert count.min() > 0
    return total / count


@pytest.mark.parametrize("sampler,width,height,tile,overlap,tile_bs,mixture", [
    ("Euler a", 384, 384, 32, 16, 2, False),   # 2 x 2 tiles of 32 at multiples of 8, two tiles per U-Net call
    ("Euler a", 400, 304, 24, 8, 4, False),    # 3 x 2 tiles of 24 at x 0/13/26, y 0/14, three per call
    ("DDIM", 384, 384, 32, 16, 2, False),      # the timesteps denoiser, tiled the same way
    ("Euler a", 400, 304, 24, 8, 4, True),     # Mixture of Diffusers: apply_model tiled, inputs scaled by c_in
])
def test_tiled_saliency_is_each_tiles_own_placed_where_the_tile_was_cut_and_averaged(
        ext, sampler, width, height, tile, overlap, tile_bs, mixture):
    method = {"method": MixtureOfDiffusers} if mixture else {}
    runner, tiler = with_tiler(ext, tile=tile, overlap=overlap, tile_bs=tile_bs, **method)
    job = dict(sampler_name=sampler, width=width, height=height, steps=4)
    with FirstStep(ext) as first:
        on = harness.run_job(runner, ON, **job)
    off = harness.run_job(runner, (False,), **job)

    latent = (height // 8, width // 8)
    delegate = tiler.delegates[0]
    tiled_calls = len(delegate.batched_bboxes)
    assert len(delegate.batched_bboxes[0]) > 1
    _, attention = find_middle_self_attention(shared.sd_model.model.diffusion_model)
    with torch.no_grad():
        expected = placed_saliency(attention, first.attn1_inputs[:tiled_calls], delegate.calls[:tiled_calls],
                                   2, 1, latent)
    assert first.mask.shape == (1, 1, *latent)
    assert torch.equal(first.mask[:, 0], (expected > 1.0).float())
    assert 0.05 < first.mask.mean() < 0.95

    with torch.no_grad():  # what a recorder that ignores tiling would use: the first tile's map stretched over all
        first_tile = first.attn1_inputs[0][1:2]
        grid = (math.ceil(delegate.calls[0][0].h / 8), math.ceil(delegate.calls[0][0].w / 8))
        naive = saliency_from_probs(attention_probs(attention, first_tile), attention.heads).reshape(1, 1, *grid)
        naive = F.interpolate(naive, size=latent, mode="nearest")[0, 0]
    assert not torch.equal((naive > 1.0).float(), first.mask[0, 0])

    assert on.infotexts == ["SAG scale: 0.75"]
    assert (on.samples - off.samples).abs().max() > 1e-3


def test_tiles_of_sliced_model_calls_and_of_a_batch_are_placed_per_image(ext):
    """batch_cond_uncond off: the webui calls the model on the cond rows, then on the uncond rows; each call is tiled."""
    shared.opts.batch_cond_uncond = False
    runner, tiler = with_tiler(ext, tile=32, overlap=16, tile_bs=2)
    with FirstStep(ext) as first:
        on = harness.run_job(runner, ON, batch=2, width=384, height=384, steps=4)
    delegate = tiler.delegates[0]
    tiled_calls = len(delegate.batched_bboxes)
    _, attention = find_middle_self_attention(shared.sd_model.model.diffusion_model)
    with torch.no_grad():  # calls: the cond slice's tiles, then the uncond slice's (both rows uncond)
        expected = placed_saliency(attention, first.attn1_inputs[tiled_calls:2 * tiled_calls],
                                   delegate.calls[tiled_calls:2 * tiled_calls], 2, 2, (48, 48))
    assert torch.equal(first.mask[:, 0], (expected > 1.0).float())
    assert not torch.equal(first.mask[0], first.mask[1])
    assert on.infotexts == ["SAG scale: 0.75"] * 2


def test_a_step_whose_tiles_cannot_be_placed_is_skipped_and_reported_never_guessed(ext):
    """A tiler whose U-Net input is no cut of the latent (here each tile is tilted by a ramp) cannot be placed."""
    ramp = torch.linspace(0.5, 1.5, 32)
    runner, tiler = with_tiler(ext, distort=lambda tiles: tiles * ramp)
    job = dict(width=384, height=384, steps=4)
    with FirstStep(ext) as first:
        on = harness.run_job(runner, ON, **job)
    off = harness.run_job(runner, (False,), **job)
    assert first.mask is None
    assert on.infotexts == ["SAG scale: 0.75, SAG skipped steps: 4"]
    assert torch.equal(on.samples, off.samples)
    assert len(first.attn1_inputs) == 4 * len(tiler.delegates[0].batched_bboxes)  # no extra pass anywhere
