"""PAG's and SEG's perturbed self-attention on the real ldm attention, checked against diffusers 0.38.

The oracle is diffusers' own `Attention` module given the ldm module's weights, run with PAG's identity
processors, PAG's guider hook (attention scores skipped) and SEG's query-blur hook. The ldm module runs
the webui's SDP forward. The SDXL layout is ldm's U-Net built as SDXL is (linear projections, two
transformer blocks, 64-channel heads, middle at latent / 4): the test host has no `sgm` package, whose
`CrossAttention` has the same `to_q`/`to_k`/`to_v`/`to_out` modules and the webui's same forward.
"""

import math
from contextlib import ExitStack
from types import SimpleNamespace
from typing import Optional

import pytest
import torch
from ldm.modules.diffusionmodules.openaimodel import UNetModel
from torch import nn

from models import rerandomise, tiny_unet
from modules import sd_hijack_unet, shared
from modules.hypernetworks.hypernetwork import Hypernetwork, apply_hypernetworks
from sag_core.attention_hook import find_middle_self_attention
from sag_core.methods.pag import IdentityAttention, pag_guidance
from sag_core.methods.seg import SmoothedQueries, seg_kernel_size, smooth_queries
from sag_core.layers import LayerError, attention_layers, find_layer
from sag_core.perturbation import PerturbationError, PerturbedLayer, PerturbedSelfAttention, token_grid

diffusers = pytest.importorskip("diffusers")
from diffusers.guiders import PerturbedAttentionGuidance, SmoothedEnergyGuidance  # noqa: E402
from diffusers.hooks import HookRegistry, LayerSkipConfig  # noqa: E402
from diffusers.hooks.layer_skip import _apply_layer_skip_hook  # noqa: E402
from diffusers.hooks.smoothed_energy_guidance_utils import SmoothedEnergyGuidanceHook  # noqa: E402
from diffusers.models.attention_processor import (Attention, PAGCFGIdentitySelfAttnProcessor2_0,  # noqa: E402
                                                  PAGIdentitySelfAttnProcessor2_0)
from diffusers.pipelines.pag.pag_utils import PAGMixin  # noqa: E402

TOLERANCE = dict(atol=1e-5, rtol=1e-5)


def rescale_to_cond(pred: torch.Tensor, pred_cond: torch.Tensor, factor: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2024, Sec. 3.4), as diffusers' guiders apply it: each row's std pulled back
    towards the cond prediction's (unbiased std over all other dims), mixed in by `factor`."""
    dims = list(range(1, pred.ndim))
    rescaled = pred * (pred_cond.std(dim=dims, keepdim=True) / pred.std(dim=dims, keepdim=True))
    return factor * rescaled + (1 - factor) * pred


def perturbed_guidance(pred_cond: torch.Tensor, pred_perturbed: torch.Tensor, scale: float, *,
                       pred_uncond: Optional[torch.Tensor] = None, cfg_scale: float = 1.0,
                       guidance_rescale: float = 0.0) -> torch.Tensor:
    """What a webui job gives with PAG or SEG: the host's CFG, plus our term (`pag_guidance`, the runtime's),
    then diffusers' optional guidance rescale, so that the composition can be held against diffusers' guiders."""
    base = pred_cond if pred_uncond is None else pred_uncond + cfg_scale * (pred_cond - pred_uncond)
    pred = base + pag_guidance(pred_cond, pred_perturbed, scale)
    if guidance_rescale > 0:
        pred = rescale_to_cond(pred, pred_cond, guidance_rescale)
    return pred


@pytest.fixture(autouse=True, scope="module")
def webui_unet_patches():
    sd_hijack_unet.apply_optimizations()


def tiny_sdxl_unet(seed: int = 1) -> UNetModel:
    """SDXL's U-Net layout in small: two downsamples, linear projections, 2 transformer blocks, 64-channel heads."""
    unet = UNetModel(
        image_size=32, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=1,
        attention_resolutions=[2, 4], channel_mult=(1, 2, 4), num_head_channels=64, use_spatial_transformer=True,
        use_linear_in_transformer=True, transformer_depth=2, context_dim=[32, 32], legacy=False,
    )
    return rerandomise(unet, seed).eval()


