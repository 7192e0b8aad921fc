"""SAG under ordinary webui options that change the CFG denoiser's protocol (test host, webui v1.10.1).

Prompt padding (sd_samplers_cfg_denoiser.py: the conds are padded after the cfg_denoiser callback),
DDIM CFG++ (sd_samplers_timesteps_impl.ddim_cfgpp), CFG scale 1, and hypernetworks
(hypernetwork.apply_hypernetworks in every attention forward); see tests/host/README.md.
"""

import pytest
import torch

import harness
from models import attention_probs
from modules import shared
from modules.hypernetworks.hypernetwork import Hypernetwork, apply_hypernetworks
from recording import Recording
from sag_core.attention_hook import find_middle_self_attention
from sag_core.conditioning import concat_rows, slice_rows, take_rows
from sag_core.saliency import saliency_from_probs

ON = (True, 0.75, 2.0, 1.0)
NO_BLUR = (True, 0.75, 0.0, 1.0)
LONG_PROMPT = {"tokens": 154, "uncond_tokens": 77}

pytestmark = pytest.mark.usefixtures("sd1_host")


class UnetContexts:
    """The (rows, context) of every U-Net call while it is open (a test-side hook on the diffusion model)."""

    def __init__(self):
        self.calls = []
        unet = shared.sd_model.model.diffusion_model
        self.handle = unet.register_forward_pre_hook(
            lambda module, args, kwargs: self.calls.append((args[0].shape[0], kwargs["context"].clone())),
            with_kwargs=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def run(runner, sag=(False,), **kwargs):
    with UnetContexts() as contexts:
        processed = harness.run_job(runner, sag, **kwargs)
    return processed, contexts.calls


def largest_difference(a, b):
    return (a.samples - b.samples).abs().max().item()


class BatchSizeRounding:
    """Makes the U-Net's output depend on its batch size, as CPU kernels that block by batch size round: every
    row of a call of n rows gets n * 1e-4 added (a test-side forward hook)."""

    def __enter__(self):
        unet = shared.sd_model.model.diffusion_model
        self.handle = unet.register_forward_hook(lambda module, args, out: out + 1e-4 * out.shape[0])
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.mark.parametrize("rounding", [False, True])
@pytest.mark.parametrize("padding", [None, "pad_cond_uncond", "pad_cond_uncond_v0"])
def test_blur_sigma_zero_equals_sag_off_bit_for_bit_under_each_padding_option(ext, padding, rounding):
    """Sigma 0 re-noises to x itself, whose prediction is the host's own uncond one: SAG takes it from the host's
    rows instead of a call of another batch size, so even a U-Net that rounds each batch size differently (padding
    puts prompt and negative rows in one call) gives CFG's result exactly, with no extra U-Net call."""
    if padding:
        setattr(shared.opts, padding, True)
    with BatchSizeRounding() if rounding else torch.no_grad():
        off, off_calls = run(ext.txt2img, cond_kwargs=LONG_PROMPT)
        no_blur, no_blur_calls = run(ext.txt2img, NO_BLUR, cond_kwargs=LONG_PROMPT)
        on, on_calls = run(ext.txt2img, ON, cond_kwargs=LONG_PROMPT)
    assert torch.equal(no_blur.samples, off.samples)
    assert [rows for rows, _ in no_blur_calls] == [rows for rows, _ in off_calls]
    assert len(on_calls) == len(off_calls) + len(off_calls) // (1 if padding else 2)  # one extra call per step
    assert largest_difference(on, off) > 1e-2


@pytest.mark.parametrize("padding,tokens", [("pad_cond_uncond", 154), ("pad_cond_uncond_v0", 154), (None, 77)])
def test_the_extra_pass_uses_the_uncond_conditioning_the_host_sent(ext, padding, tokens):
    """Padding happens after the cfg_denoiser callback: SAG's pass takes the padded uncond the U-Net saw."""
    if padding:
        setattr(shared.opts, padding, True)
    _, calls = run(ext.txt2img, ON, steps=2, cond_kwargs=LONG_PROMPT)
    if padding:  # one batched call [cond; uncond], then SAG's uncond-only call
        assert [rows for rows, _ in calls] == [2, 1] * 2
        host_uncond, sag = calls[0][1][1:], calls[1][1]
    else:  # separate cond and uncond calls (lengths differ), then SAG's
        assert [rows for rows, _ in calls] == [1, 1, 1] * 2
        host_uncond, sag = calls[1][1], calls[2][1]
    assert sag.shape[1] == host_uncond.shape[1] == tokens
    assert torch.equal(sag, host_uncond)


def test_sdxl_style_conditioning_rows_are_sliced_and_joined_per_key():
    cond = {"crossattn": torch.arange(24.).reshape(4, 3, 2), "vector": torch.arange(8.).reshape(4, 2),
            "c_concat": [torch.arange(4.).reshape(4, 1)]}
    rows = take_rows(cond, [3, 1])
    assert torch.equal(rows["crossattn"], cond["crossattn"][[3, 1]])
    assert torch.equal(rows["vector"], cond["vector"][[3, 1]])
    assert torch.equal(rows["c_concat"][0], cond["c_concat"][0][[3, 1]])
    assert concat_rows([slice_rows(cond, 0, 1), {"crossattn": torch.zeros(1, 5, 2), "vector": torch.zeros(1, 2),
                                                 "c_concat": [torch.zeros(1, 1)]}]) is None


def test_an_sdxl_style_model_call_gives_the_guided_rows_their_padded_conditioning():
    """The recorder keeps each guided row's conditioning from the model call that took it (dict conds too)."""
    unet = harness_unet()
    recorder = Recording(unet)
    x = torch.randn(4, 4, 16, 16)
    cond = {"crossattn": torch.randn(4, 154, 32), "vector": torch.randn(4, 6), "c_concat": [torch.zeros(4, 5, 1, 1)]}
    with torch.no_grad(), recorder:
        recorder.begin(x, [2, 3])
        recorder.observe_model_call(x, cond)
        unet(x, torch.full((4,), 500.0), context=cond["crossattn"])
        recorded = recorder.finish()
    assert torch.equal(recorded.cond["crossattn"], cond["crossattn"][2:])
    assert torch.equal(recorded.cond["vector"], cond["vector"][2:])
    assert torch.equal(recorded.cond["c_concat"][0], cond["c_concat"][0][2:])


def harness_unet():
    from models import tiny_unet
    return tiny_unet()


def first_step_change(ext, sampler, sag):
    """x after one DDIM-family step with SAG `sag` minus the same step with SAG off."""
    off = harness.run_job(ext.txt2img, (False,), sampler_name=sampler, steps=2, cfg_scale=7.0)
    on = harness.run_job(ext.txt2img, sag, sampler_name=sampler, steps=2, cfg_scale=7.0)
    return on.samples - off.samples


def test_under_ddim_cfgpp_sag_moves_a_step_exactly_as_under_ddim(ext):
    """CFG++ re-noises with the uncond eps; SAG's term joins it there, so SAG's effect on x equals DDIM's."""
    ddim = first_step_change(ext, "DDIM", ON)
    cfgpp = first_step_change(ext, "DDIM CFG++", ON)
    assert ddim.abs().max() > 1e-2
    torch.testing.assert_close(cfgpp, ddim, atol=1e-5, rtol=1e-4)


def test_under_ddim_cfgpp_blur_sigma_zero_equals_sag_off(ext):
    off = harness.run_job(ext.txt2img, (False,), sampler_name="DDIM CFG++", steps=6)
    no_blur = harness.run_job(ext.txt2img, NO_BLUR, sampler_name="DDIM CFG++", steps=6)
    on = harness.run_job(ext.txt2img, ON, sampler_name="DDIM CFG++", steps=6)
    assert largest_difference(no_blur, off) < 1e-4
    assert largest_difference(on, off) > 1e-2


@pytest.mark.parametrize("sampler", ["Euler a", "DDIM"])
def test_at_cfg_scale_one_sag_guides_the_prompt_branch_and_says_so(ext, sampler):
    """As diffusers' SAG pipeline at guidance scale <= 1: saliency, extra pass and target from the prompt rows."""
    off, _ = run(ext.txt2img, sampler_name=sampler, cfg_scale=1.0)
    no_blur, _ = run(ext.txt2img, NO_BLUR, sampler_name=sampler, cfg_scale=1.0)
    on, calls = run(ext.txt2img, ON, sampler_name=sampler, cfg_scale=1.0, steps=3)
    assert [rows for rows, _ in calls] == [2, 1] * 3
    for step in range(3):
        host, sag = calls[2 * step][1], calls[2 * step + 1][1]
        assert torch.equal(sag, host[:1])  # the prompt's row, not the negative prompt's
    assert on.infotexts == ["SAG scale: 0.75, SAG branch: prompt"]
    assert largest_difference(no_blur, off) < 1e-4
    full, _ = run(ext.txt2img, ON, sampler_name=sampler, cfg_scale=1.0)
    assert largest_difference(full, off) > 1e-2


def test_above_cfg_scale_one_sag_guides_the_negative_branch_without_a_branch_key(ext):
    on, calls = run(ext.txt2img, ON, cfg_scale=1.5, steps=1)
    assert torch.equal(calls[1][1], calls[0][1][1:])
    assert on.infotexts == ["SAG scale: 0.75"]


def test_at_cfg_scale_one_an_and_prompt_guides_each_images_first_sub_prompt(ext):
    lengths = {"and_prompts": 2}
    on, calls = run(ext.txt2img, ON, batch=2, cfg_scale=1.0, steps=1, cond_kwargs=lengths)
    assert [rows for rows, _ in calls] == [6, 2]
    assert torch.equal(calls[1][1], calls[0][1][[0, 2]])
    assert on.infotexts == ["SAG scale: 0.75, SAG branch: prompt"] * 2


def test_saliency_uses_the_keys_the_hosts_attention_computed_with_a_hypernetwork():
    """The webui passes self-attention's context through the loaded hypernetworks before to_k."""
    unet = harness_unet()
    _, attention = find_middle_self_attention(unet)
    width = attention.to_k.in_features
    shared.loaded_hypernetworks[:] = [Hypernetwork("test", [width], seed=3)]
    seen = {}

    def keep_input(module, args, kwargs):
        seen.setdefault("x", args[0])

    attention.register_forward_pre_hook(keep_input, with_kwargs=True)
    x = torch.randn(2, 4, 16, 16)
    recorder = Recording(unet)
    try:
        with torch.no_grad(), recorder:
            recorder.begin(x, [1])
            unet(x, torch.full((2,), 500.0), context=torch.randn(2, 77, 32))
            recorded = recorder.finish()
        with torch.no_grad():
            hidden = seen["x"][1:]
            keys, _ = apply_hypernetworks(shared.loaded_hypernetworks, hidden)
            q = attention.to_q(hidden).unflatten(-1, (attention.heads, -1)).transpose(1, 2).flatten(0, 1)
            k = attention.to_k(keys).unflatten(-1, (attention.heads, -1)).transpose(1, 2).flatten(0, 1)
            with_hypernetwork = saliency_from_probs((q @ k.transpose(1, 2) * attention.scale).softmax(-1),
                                                    attention.heads)
            without = saliency_from_probs(attention_probs(attention, hidden), attention.heads)
    finally:
        shared.loaded_hypernetworks.clear()
    tokens = recorded.saliency.reshape(1, 16, 16)[:, ::8, ::8].flatten(1)  # the 2 x 2 grid, stretched
    torch.testing.assert_close(tokens, with_hypernetwork, atol=1e-5, rtol=1e-5)
    assert (tokens - without).abs().max() > 1e-3


def test_a_job_with_a_hypernetwork_is_guided_on_every_step(ext):
    width = find_middle_self_attention(shared.sd_model.model.diffusion_model)[1].to_k.in_features
    shared.loaded_hypernetworks[:] = [Hypernetwork("test", [width, 32], seed=3)]
    on, _ = run(ext.txt2img, ON)
    off, _ = run(ext.txt2img)
    no_blur, _ = run(ext.txt2img, NO_BLUR)
    shared.loaded_hypernetworks.clear()
    bare, _ = run(ext.txt2img)
    assert on.infotexts == ["SAG scale: 0.75"]  # no skipped steps
    assert largest_difference(on, off) > 1e-2 and largest_difference(no_blur, off) < 1e-4
    assert largest_difference(off, bare) > 1e-2  # the hypernetwork acts
