"""The Forge adapter (sag_core/host/forge.py) against the A1111 one on the same step of the same model.

Both paths run one denoiser step on the test host's real ldm U-Net: A1111's through the test host's
CFGDenoiser (webui v1.10.1 protocol), Forge's through `forge_denoiser.ForgeCFGDenoiser` and the
`backend` stand-in (Forge dfdcbab6: the patcher, `calc_cond_uncond_batch`, `sampling_function_inner`,
`KModel.apply_model`). Differences from the real Forge that matter here: the U-Net is ldm's (Forge's
backend/nn/unet.py keeps ldm's module names and the to_q/to_k/to_v/to_out projections our hooks read,
but computes attention through its own `attention_function`); the sigma is on the model's schedule,
where k-diffusion's interpolated timestep and Forge's nearest one agree; float32 throughout.
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import forge_denoiser
from backend.modules.k_model import KModel
from backend.patcher.base import ModelPatcher
from backend.sampling import sampling_function
from harness import conds
from models import sd_alphas_cumprod
from modules import prompt_parser, script_callbacks, shared
from modules.sd_samplers_kdiffusion import CFGDenoiserKDiffusion
from sag_core.host.a1111 import GenerationSag, Webui
from sag_core.host.forge import Forge, ForgeGeneration, chunk_rows, step_rows
from sag_core.params import SagParams

pytestmark = pytest.mark.usefixtures("sd1_host")

SAG = {"enabled": True, "scale": 0.75}
PAG = {"pag_enabled": True, "pag_scale": 2.0}
SEG = {"seg_enabled": True, "seg_scale": 1.5, "seg_blur_sigma": 1.0}
METHODS = {"sag": SAG, "pag": PAG, "seg": SEG, "all three": {**SAG, **PAG, **SEG}}
STEPS = 10
SCHEDULE_INDEX = 600  # sigma about 1.9: on the schedule, mid-way


class Job:
    """What the adapters read of a job: its model, CFG scale and seeds."""

    def __init__(self, sd_model, cfg_scale):
        self.sd_model, self.cfg_scale, self.seeds = sd_model, cfg_scale, [1]


class Callbacks:
    """One generation's webui callbacks registered for the duration of a step (as scripts/ registers them)."""

    def __init__(self, generation, forge: bool):
        self.entries = [("cfg_denoiser", generation.begin_step)]
        if not forge:
            self.entries.append(("cfg_denoised", generation.guide))
        self.entries.append(("cfg_after_cfg", lambda params: setattr(params, "x", generation.apply(params.x))))

    def __enter__(self):
        for category, callback in self.entries:
            getattr(script_callbacks, f"on_{category}")(callback)
        return self

    def __exit__(self, *exc):
        for _, callback in self.entries:
            script_callbacks.remove_callbacks_for_function(callback)


def step_inputs(batch: int, size: tuple[int, int] = (32, 32)):
    generator = torch.Generator().manual_seed(3)
    sigma = CFGDenoiserKDiffusion(None).inner_model.sigmas[SCHEDULE_INDEX]
    x = torch.randn(batch, 4, *size, generator=generator) * (sigma ** 2 + 1) ** 0.5
    cond, uncond = conds(batch)
    return x, sigma.repeat(batch), cond, uncond, torch.zeros(batch, 5, 1, 1)


def a1111_step(settings: dict | None, batch: int, cfg_scale: float, size: tuple[int, int] = (32, 32)) -> torch.Tensor:
    x, sigma, cond, uncond, image_cond = step_inputs(batch, size)
    denoiser = CFGDenoiserKDiffusion(SimpleNamespace(sampler_extra_args={"cond": cond}))
    denoiser.total_steps, denoiser.step = STEPS, 3
    if settings is None:
        return denoiser(x, sigma, uncond, cond, cfg_scale, 0.0, image_cond)
    job = Job(shared.sd_model, cfg_scale)
    denoiser.p = job
    generation = GenerationSag(job, SagParams(**settings), Webui(lambda: shared.sd_model,
                                                                 prompt_parser.reconstruct_multicond_batch))
    with Callbacks(generation, forge=False):
        out = denoiser(x, sigma, uncond, cond, cfg_scale, 0.0, image_cond)
    generation.detach()
    assert generation.run.guided_steps == 1
    return out


def forge_model():
    """The job's model as Forge holds it: `forge_objects.unet`, a patcher around a KModel around the U-Net."""
    model = KModel(shared.sd_model.model.diffusion_model, sd_alphas_cumprod())
    return SimpleNamespace(forge_objects=SimpleNamespace(unet=ModelPatcher(model)))