def run_unet(unet: UNetModel, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """One U-Net call at t = 500; ldm's SpatialTransformer takes a context per block where sgm reuses one."""
    depth = len(find_middle_self_attention(unet)[0].transformer_blocks)
    return unet(x, torch.full((x.shape[0],), 500.0), context=[context] * depth)


@pytest.fixture(scope="module")
def unets():
    return {"sd1": tiny_unet(), "sdxl": tiny_sdxl_unet()}


def self_attention(unets, layout: str) -> nn.Module:
    """SD1: the middle block's attn1 (8 heads of 16). SDXL: attn1 of the middle's second block (2 heads of 64)."""
    transformer, attention = find_middle_self_attention(unets[layout])
    return attention if layout == "sd1" else transformer.transformer_blocks[1].attn1


def diffusers_twin(attention: nn.Module) -> Attention:
    """diffusers' Attention with the ldm module's weights (its default SDP processor, scale dim_head ** -0.5)."""
    heads = attention.heads
    twin = Attention(query_dim=attention.to_q.in_features, heads=heads,
                     dim_head=attention.to_q.out_features // heads, bias=False, out_bias=True)
    with torch.no_grad():
        for name in ("to_q", "to_k", "to_v"):
            getattr(twin, name).weight.copy_(getattr(attention, name).weight)
        twin.to_out[0].weight.copy_(attention.to_out[0].weight)
        twin.to_out[0].bias.copy_(attention.to_out[0].bias)
    return twin.eval()


class Blocks(nn.Module):
    """A stack of one block, where diffusers' guiders look for layers to hook (fqn "transformer_blocks")."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.transformer_blocks = nn.ModuleList([block])


def tokens(rows: int, grid: tuple[int, int], width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, grid[0] * grid[1], width, generator=torch.Generator().manual_seed(seed))


def seg_oracle(sigma: float, threshold: float) -> SmoothedEnergyGuidanceHook:
    return SmoothedEnergyGuidanceHook(blur_sigma=sigma, blur_threshold_inf=threshold)


def hooked(attention: nn.Module, x: torch.Tensor, rows, perturbation) -> torch.Tensor:
    with torch.no_grad(), PerturbedSelfAttention(attention, rows, perturbation):
        return attention(x)


def no_hooks(*modules: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks for m in modules)


# PAG


@pytest.mark.parametrize("layout", ["sd1", "sdxl"])
def test_pag_rows_equal_diffusers_identity_processors(unets, layout):
    """Batches [cond, perturbed] and [uncond, cond, perturbed] as diffusers' PAG pipelines lay them out."""
    attention = self_attention(unets, layout)
    twin = diffusers_twin(attention)
    uncond, cond = tokens(2, (6, 6), attention.to_q.in_features).chunk(2)
    for processor, x in ((PAGIdentitySelfAttnProcessor2_0(), torch.cat([cond, cond])),
                         (PAGCFGIdentitySelfAttnProcessor2_0(), torch.cat([uncond, cond, cond]))):
        twin.set_processor(processor)
        with torch.no_grad():
            expected = twin(x)
        ours = hooked(attention, x, [x.shape[0] - 1], IdentityAttention())
        torch.testing.assert_close(ours, expected, **TOLERANCE)
        assert (ours[-1] - ours[-2]).abs().max() > 1e-2  # the perturbed row is not the cond row


@pytest.mark.parametrize("layout", ["sd1", "sdxl"])
def test_pag_rows_equal_the_pag_guiders_attention_score_skip(unets, layout):
    """PerturbedAttentionGuidance's layer hook (skip_attention_scores: SDP returns the values) on the same layer."""
    attention = self_attention(unets, layout)
    blocks = Blocks(diffusers_twin(attention))
    config = LayerSkipConfig(indices=[0], fqn="transformer_blocks", skip_attention=False,
                             skip_attention_scores=True, skip_ff=False)
    _apply_layer_skip_hook(blocks, config, name="pag")
    x = tokens(2, (5, 7), attention.to_q.in_features, seed=1)
    with torch.no_grad():
        expected = blocks.transformer_blocks[0](x)
    ours = hooked(attention, torch.cat([x, x]), [2, 3], IdentityAttention())
    torch.testing.assert_close(ours[2:], expected, **TOLERANCE)
    assert (ours[2:] - ours[:2]).abs().max() > 1e-2


def test_pag_takes_the_values_the_host_computed_after_its_hypernetwork(unets):
    """The webui passes attn1's context (x itself) through loaded hypernetworks before to_v: PAG keeps that."""
    attention = self_attention(unets, "sd1")
    width = attention.to_q.in_features
    x = tokens(2, (4, 4), width, seed=2)
    shared.loaded_hypernetworks[:] = [Hypernetwork("test", [width], seed=3)]
    try:
        ours = hooked(attention, x, [1], IdentityAttention())
        with torch.no_grad():
            _, context_v = apply_hypernetworks(shared.loaded_hypernetworks, x[1:])
            expected = attention.to_out(attention.to_v(context_v))
            without = attention.to_out(attention.to_v(x[1:]))
    finally:
        shared.loaded_hypernetworks.clear()
    torch.testing.assert_close(ours[1:], expected, **TOLERANCE)
    assert (ours[1:] - without).abs().max() > 1e-3


# SEG


@pytest.mark.parametrize("layout", ["sd1", "sdxl"])
@pytest.mark.parametrize("side", [7, 8])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 10.0])
def test_seg_rows_equal_diffusers_gaussian_query_blur(unets, layout, side, sigma):
    """diffusers' SEG hook on to_q, its Gaussian branch (kernel ceil(6 sigma) made odd, clamped to the side)."""
    attention = self_attention(unets, layout)
    twin = diffusers_twin(attention)
    HookRegistry.check_if_exists_or_initialize(twin.to_q).register_hook(seg_oracle(sigma, threshold=0.0), "seg")
    x = tokens(1, (side, side), attention.to_q.in_features, seed=side)
    with torch.no_grad():
        expected = twin(x)
    ours = hooked(attention, torch.cat([x, x]), [1], SmoothedQueries((side, side), sigma))
    torch.testing.assert_close(ours[1:], expected, **TOLERANCE)
    assert (ours[1] - ours[0]).abs().max() > 1e-3


