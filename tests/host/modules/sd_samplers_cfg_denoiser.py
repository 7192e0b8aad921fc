"""Follows CFGDenoiser in modules/sd_samplers_cfg_denoiser.py (v1.10.1), step for step.

Left out: the refiner switch, instruct-pix2pix (edit) models and the live preview. Everything SAG
relies on is kept: the batch layout (cond rows repeated per AND sub-prompt, then the B uncond rows),
the three callbacks and what they read back, skip-uncond (skip early CFG, NGMS), the cond/uncond
padding applied *after* the cfg_denoiser callback (`opts.pad_cond_uncond` with the empty prompt's
chunks, `opts.pad_cond_uncond_v0` repeating uncond's last vector or truncating it), one batched call or
B-row slices (`opts.batch_cond_uncond`), a separate uncond call when cond and uncond lengths differ,
the fake uncond rows appended when uncond is skipped, DDIM CFG++'s `cond_scale_miltiplier` and
`last_noise_uncond` (copied after the cfg_denoised callback), and the inpainting blend before or
after the model.
"""

import torch

from modules import prompt_parser, sd_samplers_common, shared
from modules.script_callbacks import (AfterCFGCallbackParams, CFGDenoisedParams, CFGDenoiserParams,
                                      cfg_after_cfg_callback, cfg_denoised_callback, cfg_denoiser_callback)


def catenate_conds(conds):
    if not isinstance(conds[0], dict):
        return torch.cat(conds)
    return {key: torch.cat([c[key] for c in conds]) for key in conds[0]}


def pad_cond(tensor, repeats, empty):
    """`repeats` chunks of the empty prompt appended to the tokens (to SDXL's 'crossattn' in place)."""
    if not isinstance(tensor, dict):
        return torch.cat([tensor, empty.repeat((tensor.shape[0], repeats, 1))], dim=1)
    tensor["crossattn"] = pad_cond(tensor["crossattn"], repeats, empty)
    return tensor


def pad_cond_uncond(cond, uncond):
    """CFGDenoiser.pad_cond_uncond: the shorter side padded with whole empty-prompt chunks."""
    empty = shared.sd_model.cond_stage_model_empty_prompt
    repeats = (cond.shape[1] - uncond.shape[1]) // empty.shape[1]
    if repeats < 0:
        cond = pad_cond(cond, -repeats, empty)
    elif repeats > 0:
        uncond = pad_cond(uncond, repeats, empty)
    return cond, uncond


def pad_cond_uncond_v0(cond, uncond):
    """CFGDenoiser.pad_cond_uncond_v0: uncond's last vector repeated up to cond's length, or uncond cut to it."""
    vectors = uncond["crossattn"] if isinstance(uncond, dict) else uncond
    if vectors.shape[1] < cond.shape[1]:
        vectors = torch.hstack([vectors, vectors[:, -1:].repeat([1, cond.shape[1] - vectors.shape[1], 1])])
    elif vectors.shape[1] > cond.shape[1]:
        vectors = vectors[:, :cond.shape[1]]
    if isinstance(uncond, dict):
        uncond["crossattn"] = vectors
        return cond, uncond
    return cond, vectors


def subscript_cond(cond, a, b):
    if not isinstance(cond, dict):
        return cond[a:b]
    return {key: value[a:b] for key, value in cond.items()}