def forge_step(settings: dict | None, batch: int, cfg_scale: float, sd_model=None, mask=None, cfgpp=None,
               size: tuple[int, int] = (32, 32)):
    """One Forge step; the generation (None when off) and the output. At CFG 1 the job has no uncond (processing.py).

    `mask` (1 = keep the initial latent) makes it an inpainting step on a fixed initial latent.
    """
    x, sigma, cond, uncond, image_cond = step_inputs(batch, size)
    sd_model = sd_model or forge_model()
    job = Job(sd_model, cfg_scale)
    denoiser = forge_denoiser.ForgeCFGDenoiser(job, STEPS)
    denoiser.step = 3
    if cfgpp is not None:  # DDIM CFG++ (sd_samplers_timesteps_impl.ddim_cfgpp) reads last_noise_uncond
        denoiser.need_last_noise_uncond = True
        cfgpp.append(denoiser)
    if mask is not None:
        denoiser.mask, denoiser.nmask = mask, 1 - mask
        denoiser.init_latent = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    uncond = None if cfg_scale == 1 else uncond
    if settings is None:
        return None, denoiser(x, sigma, uncond, cond, cfg_scale, 0.0, image_cond)
    generation = ForgeGeneration(job, SagParams(**settings), Forge(sampling_function.calc_cond_uncond_batch))
    generation.patch_job(job)  # process_before_every_sampling
    try:
        with Callbacks(generation, forge=True):
            out = denoiser(x, sigma, uncond, cond, cfg_scale, 0.0, image_cond)
    finally:
        generation.end()  # postprocess, or the sampling guard on an exception
    return generation, out


@pytest.mark.parametrize("cfg_scale", [5.0, 1.0])
@pytest.mark.parametrize("method", METHODS)
def test_forge_guidance_equals_a1111s_on_the_same_step(method, cfg_scale):
    settings = METHODS[method]
    a1111 = a1111_step(settings, 2, cfg_scale)
    generation, forge = forge_step(settings, 2, cfg_scale)
    assert generation.run.guided_steps == 1
    assert forge.shape == a1111.shape == (2, 4, 32, 32)
    plain = a1111_step(None, 2, cfg_scale)
    assert (a1111 - plain).abs().max() > 1e-2  # the methods act
    assert torch.allclose(forge, a1111, atol=1e-5, rtol=0)


def test_forge_unguided_step_equals_a1111s():
    assert torch.allclose(forge_step(None, 2, 5.0)[1], a1111_step(None, 2, 5.0), atol=1e-5, rtol=0)


def test_chunked_batches_give_the_same_guidance(monkeypatch):
    whole = forge_step(METHODS["all three"], 2, 5.0)[1]
    monkeypatch.setattr(sampling_function, "MAX_CHUNKS", 1)  # Forge's free-memory check allowing one chunk a call
    assert torch.allclose(forge_step(METHODS["all three"], 2, 5.0)[1], whole, atol=1e-5, rtol=0)


def test_the_shared_patcher_is_left_as_it_was():
    sd_model = forge_model()
    shared_patcher = sd_model.forge_objects.unet
    before = dict(shared_patcher.model_options)
    forge_step(METHODS["all three"], 2, 5.0, sd_model=sd_model)
    assert sd_model.forge_objects.unet is shared_patcher
    assert shared_patcher.model_options == before == {"transformer_options": {}}
    unet = shared_patcher.model.diffusion_model
    assert not [name for name, module in unet.named_modules() if module._forward_pre_hooks or module._forward_hooks]


@pytest.mark.parametrize("settings, disabled", [(SAG, True), (PAG, False), ({**SAG, **PAG}, True)])
def test_cfg1_shortcut_is_disabled_only_for_a_method_reading_the_uncond_rows(settings, disabled):
    generation = ForgeGeneration(Job(None, 5.0), SagParams(**settings), Forge(sampling_function.calc_cond_uncond_batch))
    patched = generation.patch(forge_model().forge_objects.unet)
    assert patched.model_options.get("disable_cfg1_optimization", False) is disabled
    assert len(patched.model_options["sampler_post_cfg_function"]) == 1


def test_sag_at_cfg1_guides_the_prompt_rows_with_the_shortcut_on():
    generation = ForgeGeneration(Job(None, 1.0), SagParams(**SAG), Forge(sampling_function.calc_cond_uncond_batch))
    assert "disable_cfg1_optimization" not in generation.patch(forge_model().forge_objects.unet).model_options


@pytest.mark.parametrize("method, extra_calls", [("sag", 1), ("pag", 1), ("seg", 1), ("all three", 2)])
def test_pag_and_seg_share_one_extra_unet_call_and_sag_takes_its_own(method, extra_calls):
    unet = shared.sd_model.model.diffusion_model
    calls = []
    handle = unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        forge_step(METHODS[method], 2, 5.0)
    finally:
        handle.remove()
    assert calls[0] == 4  # the host's step: uncond and prompt chunks of 2 images in one call
    assert len(calls) == 1 + extra_calls
    if method == "all three":
        assert sorted(calls[1:]) == [2, 4]  # SAG's 2 degraded rows; PAG's and SEG's 2 prompt rows each