@pytest.mark.parametrize("layout", ["sd1", "sdxl"])
@pytest.mark.parametrize("sigma", [1e7, math.inf])
def test_seg_infinite_sigma_rows_equal_diffusers_mean_query(unets, layout, sigma):
    """An infinite blur gives every token the mean query: diffusers' SEG hook, its mean branch."""
    attention = self_attention(unets, layout)
    twin = diffusers_twin(attention)
    HookRegistry.check_if_exists_or_initialize(twin.to_q).register_hook(seg_oracle(1e7, math.inf), "seg")
    x = tokens(2, (6, 6), attention.to_q.in_features, seed=4)
    with torch.no_grad():
        expected = twin(x)
    ours = hooked(attention, torch.cat([x, x]), [2, 3], SmoothedQueries((6, 6), sigma))
    torch.testing.assert_close(ours[2:], expected, **TOLERANCE)
    assert ours[2].std(dim=0).max() < 1e-5  # one query for all tokens: one output for all tokens


def test_diffusers_0_38_swaps_seg_branches_so_its_branches_are_checked_one_by_one():
    """SEG's reference code blurs below its infinity threshold and averages above; diffusers 0.38 does the reverse.

    Its default sigma (9999999) thus gives a 9-tap box-like blur, and any finite sigma the mean query.
    """
    q = tokens(1, (8, 8), 16, seed=5)
    finite = seg_oracle(1.0, 9999.9).post_forward(None, q.clone())
    assert finite.std(dim=1).max() < 1e-5
    torch.testing.assert_close(finite, q.mean(dim=1, keepdim=True).expand_as(q))
    default = seg_oracle(9999999.0, 9999.9).post_forward(None, q.clone())
    assert (default - q.mean(dim=1, keepdim=True)).abs().max() > 1e-2
    torch.testing.assert_close(smooth_queries(q, (8, 8), 1.0), seg_oracle(1.0, 0.0).post_forward(None, q.clone()),
                               **TOLERANCE)


def test_seg_kernel_size_follows_sigma_and_fits_the_grid():
    assert [seg_kernel_size(s, 64) for s in (0.1, 0.5, 1.0, 1.2, 2.0, 3.0)] == [1, 3, 7, 9, 13, 19]
    assert [seg_kernel_size(10.0, side) for side in (1, 2, 7, 8)] == [1, 3, 7, 9]


