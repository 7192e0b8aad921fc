"""Follows Forge dfdcbab6 modules/sd_samplers_cfg_denoiser.py `CFGDenoiser.forward` and
backend/sampling/sampling_function.py `sampling_function`: the webui's callbacks around the patcher.

The step: the conditionings rebuilt from the sampler's (prompt_parser), the inpainting blend of x
before the model, the webui's `cfg_denoiser` callback with the B rows of x (one per image; A1111
hands it the batch of every row instead), the conditioning entries compiled, `sampling_function_inner`
on the job's U-Net patcher (`p.sd_model.forge_objects.unet`) with its model options, the blend after,
the `cfg_after_cfg` callback. Forge calls no `cfg_denoised` callback.

Left out: the refiner switch, DDIM's classic eps estimation, the hires pass's own CFG scale (`hr_cfg`),
skip-early-CFG and NGMS (they set the scale to 1, which the CFG-1 tests cover), `extra_concat_condition`,
ControlNet's linked list, conditioning modifiers, the live preview. The noise of the inpainting
blend before the model comes from a seeded generator here (Forge draws `randn_like`).
"""

import torch

from backend.sampling.condition import Condition, compile_conditions, compile_weighted_conditions
from backend.sampling.sampling_function import sampling_function_inner
from modules import prompt_parser, sd_samplers_common, shared
from modules.script_callbacks import (AfterCFGCallbackParams, CFGDenoiserParams, cfg_after_cfg_callback,
                                      cfg_denoiser_callback)


class ForgeCFGDenoiser:
    def __init__(self, p, total_steps):
        self.p = p
        self.step = 0
        self.total_steps = total_steps
        self.mask = None
        self.nmask = None
        self.init_latent = None
        self.need_last_noise_uncond = False
        self.last_noise_uncond = None

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        state = shared.state
        if state.interrupted or state.skipped:
            raise sd_samplers_common.InterruptedException

        cond_composition, cond = prompt_parser.reconstruct_multicond_batch(cond, self.step)
        uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step) if uncond is not None else None

        if self.mask is not None:
            noise = torch.randn(self.init_latent.shape, generator=torch.Generator().manual_seed(self.step))
            noisy_initial_latent = self.init_latent + noise * sigma[:, None, None, None]  # noise_scaling, eps
            x = x * self.nmask + noisy_initial_latent * self.mask

        params = CFGDenoiserParams(x, image_cond, sigma, state.sampling_step, state.sampling_steps, cond, uncond, self)
        cfg_denoiser_callback(params)

        denoised, cond_pred, uncond_pred = self.sampling_function(params, cond_scale, cond_composition)

        if self.need_last_noise_uncond:
            self.last_noise_uncond = (x - uncond_pred) / sigma[:, None, None, None]

        if self.mask is not None:
            denoised = denoised * self.nmask + self.init_latent * self.mask

        after = AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
        cfg_after_cfg_callback(after)
        denoised = after.x

        self.step += 1
        return denoised

    __call__ = forward

    def sampling_function(self, params, cond_scale, cond_composition):
        unet_patcher = self.p.sd_model.forge_objects.unet
        x, timestep = params.x, params.sigma
        uncond = compile_conditions(params.text_uncond)
        cond = compile_weighted_conditions(params.text_cond, cond_composition)
        image_cond_in = params.image_cond
        if isinstance(image_cond_in, torch.Tensor) and image_cond_in.shape[0] == x.shape[0] \
                and image_cond_in.shape[2:] == x.shape[2:]:
            for entry in (uncond or []) + cond:
                entry["model_conds"]["c_concat"] = Condition(image_cond_in)
        return sampling_function_inner(unet_patcher.model, x, timestep, uncond, cond, cond_scale,
                                       unet_patcher.model_options, self.p.seeds[0], return_full=True)
