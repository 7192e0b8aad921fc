"""The middle-block attention hook on the real ldm U-Net and CrossAttention classes."""

import pytest
import torch
import torch.nn.functional as F

from models import attention_probs as ldm_probs, tiny_unet
from modules import sd_hijack_unet
from recording import Recording
from sag_core.attention_hook import find_middle_self_attention
from sag_core.tracking import locate_tile
from sag_core.saliency import saliency_from_probs


@pytest.fixture(autouse=True, scope="module")
def webui_unet_patches():
    sd_hijack_unet.apply_optimizations()


def forward(unet, x, context):
    return unet(x, torch.full((x.shape[0],), 500.0), context=context)


@pytest.mark.parametrize("heads", [8, 20])
def test_finds_the_first_middle_self_attention_with_its_heads(heads):
    unet = tiny_unet(heads=heads)
    transformer, attention = find_middle_self_attention(unet)
    assert transformer is unet.middle_block[1]
    assert attention is unet.middle_block[1].transformer_blocks[0].attn1
    assert attention.heads == heads


def test_a_unet_without_middle_attention_is_refused_clearly():
    unet = tiny_unet()
    del unet.middle_block[1]
    with pytest.raises(LookupError, match="no self-attention in its middle block"):
        find_middle_self_attention(unet)


@pytest.mark.parametrize("latent,grid", [((32, 32), (4, 4)), ((25, 33), (4, 5)), ((9, 17), (2, 3))])
def test_grid_is_measured_at_the_hook_with_ceil_and_saliency_matches_ldm(latent, grid):
    """Saliency comes back over the whole latent: ldm's own, on the measured token grid, stretched (nearest)."""
    unet = tiny_unet()
    _, attention = find_middle_self_attention(unet)
    recorder = Recording(unet)
    seen = {}
    attention.register_forward_hook(lambda m, args, out: seen.setdefault("x", args[0]))
    x = torch.randn(3, 4, *latent)
    context = torch.randn(3, 77, 32)
    with torch.no_grad(), recorder:
        recorder.begin(x, rows=[1, 2])
        forward(unet, x, context)
        recorded = recorder.finish()
    saliency, size = recorded.saliency, recorded.size
    assert size == latent and saliency.shape == (2, latent[0] * latent[1])
    assert seen["x"].shape[1] == grid[0] * grid[1]
    with torch.no_grad():
        tokens = saliency_from_probs(ldm_probs(attention, seen["x"][1:]), attention.heads)
    expected = F.interpolate(tokens.reshape(2, 1, *grid), size=latent, mode="nearest").flatten(1)
    torch.testing.assert_close(saliency, expected, atol=1e-5, rtol=1e-5)


def test_hook_leaves_the_unet_output_unchanged():
    unet = tiny_unet()
    x, context = torch.randn(2, 4, 16, 24), torch.randn(2, 77, 32)
    with torch.no_grad():
        plain = forward(unet, x, context)
        recorder = Recording(unet)
        with recorder:
            recorder.begin(x, [x.shape[0] - 1])
            hooked = forward(unet, x, context)
    assert torch.equal(plain, hooked)
    assert plain.abs().max() > 0


def test_uncond_rows_are_found_across_sliced_calls():
    """batch_cond_uncond off: rows arrive in slices; the uncond rows (last 2 of 5) straddle two calls."""
    unet = tiny_unet()
    x, context = torch.randn(5, 4, 16, 16), torch.randn(5, 77, 32)
    recorder = Recording(unet)
    with torch.no_grad(), recorder:
        recorder.begin(x, [3, 4])
        forward(unet, x, context)
        whole = recorder.finish().saliency
        recorder.begin(x, [3, 4])
        for a in range(0, 5, 2):
            forward(unet, x[a:a + 2], context[a:a + 2])
        sliced = recorder.finish().saliency
    torch.testing.assert_close(sliced, whole, atol=1e-5, rtol=1e-5)


def test_a_step_whose_uncond_rows_never_ran_records_nothing():
    unet = tiny_unet()
    recorder = Recording(unet)
    with torch.no_grad(), recorder:
        recorder.begin(torch.randn(4, 4, 16, 16), [2, 3])
        forward(unet, torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32))
        assert recorder.finish() is None