def test_seg_blur_spreads_along_the_callers_grid():
    """20 tokens may be 4 x 5 or 5 x 4: the caller's grid decides, each axis with its own clamped kernel."""
    impulse = torch.zeros(1, 9 * 13, 1)
    impulse[0, 4 * 13 + 6] = 1.0  # row 4, column 6, away from every border
    blurred = smooth_queries(impulse, (9, 13), 1.0).reshape(9, 13)
    g = torch.exp(-0.5 * torch.arange(-3.0, 4.0) ** 2)
    g = g / g.sum()
    expected = torch.zeros(9, 13)
    expected[1:8, 3:10] = g[:, None] * g[None, :]
    torch.testing.assert_close(blurred, expected, **TOLERANCE)

    q = tokens(1, (4, 5), 3, seed=6)
    wide = smooth_queries(q, (4, 5), 2.0)
    tall = smooth_queries(q.reshape(1, 4, 5, 3).transpose(1, 2).reshape(1, 20, 3), (5, 4), 2.0)
    torch.testing.assert_close(tall.reshape(1, 5, 4, 3).transpose(1, 2).reshape(1, 20, 3), wide, **TOLERANCE)
    assert (smooth_queries(q, (5, 4), 2.0) - wide).abs().max() > 1e-2
    with pytest.raises(ValueError, match="do not fill a 4 x 4"):
        smooth_queries(q, (4, 4), 2.0)


def test_token_grid_rounds_up_like_the_unets_downsampling(unets):
    seen = {}
    for layout, factor in (("sd1", 8), ("sdxl", 4)):
        attention = self_attention(unets, layout)
        handle = attention.register_forward_pre_hook(lambda m, args, layout=layout: seen.setdefault(layout, args[0]))
        try:
            with torch.no_grad():
                run_unet(unets[layout], torch.randn(1, 4, 25, 33), torch.randn(1, 77, 32))
        finally:
            handle.remove()
        assert seen[layout].shape[1] == math.prod(token_grid((25, 33), factor))
    assert token_grid((25, 33), 8) == (4, 5) and token_grid((25, 33), 4) == (7, 9)


# Rows, and the handle's lifetime


@pytest.mark.parametrize("perturbation", [IdentityAttention(), SmoothedQueries((5, 6), 1.5),
                                          SmoothedQueries((5, 6), math.inf)], ids=["pag", "seg", "seg-inf"])
def test_other_rows_are_bit_identical_to_the_hosts_output(unets, perturbation):
    attention = self_attention(unets, "sd1")
    x = tokens(4, (5, 6), attention.to_q.in_features, seed=7)
    with torch.no_grad():
        plain = attention(x)
    ours = hooked(attention, x, [1, 3], perturbation)
    assert torch.equal(ours[[0, 2]], plain[[0, 2]])
    assert (ours[[1, 3]] - plain[[1, 3]]).abs().flatten(1).amax(dim=1).min() > 1e-3


@pytest.mark.parametrize("layout,factor", [("sd1", 8), ("sdxl", 4)])
def test_other_rows_of_the_unet_output_are_bit_identical(unets, layout, factor):
    """Every self-attention of the middle block perturbed on the last row; the U-Net's other rows untouched."""
    unet = unets[layout]
    transformer, _ = find_middle_self_attention(unet)
    x, context = torch.randn(3, 4, 17, 23), torch.randn(3, 77, 32)
    x[2], context[2] = x[1], context[1]
    grid = token_grid(x.shape[-2:], factor)
    with torch.no_grad():
        plain = run_unet(unet, x, context)
        for perturbation in (IdentityAttention(), SmoothedQueries(grid, 1.0)):
            with ExitStack() as stack:
                for block in transformer.transformer_blocks:
                    stack.enter_context(PerturbedSelfAttention(block.attn1, [2], perturbation))
                ours = run_unet(unet, x, context)
            assert torch.equal(ours[:2], plain[:2])
            assert (ours[2] - plain[2]).abs().max() > 1e-3
        assert torch.equal(run_unet(unet, x, context), plain)


