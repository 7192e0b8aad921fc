"""A nested job the way ADetailer runs one (Bing-su/adetailer 36189cb, scripts/!adetailer.py).

`postprocess_image` of the outer job, for each of its images:
- at `batch_index` 0, every always-on script's `postprocess` on `copy(p)` with an empty Processed
  (ADetailer's `need_call_postprocess`, so that other extensions unhook before the inner job);
- an inpainting img2img job on the image through `process_images`, with `copy(p.scripts)` whose
  always-on list keeps only the scripts whose file name (stem) is in `script_names`, and a copy of
  `p.script_args` (`script_filter`, `script_args_copy`, `get_i2i_p`); batch 1, its own seed, a copy
  of the outer `extra_generation_params`, marked `_ad_inner` so the detailer skips it;
- the inner job's first image replaces the outer image (`pp.image`);
- at the last `batch_index`, `before_process` and `process` on `copy(p)` (`need_call_process`, so
  that other extensions hook again for the next batch).
`rearm=False` leaves out the two calls on `copy(p)`, as simpler nested-job extensions do.
What ADetailer detects is replaced by a fixed box in the middle of the picture.
"""

from copy import copy
from pathlib import Path

import torch

from modules import processing, scripts


def copy_extra_params(extra: dict) -> dict:
    return {key: value for key, value in extra.items() if not callable(value)}


def script_filter(p, script_names: set):
    """A copy of the job's script runner keeping the named always-on scripts, and a copy of its args."""
    runner = copy(p.scripts)
    runner.alwayson_scripts = [script for script in runner.alwayson_scripts
                               if Path(script.filename or "").stem in script_names]
    return runner, type(p.script_args)(copy(arg) for arg in p.script_args)


def middle_box_mask(latent: torch.Tensor) -> torch.Tensor:
    """1 where the inner job keeps the picture (everything but the middle half), as `p.mask` is."""
    mask = torch.ones_like(latent[:, :1])
    h, w = latent.shape[-2:]
    mask[..., h // 4:h - h // 4, w // 4:w - w // 4] = 0.0
    return mask


class DetailerScript(scripts.Script):
    def __init__(self, conds, script_names=(), rearm=True, steps=6, s_min_uncond=0.0):
        self.conds = conds
        self.script_names = set(script_names)
        self.rearm = rearm
        self.steps = steps
        self.s_min_uncond = s_min_uncond
        self.inner_jobs: list = []

    def title(self):
        return "Detailer (nested-job stand-in)"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def inner_job(self, p, image, index: int) -> processing.StableDiffusionProcessing:
        """The inpainting img2img job for one outer image (get_i2i_p)."""
        latent = processing.encode_image(image)
        mask = middle_box_mask(latent)
        cond, uncond = self.conds()
        inner = processing.StableDiffusionProcessing(
            cond=cond, uncond=uncond, sampler_name=p.sampler_name, steps=self.steps, cfg_scale=p.cfg_scale,
            width=latent.shape[-1] * 8, height=latent.shape[-2] * 8, batch_size=1, n_iter=1,
            seed=p.seed + 100 + index, denoising_strength=0.5, init_latent=latent, mask=mask, nmask=1.0 - mask,
            s_min_uncond=self.s_min_uncond, extra_generation_params=copy_extra_params(p.extra_generation_params))
        inner.scripts, inner.script_args = script_filter(p, self.script_names)
        inner._ad_inner = True
        return inner

    def postprocess_image(self, p, pp, *args):
        if getattr(p, "_ad_inner", False):
            return
        if self.rearm and p.batch_index == 0:
            p.scripts.postprocess(copy(p), processing.Processed([], [], None))
        inner = self.inner_job(p, pp.image, p.iteration * p.batch_size + p.batch_index)
        processed = processing.process_images(inner)
        self.inner_jobs.append((inner, processed))
        pp.image = processed.images[0]
        if self.rearm and p.batch_index == p.batch_size - 1:
            again = copy(p)
            p.scripts.before_process(again)
            p.scripts.process(again)
