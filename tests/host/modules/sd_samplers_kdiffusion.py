"""Follows modules/sd_samplers_kdiffusion.py (v1.10.1): k-diffusion samplers behind the CFG denoiser.

Sigmas come from the model's own discrete schedule (`get_sigmas`), standing in for the scheduler choice.
"""

from kdiffusion import load_k_diffusion

k_diffusion = load_k_diffusion()

from modules import sd_samplers_cfg_denoiser, sd_samplers_common, shared

SAMPLERS = {
    "Euler a": ("sample_euler_ancestral", False),
    "Euler": ("sample_euler", False),
    "DPM++ 2M": ("sample_dpmpp_2m", False),
    "Heun": ("sample_heun", True),
}


class CFGDenoiserKDiffusion(sd_samplers_cfg_denoiser.CFGDenoiser):
    @property
    def inner_model(self):
        if self.model_wrap is None:
            v = shared.sd_model.parameterization == "v"
            denoiser = k_diffusion.external.CompVisVDenoiser if v else k_diffusion.external.CompVisDenoiser
            self.model_wrap = denoiser(shared.sd_model)
        return self.model_wrap


class KDiffusionSampler(sd_samplers_common.Sampler):
    def __init__(self, name, sd_model):
        funcname, self.second_order = SAMPLERS[name]
        super().__init__(funcname)
        self.func = getattr(k_diffusion.sampling, funcname)
        self.model_wrap_cfg = CFGDenoiserKDiffusion(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def _extra_args(self, p, conditioning, unconditional_conditioning, image_conditioning):
        return {"cond": conditioning, "image_cond": image_conditioning, "uncond": unconditional_conditioning,
                "cond_scale": p.cfg_scale, "s_min_uncond": self.s_min_uncond}

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        sigmas = self.model_wrap.get_sigmas(steps)
        x = x * sigmas[0]
        self.initialize(p)
        self.last_latent = x
        self.sampler_extra_args = self._extra_args(p, conditioning, unconditional_conditioning, image_conditioning)
        return self.launch_sampling(steps, lambda: self.func(
            self.model_wrap_cfg, x, sigmas, extra_args=self.sampler_extra_args,
            disable=True, callback=self.callback_state))

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None,
                       image_conditioning=None):
        steps = steps or p.steps
        t_enc = int(min(p.denoising_strength, 0.999) * steps)
        sigmas = self.model_wrap.get_sigmas(steps)
        sigma_sched = sigmas[steps - t_enc - 1:]
        xi = x + noise * sigma_sched[0]
        self.initialize(p)
        self.model_wrap_cfg.init_latent = x
        self.last_latent = x
        self.sampler_extra_args = self._extra_args(p, conditioning, unconditional_conditioning, image_conditioning)
        return self.launch_sampling(t_enc + 1, lambda: self.func(
            self.model_wrap_cfg, xi, sigma_sched, extra_args=self.sampler_extra_args,
            disable=True, callback=self.callback_state))