@pytest.mark.parametrize("perturbation", [IdentityAttention(), SmoothedQueries((4, 4), 1.0)], ids=["pag", "seg"])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_the_handle_restores_the_module_after_success_and_any_exception(unets, perturbation, error):
    attention = self_attention(unets, "sd1")
    parts = (attention, attention.to_q, attention.to_v, attention.to_out)
    x = tokens(2, (4, 4), attention.to_q.in_features, seed=8)
    with torch.no_grad():
        plain = attention(x)
        with PerturbedSelfAttention(attention, [1], perturbation) as handle:
            assert handle.installed and not no_hooks(*parts)
            attention(x)
        assert no_hooks(*parts) and not handle.installed

        def explode(module, args, output):
            raise error("boom")

        boom = attention.to_out.register_forward_hook(explode)
        try:
            with pytest.raises(error, match="boom"):
                with PerturbedSelfAttention(attention, [1], perturbation):
                    attention(x)
        finally:
            boom.remove()
        assert no_hooks(*parts)
        assert torch.equal(attention(x), plain)


def test_install_does_not_stack_and_remove_is_idempotent(unets):
    attention = self_attention(unets, "sd1")
    handle = PerturbedSelfAttention(attention, [0], SmoothedQueries((2, 2), 1.0))
    handle.install()
    handle.install()
    assert len(attention._forward_pre_hooks) == 1 and len(attention.to_q._forward_hooks) == 1
    handle.remove()
    handle.remove()
    assert no_hooks(attention, attention.to_q)


def test_rows_outside_the_batch_and_a_grid_that_does_not_fit_are_refused(unets):
    attention = self_attention(unets, "sd1")
    x = tokens(2, (4, 5), attention.to_q.in_features)
    with pytest.raises(PerturbationError, match="outside a batch of 2"):
        hooked(attention, x, [2], IdentityAttention())
    with pytest.raises(PerturbationError, match="not a 5 x 5 grid"):
        hooked(attention, x, [1], SmoothedQueries((5, 5), 1.0))
    with pytest.raises(ValueError, match="distinct"):
        PerturbedSelfAttention(attention, [1, 1], IdentityAttention())
    assert no_hooks(attention, attention.to_q, attention.to_v)
    with torch.no_grad():
        assert torch.equal(hooked(attention, x, [], IdentityAttention()), attention(x))


# Guidance arithmetic


def predictions(seed: int = 9):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, 8, 8, generator=generator) for _ in range(3)]


@pytest.mark.parametrize("rescale", [0.0, 0.7])
def test_guidance_with_cfg_equals_diffusers_pag_and_seg_guiders(rescale):
    uncond, cond, perturbed = predictions()
    pag = PerturbedAttentionGuidance(guidance_scale=5.0, perturbed_guidance_scale=3.0, perturbed_guidance_layers=[0],
                                     guidance_rescale=rescale)
    seg = SmoothedEnergyGuidance(guidance_scale=5.0, seg_guidance_scale=3.0, seg_guidance_layers=[0],
                                 guidance_rescale=rescale)
    ours = perturbed_guidance(cond, perturbed, 3.0, pred_uncond=uncond, cfg_scale=5.0, guidance_rescale=rescale)
    for guider in (pag, seg):
        torch.testing.assert_close(ours, guider.forward(cond, uncond, perturbed).pred, atol=1e-6, rtol=1e-6)
    plain = uncond + 5.0 * (cond - uncond) + 3.0 * (cond - perturbed)
    assert (rescale == 0.0) == torch.equal(ours, plain)


