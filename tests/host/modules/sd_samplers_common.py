"""Follows modules/sd_samplers_common.py (v1.10.1): the Sampler lifecycle around one sampling pass."""

from modules import shared


class InterruptedException(BaseException):
    pass


class Sampler:
    second_order = False

    def __init__(self, funcname):
        self.funcname = funcname
        self.model_wrap_cfg = None
        self.sampler_extra_args = {}
        self.last_latent = None
        self.p = None

    def callback_state(self, d):
        shared.state.sampling_step = d["i"]

    def launch_sampling(self, steps, func):
        self.model_wrap_cfg.steps = steps
        self.model_wrap_cfg.total_steps = steps * 2 if self.second_order else steps
        shared.state.sampling_steps = steps
        shared.state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def initialize(self, p):
        self.p = p
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.mask = getattr(p, "mask", None)
        self.model_wrap_cfg.nmask = getattr(p, "nmask", None)
        self.model_wrap_cfg.step = 0
        self.model_wrap_cfg.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.s_min_uncond = getattr(p, "s_min_uncond", 0.0)
        return {}