class CFGDenoiser(torch.nn.Module):
    def __init__(self, sampler):
        super().__init__()
        self.model_wrap = None
        self.mask = None
        self.nmask = None
        self.init_latent = None
        self.steps = None
        self.total_steps = None
        self.step = 0
        self.image_cfg_scale = None
        self.sampler = sampler
        self.p = None
        self.mask_before_denoising = False
        self.cond_scale_miltiplier = 1.0
        self.need_last_noise_uncond = False
        self.last_noise_uncond = None

    @property
    def inner_model(self):
        raise NotImplementedError()

    def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
        denoised_uncond = x_out[-uncond.shape[0]:]
        denoised = torch.clone(denoised_uncond)
        for i, conds in enumerate(conds_list):
            for cond_index, weight in conds:
                denoised[i] += (x_out[cond_index] - denoised_uncond[i]) * (weight * cond_scale)
        return denoised

    def get_pred_x0(self, x_in, x_out, sigma):
        return x_out

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        state, opts = shared.state, shared.opts
        if state.interrupted or state.skipped:
            raise sd_samplers_common.InterruptedException

        conds_list, tensor = prompt_parser.reconstruct_multicond_batch(cond, self.step)
        uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step)

        def apply_blend(latent):
            return latent * self.nmask + self.init_latent * self.mask

        if self.mask_before_denoising and self.mask is not None:
            x = apply_blend(x)

        batch_size = len(conds_list)
        repeats = [len(conds_list[i]) for i in range(batch_size)]

        if shared.sd_model.model.conditioning_key == "crossattn-adm":
            image_uncond = torch.zeros_like(image_cond)
            def make_condition_dict(c_crossattn, c_adm):
                return {"c_crossattn": [c_crossattn], "c_adm": c_adm}
        else:
            image_uncond = image_cond
            if isinstance(uncond, dict):
                def make_condition_dict(c_crossattn, c_concat):
                    return {**c_crossattn, "c_concat": [c_concat]}
            else:
                def make_condition_dict(c_crossattn, c_concat):
                    return {"c_crossattn": [c_crossattn], "c_concat": [c_concat]}

        def per_sub_prompt(values):
            return [torch.stack([values[i] for _ in range(n)]) for i, n in enumerate(repeats)]

        x_in = torch.cat(per_sub_prompt(x) + [x])
        sigma_in = torch.cat(per_sub_prompt(sigma) + [sigma])
        image_cond_in = torch.cat(per_sub_prompt(image_cond) + [image_uncond])

        params = CFGDenoiserParams(x_in, image_cond_in, sigma_in, state.sampling_step, state.sampling_steps,
                                   tensor, uncond, self)
        cfg_denoiser_callback(params)
        x_in, image_cond_in, sigma_in = params.x, params.image_cond, params.sigma
        tensor, uncond = params.text_cond, params.text_uncond

        skip_uncond = False
        if opts.skip_early_cond != 0. and self.step / self.total_steps <= opts.skip_early_cond:
            skip_uncond = True
        elif (self.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond:
            skip_uncond = True
        if skip_uncond:
            x_in = x_in[:-batch_size]
            sigma_in = sigma_in[:-batch_size]

        if opts.pad_cond_uncond_v0 and tensor.shape[1] != uncond.shape[1]:
            tensor, uncond = pad_cond_uncond_v0(tensor, uncond)
        elif opts.pad_cond_uncond and tensor.shape[1] != uncond.shape[1]:
            tensor, uncond = pad_cond_uncond(tensor, uncond)

        if tensor.shape[1] == uncond.shape[1] or skip_uncond:
            cond_in = tensor if skip_uncond else catenate_conds([tensor, uncond])
            if opts.batch_cond_uncond:
                x_out = self.inner_model(x_in, sigma_in, cond=make_condition_dict(cond_in, image_cond_in))
            else:
                x_out = torch.zeros_like(x_in)
                for a in range(0, x_out.shape[0], batch_size):
                    b = a + batch_size
                    x_out[a:b] = self.inner_model(x_in[a:b], sigma_in[a:b], cond=make_condition_dict(
                        subscript_cond(cond_in, a, b), image_cond_in[a:b]))
        else:
            x_out = torch.zeros_like(x_in)
            chunk = batch_size * 2 if opts.batch_cond_uncond else batch_size
            for a in range(0, tensor.shape[0], chunk):
                b = min(a + chunk, tensor.shape[0])
                x_out[a:b] = self.inner_model(x_in[a:b], sigma_in[a:b], cond=make_condition_dict(
                    subscript_cond(tensor, a, b), image_cond_in[a:b]))
            rows = uncond.shape[0]
            x_out[-rows:] = self.inner_model(x_in[-rows:], sigma_in[-rows:],
                                             cond=make_condition_dict(uncond, image_cond_in[-rows:]))

        first_rows = [entry[0][0] for entry in conds_list]
        if skip_uncond:
            x_out = torch.cat([x_out] + [x_out[i:i + 1] for i in first_rows])

        cfg_denoised_callback(CFGDenoisedParams(x_out, state.sampling_step, state.sampling_steps, self.inner_model))

        if self.need_last_noise_uncond:
            self.last_noise_uncond = torch.clone(x_out[-uncond.shape[0]:])

        scale = 1.0 if skip_uncond else cond_scale * self.cond_scale_miltiplier
        denoised = self.combine_denoised(x_out, conds_list, uncond, scale)

        if not self.mask_before_denoising and self.mask is not None:
            denoised = apply_blend(denoised)

        self.sampler.last_latent = self.get_pred_x0(torch.cat([x_in[i:i + 1] for i in first_rows]),
                                                    torch.cat([x_out[i:i + 1] for i in first_rows]), sigma)

        after = AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
        cfg_after_cfg_callback(after)
        denoised = after.x

        self.step += 1
        return denoised