def test_guidance_equals_diffusers_pag_pipelines_with_and_without_cfg():
    uncond, cond, perturbed = predictions(10)
    pipeline = SimpleNamespace(_get_pag_scale=lambda t: 2.5)
    apply = PAGMixin._apply_perturbed_attention_guidance
    with_cfg = apply(pipeline, torch.cat([uncond, cond, perturbed]), True, 6.0, 500)
    without = apply(pipeline, torch.cat([cond, perturbed]), False, 1.0, 500)
    torch.testing.assert_close(perturbed_guidance(cond, perturbed, 2.5, pred_uncond=uncond, cfg_scale=6.0), with_cfg,
                               atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(perturbed_guidance(cond, perturbed, 2.5), without, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(perturbed_guidance(cond, perturbed, 2.5, pred_uncond=uncond, cfg_scale=1.0), without,
                               atol=1e-6, rtol=1e-6)


def test_without_cfg_diffusers_guiders_start_from_the_perturbed_prediction():
    """guidance_scale 1 turns the guiders' CFG off and their base becomes the perturbed prediction:
    perturbed + s (cond - perturbed) = cond + (s - 1) (cond - perturbed), one less than the papers' s."""
    uncond, cond, perturbed = predictions(11)
    pag = PerturbedAttentionGuidance(guidance_scale=1.0, perturbed_guidance_scale=3.0, perturbed_guidance_layers=[0])
    seg = SmoothedEnergyGuidance(guidance_scale=1.0, seg_guidance_scale=3.0, seg_guidance_layers=[0])
    for guider in (pag, seg):
        expected = guider.forward(cond, None, perturbed).pred
        torch.testing.assert_close(perturbed_guidance(cond, perturbed, 2.0), expected, atol=1e-6, rtol=1e-6)
        assert (perturbed_guidance(cond, perturbed, 3.0) - expected).abs().max() > 0.1


def test_rescale_brings_each_rows_std_to_the_conds():
    uncond, cond, perturbed = predictions(12)
    pred = perturbed_guidance(cond, perturbed, 3.0, pred_uncond=uncond, cfg_scale=7.0)
    full = rescale_to_cond(pred, cond, 1.0)
    torch.testing.assert_close(full.std(dim=(1, 2, 3)), cond.std(dim=(1, 2, 3)))
    assert torch.equal(rescale_to_cond(pred, cond, 0.0), pred)


# The layer-level hook the script uses: every self-attention of a named block, the grid read from the block


@pytest.mark.parametrize("layout,factor", [("sd1", 8), ("sdxl", 4)])
def test_a_perturbed_layer_reads_segs_grid_from_its_block_and_equals_explicit_hooks(unets, layout, factor):
    unet = unets[layout]
    layer = find_layer(unet, "middle")
    x, context = torch.randn(2, 4, 17, 23), torch.randn(2, 77, 32)
    grid = token_grid(x.shape[-2:], factor)
    with torch.no_grad():
        for ours, explicit in ((IdentityAttention(), IdentityAttention()),
                               (SmoothedQueries(None, 1.5), SmoothedQueries(grid, 1.5))):
            with PerturbedLayer(layer, [1], ours):
                by_layer = run_unet(unet, x, context)
            with ExitStack() as stack:
                for attention in layer.attentions:
                    stack.enter_context(PerturbedSelfAttention(attention, [1], explicit))
                by_hand = run_unet(unet, x, context)
            assert torch.equal(by_layer, by_hand)
    assert no_hooks(layer.transformer, *layer.attentions)


def test_a_period_perturbs_the_same_rows_of_every_repeat_as_a_tiler_sends_them(unets):
    """Tiled Diffusion sends several tiles of one model call per U-Net call: rows [a, b, a', b'] with period 2."""
    unet = unets["sd1"]
    layer = find_layer(unet, "middle")
    x, context = torch.randn(4, 4, 16, 16), torch.randn(4, 77, 32)
    with torch.no_grad():
        for perturbation in (IdentityAttention(), SmoothedQueries(None, 2.0)):
            with PerturbedLayer(layer, [1], perturbation, period=2):
                repeated = run_unet(unet, x, context)
            with PerturbedLayer(layer, [1, 3], perturbation):
                listed = run_unet(unet, x, context)
            assert torch.equal(repeated, listed)
        with PerturbedLayer(layer, [1], IdentityAttention(), period=3), \
                pytest.raises(PerturbationError, match="not whole repeats of the 3 rows"):
            run_unet(unet, x, context)
    assert no_hooks(layer.transformer, *layer.attentions)


@pytest.mark.parametrize("layout,names", [
    ("sd1", ["input 5", "input 7", "middle", "output 0", "output 1", "output 2", "output 3"]),
    ("sdxl", ["input 3", "input 5", "middle", "output 0", "output 1", "output 2", "output 3"]),
])
def test_layers_are_named_by_their_block_and_an_unknown_name_lists_the_real_ones(unets, layout, names):
    layers = attention_layers(unets[layout])
    assert list(layers) == names
    assert len(layers["middle"].attentions) == (1 if layout == "sd1" else 2)
    with pytest.raises(LayerError, match=f"no self-attention layer 'output 9'; its layers are {', '.join(names)}"):
        find_layer(unets[layout], "output 9")