def test_hook_is_removed_when_the_forward_raises():
    unet = tiny_unet()
    transformer, attention = find_middle_self_attention(unet)

    def explode(module, args):
        raise RuntimeError("boom")

    unet.output_blocks[0].register_forward_pre_hook(explode)
    with pytest.raises(RuntimeError, match="boom"):
        with torch.no_grad(), Recording(unet) as hook:
            assert hook.installed and len(attention._forward_pre_hooks) == 1 and unet._forward_pre_hooks
            forward(unet, torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32))
    assert not transformer._forward_pre_hooks and not attention._forward_pre_hooks and not unet._forward_pre_hooks


def test_remove_is_idempotent_and_install_does_not_stack():
    unet = tiny_unet()
    _, attention = find_middle_self_attention(unet)
    hook = Recording(unet)
    hook.install()
    hook.install()
    assert len(attention._forward_pre_hooks) == 1
    hook.remove()
    hook.remove()
    assert not attention._forward_pre_hooks


def test_locate_tile_finds_where_a_scaled_tile_was_cut_and_refuses_anything_else():
    whole = torch.randn(2, 4, 20, 30)
    assert locate_tile(0.3 * whole[:, :, 5:17, 7:19], whole) == (5, 7)
    assert locate_tile(whole[:, :, :, 18:], whole) == (0, 18)
    tilted = whole[:, :, 5:17, 7:19] * torch.linspace(0.5, 1.5, 12)
    assert locate_tile(tilted, whole) is None
    assert locate_tile(-whole[:, :, 5:17, 7:19], whole) is None
    swapped = whole[:, :, 5:17, 7:19].flip(0)  # rows out of order: row 0 fits, row 1 does not
    assert locate_tile(swapped, whole) is None
    flat = torch.ones(1, 4, 20, 30)
    assert locate_tile(flat[:, :, :8, :8], flat) is None


def one_unet_call_on_a_2x2_grid(attention, x, *hidden_runs):
    """One denoiser step (last row uncond) of one whole-latent U-Net call whose middle attention ran on `hidden_runs`."""
    recorder = Recording()
    recorder.begin(x, [x.shape[0] - 1])
    recorder.observe_unet_input(x)
    recorder.observe_grid(2, 2)
    for hidden in hidden_runs:
        recorder.begin_attention(hidden.shape[1])
        recorder.observe_queries(attention.to_q(hidden))
        recorder.observe_keys(attention, attention.to_k(hidden))
        recorder.end_attention()
    return recorder.finish()


def test_a_middle_grid_smaller_than_the_latents_is_stretched_over_the_whole_latent():
    """Kohya Deep Shrink scales the U-Net's features down: the middle grid is not latent / 8, the input is whole."""
    _, attention = find_middle_self_attention(tiny_unet())
    hidden = torch.randn(2, 4, attention.to_q.in_features)  # a 2 x 2 middle grid for a 32 x 32 latent
    with torch.no_grad():
        recorded = one_unet_call_on_a_2x2_grid(attention, torch.randn(2, 4, 32, 32), hidden)
        saliency, size = recorded.saliency, recorded.size
        tokens = saliency_from_probs(ldm_probs(attention, hidden[1:]), attention.heads)
    assert size == (32, 32)
    expected = tokens.reshape(1, 2, 1, 2, 1).expand(1, 2, 16, 2, 16).reshape(1, 32 * 32)
    torch.testing.assert_close(saliency, expected)


def test_a_second_run_of_the_middle_attention_within_one_unet_call_records_nothing():
    """An extension that runs the U-Net blocks on another latent inside the same U-Net call: which run is ours?"""
    _, attention = find_middle_self_attention(tiny_unet())
    x = torch.randn(2, 4, 16, 16)
    hidden = torch.randn(2, 4, attention.to_q.in_features)
    with torch.no_grad():
        assert one_unet_call_on_a_2x2_grid(attention, x, hidden) is not None
        assert one_unet_call_on_a_2x2_grid(attention, x, torch.randn_like(hidden), hidden) is None


def test_a_model_call_beyond_the_steps_rows_records_nothing_and_raises_nothing():
    """An extension calling the sampler's model once more in a step: its rows cannot be the step's."""
    unet = tiny_unet()
    recorder = Recording(unet)
    x, context = torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32)
    with torch.no_grad(), recorder:
        recorder.begin(x, [x.shape[0] - 1])
        recorder.observe_model_call(x)
        forward(unet, x, context)
        recorder.observe_model_call(x)
        forward(unet, x, context)
        assert recorder.finish() is None
