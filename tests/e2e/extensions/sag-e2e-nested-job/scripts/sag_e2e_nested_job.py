"""Test-only webui extension for sd-webui-sag's end-to-end suite: a nested job as ADetailer runs one.

Never install it for real use. It does nothing unless switched on through its script args (API:
`"alwayson_scripts": {"sag e2e nested job": {"args": [true, include_sag, rearm]}}`).
Follows Bing-su/adetailer 36189cb, scripts/!adetailer.py (`script_filter`, `get_i2i_p`,
`_postprocess_image_inner`, `postprocess_image`). In the outer job's `postprocess_image`, per image:
- with `rearm`, at batch_index 0: every always-on script's `postprocess` on `copy(p)`;
- an inpainting img2img job through `process_images`, with `copy(p.scripts)` keeping only the
  always-on scripts named in its filter (SAG's file only if `include_sag`) and a copy of
  `p.script_args`; its picture is a fixed one, not the outer image, so that the same nested job
  can be compared across outer settings; the outer image is left as it is;
- with `rearm`, at the last batch_index: `before_process` and `process` on `copy(p)`.
The inner job is reported in the outer image's infotext as `SAG e2e inner: <sha1 of the inner
image> hooked <k>/<n>`: in k of the inner job's n denoiser steps a forward pre-hook sat on the
U-Net's middle self-attention. `GET /sag-e2e/hooks` answers how many sit there now.
"""

import hashlib
from copy import copy
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from modules import script_callbacks, scripts, shared
from modules.processing import Processed, StableDiffusionProcessingImg2Img, process_images

TITLE = "SAG e2e nested job"
INFOTEXT_KEY = "SAG e2e inner"
SAG_FILE_STEM = "self_attention_guidance"


def middle_modules():
    """The U-Net, its middle spatial transformer and that transformer's first self-attention."""
    unet = shared.sd_model.model.diffusion_model
    for block in unet.middle_block:
        blocks = getattr(block, "transformer_blocks", None)
        if blocks:
            return unet, block, blocks[0].attn1
    raise LookupError("no middle self-attention")


def hook_counts() -> dict:
    unet, transformer, attention = middle_modules()
    return {"unet": len(unet._forward_pre_hooks), "middle_transformer": len(transformer._forward_pre_hooks),
            "middle_attn1": len(attention._forward_pre_hooks)}


class InnerWatch:
    """Counts the inner job's denoiser steps, and those with a hook on the middle self-attention."""

    def __init__(self):
        self.job = None
        self.steps = self.hooked = 0

    def start(self, job):
        self.job, self.steps, self.hooked = job, 0, 0

    def stop(self):
        self.job = None

    def on_cfg_denoised(self, params):
        if self.job is None:
            return
        self.steps += 1
        self.hooked += bool(middle_modules()[2]._forward_pre_hooks)


watch = InnerWatch()


def fixed_picture(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(20261123)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 40, size=(height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(ramp + noise, 0, 255).astype(np.uint8))


def middle_box(width: int, height: int) -> Image.Image:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4:height - height // 4, width // 4:width - width // 4] = 255
    return Image.fromarray(mask, mode="L")


def script_filter(p, names: set):
    runner = copy(p.scripts)
    runner.alwayson_scripts = [s for s in runner.alwayson_scripts if Path(s.filename).stem in names]
    args = []
    for arg in p.script_args:
        try:
            args.append(copy(arg))
        except TypeError:
            args.append(arg)
    return runner, type(p.script_args)(args)


class SagE2eNestedJob(scripts.Script):
    def title(self):
        return TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion(TITLE, open=False):
            enabled = gr.Checkbox(label="Run a nested job", value=False)
            include_sag = gr.Checkbox(label="Nested job includes SAG", value=False)
            rearm = gr.Checkbox(label="Call postprocess/process on copy(p) as ADetailer does", value=True)
        return [enabled, include_sag, rearm]

    def inner_job(self, p, index: int, include_sag: bool):
        extra = {} if not hasattr(p, "scheduler") else {"scheduler": p.scheduler}
        inner = StableDiffusionProcessingImg2Img(
            init_images=[fixed_picture(p.width, p.height)], resize_mode=0, denoising_strength=0.5,
            mask=middle_box(p.width, p.height), mask_blur=0, inpainting_fill=1, inpaint_full_res=False,
            inpainting_mask_invert=0, sd_model=p.sd_model, outpath_samples=p.outpath_samples,
            outpath_grids=p.outpath_grids, prompt=p.prompt, negative_prompt=p.negative_prompt,
            seed=p.all_seeds[index] + 100, sampler_name=p.sampler_name, batch_size=1, n_iter=1, steps=p.steps,
            cfg_scale=p.cfg_scale, width=p.width, height=p.height, do_not_save_samples=True, do_not_save_grid=True,
            extra_generation_params={k: v for k, v in p.extra_generation_params.items() if not callable(v)},
            **extra)
        inner.cached_c = [None, None]
        inner.cached_uc = [None, None]
        inner.scripts, inner.script_args = script_filter(p, {SAG_FILE_STEM} if include_sag else set())
        inner._sag_e2e_inner = True
        return inner

    def postprocess_image(self, p, pp, enabled=False, include_sag=False, rearm=True, *args):
        if not enabled or getattr(p, "_sag_e2e_inner", False):
            return
        if rearm and p.batch_index == 0:
            p.scripts.postprocess(copy(p), Processed(p, [], p.seed, ""))
        index = p.iteration * p.batch_size + p.batch_index
        inner = self.inner_job(p, index, include_sag)
        watch.start(inner)
        try:
            processed = process_images(inner)
        finally:
            watch.stop()
            inner.close()
        digest = hashlib.sha1(np.asarray(processed.images[0].convert("RGB")).tobytes()).hexdigest()[:16]
        p.extra_generation_params[INFOTEXT_KEY] = f"{digest} hooked {watch.hooked}/{watch.steps}"
        if rearm and p.batch_index == p.batch_size - 1:
            again = copy(p)
            p.scripts.before_process(again)
            p.scripts.process(again)


def add_route(demo, app):
    app.add_api_route("/sag-e2e/hooks", hook_counts, methods=["GET"])


script_callbacks.on_cfg_denoised(watch.on_cfg_denoised)
script_callbacks.on_app_started(add_route)