def test_chunk_rows_place_the_uncond_chunk_after_the_prompt_rows():
    assert step_rows("prompt", 2) == [0, 1] and step_rows("uncond", 2) == [2, 3]
    assert chunk_rows([1, 0], 4) == [2, 3, 0, 1]
    assert chunk_rows([0, 0, 1], 6) == [0, 1, 0, 1, 2, 3]  # two AND parts on the prompt rows
    assert chunk_rows([1, 0], 3) is None and chunk_rows([2], 2) is None


def test_inpainting_keeps_the_initial_latent_outside_the_mask_and_guides_inside():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :, :16] = 1  # keep the left half
    generation, on = forge_step(METHODS["all three"], 2, 5.0, mask=mask)
    _, off = forge_step(None, 2, 5.0, mask=mask)
    init = torch.randn(on.shape, generator=torch.Generator().manual_seed(5))
    assert torch.equal(on[..., :16], init[..., :16]) and torch.equal(off[..., :16], init[..., :16])
    assert (on[..., 16:] - off[..., 16:]).abs().max() > 1e-2


def test_each_sampling_pass_patches_afresh_and_the_end_restores_the_models_own_patcher():
    sd_model = forge_model()
    own = sd_model.forge_objects.unet
    job = Job(sd_model, 5.0)
    generation = ForgeGeneration(job, SagParams(**SAG), Forge(sampling_function.calc_cond_uncond_batch))
    generation.patch_job(job)
    first = sd_model.forge_objects.unet
    sd_model.forge_objects = SimpleNamespace(unet=own)  # hires fix: processing.py resets forge_objects
    generation.patch_job(job)
    assert sd_model.forge_objects.unet is not first and sd_model.forge_objects.unet is not own
    assert len(sd_model.forge_objects.unet.model_options["sampler_post_cfg_function"]) == 1
    generation.end()
    assert sd_model.forge_objects.unet is own and "sampler_post_cfg_function" not in own.model_options


def test_under_ddim_cfgpp_the_term_joins_the_uncond_noise_as_it_joins_the_result():
    on_denoisers, off_denoisers = [], []
    _, on = forge_step(SAG, 2, 5.0, cfgpp=on_denoisers)
    _, off = forge_step(None, 2, 5.0, cfgpp=off_denoisers)
    sigma = step_inputs(2)[1].view(-1, 1, 1, 1)
    moved = on_denoisers[0].last_noise_uncond - off_denoisers[0].last_noise_uncond
    assert (on - off).abs().max() > 1e-2
    assert torch.allclose(moved, -(on - off) / sigma, atol=1e-5, rtol=0)


def test_a_size_not_divisible_by_64_is_guided_as_on_a1111():
    size = (33, 25)  # 264 x 200 pixels
    a1111 = a1111_step(METHODS["all three"], 2, 5.0, size)
    generation, forge = forge_step(METHODS["all three"], 2, 5.0, size=size)
    assert generation.run.guided_steps == 1 and forge.shape == (2, 4, 33, 25)
    assert torch.allclose(forge, a1111, atol=1e-5, rtol=0)


def projections_only(block):
    """The block's forward as Forge runs it under an attn1_replace patch (backend/nn/unet.py _forward):
    attn1's projections called one by one, never attn1's own forward."""
    def _forward(x, context=None):
        attention = block.attn1
        n = block.norm1(x)
        q, k, v = (rearrange(f(n), "b n (h d) -> b h n d", h=attention.heads)
                   for f in (attention.to_q, attention.to_k, attention.to_v))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")
        x = attention.to_out(out) + x
        x = block.attn2(block.norm2(x), context=context) + x
        return block.ff(block.norm3(x)) + x
    return _forward


@pytest.mark.parametrize("method", ["sag", "pag", "seg"])
def test_a_patch_that_bypasses_the_attentions_forward_leaves_the_step_unguided_and_counted(method, monkeypatch):
    block = shared.sd_model.model.diffusion_model.middle_block[1].transformer_blocks[0]
    monkeypatch.setattr(block, "_forward", projections_only(block))  # Forge's built-in SAG replaces attn1 so
    generation, on = forge_step(METHODS[method], 2, 5.0)
    _, off = forge_step(None, 2, 5.0)
    assert torch.equal(on, off)
    assert generation.run.guided_steps == 0
    assert generation.run.skipped_steps + generation.run.failed_steps == 1
    if generation.run.failed_steps:
        assert "did not run its own forward" in generation.run.first_failure
