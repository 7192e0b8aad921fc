"""Self-Attention Guidance for the AUTOMATIC1111 webui: UI, CFG callbacks, infotext.

The maths live in `sag_core`; this file only adapts the webui's script and CFG-denoiser protocol
(modules/scripts.py and modules/sd_samplers_cfg_denoiser.py, webui 1.6 to 1.10) to it.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any, Callable

import gradio as gr

from modules import script_callbacks, scripts, shared
from modules.ui_components import InputAccordion
from sag_core.attention_hook import find_middle_self_attention
from sag_core.params import FIELDS, FIELDS_BY_ATTR, OVERRIDES_ATTR, SagParamError, SagParams
from sag_core.run import SagRun
from sag_core.spaces import EpsSpace, X0Space

TITLE = "Self-Attention Guidance"
RUN_ATTR = "_sag_generation"
SKIPPED_KEY = "SAG skipped steps"
INFOTEXT_KEYS = tuple(f.infotext for f in FIELDS) + (SKIPPED_KEY,)
FORGE_KEYS = {"sag_scale": "scale", "sag_blur_sigma": "blur_sigma", "sag_threshold": "threshold"}
_GUARD_ORIGINAL = "__sag_original_sample__"


def current_unet() -> Any:
    return shared.sd_model.model.diffusion_model


def rows_of(cond: Any) -> int:
    """Batch rows of a conditioning: a tensor, or SDXL's dict (DictWithShape) of tensors."""
    if hasattr(cond, "shape"):
        return cond.shape[0]
    return next(iter(cond.values())).shape[0]


def condition_dict(conditioning_key: str, text: Any, image_cond: Any) -> dict:
    """The `cond=` dict the webui's CFGDenoiser builds for the model (make_condition_dict, v1.10.1)."""
    if conditioning_key == "crossattn-adm":
        return {"c_crossattn": [text], "c_adm": image_cond}
    if isinstance(text, dict):
        return {**text, "c_concat": [image_cond]}
    return {"c_crossattn": [text], "c_concat": [image_cond]}


class GenerationSag:
    """Binds one SagRun to one generation: finds its denoiser, output space and U-Net each step."""

    def __init__(self, p: Any, params: SagParams) -> None:
        self.run = SagRun(params)
        self._p = weakref.ref(p)
        self._denoiser: Any = None

    def _find_denoiser(self, params: Any) -> Any:
        denoiser = getattr(params, "denoiser", None)  # webui 1.8+
        if denoiser is None:
            denoiser = self._p().sampler.model_wrap_cfg
        return denoiser

    def begin_step(self, params: Any) -> None:
        self._denoiser = denoiser = self._find_denoiser(params)
        total = getattr(denoiser, "total_steps", None)
        progress = denoiser.step / total if total else 0.0
        guided = self.run.begin_step(params.x, params.sigma, params.image_cond, params.text_uncond,
                                     rows_of(params.text_uncond), progress)
        if guided:
            try:
                self.run.attach(current_unet())
            except LookupError:
                self.run.detach()

    def guide(self, params: Any) -> None:
        alphas = getattr(self._denoiser, "alphas", None)  # only CFGDenoiserTimesteps predicts eps
        space = X0Space() if alphas is None else EpsSpace(alphas)
        inner_model = params.inner_model
        key = shared.sd_model.model.conditioning_key

        def predict(x, sigma, image_cond, uncond):
            return inner_model(x, sigma, cond=condition_dict(key, uncond, image_cond))

        self.run.guide(params.x, space, predict)

    def apply(self, denoised: Any) -> Any:
        keep = self._denoiser.nmask if getattr(self._denoiser, "mask", None) is not None else None
        return self.run.apply(denoised, keep)


class _ActiveGeneration:
    """A weak pointer from the once-registered callbacks to the generation in progress.

    The generation itself belongs to `p`, so nothing here outlives the job that set it.
    """

    def __init__(self) -> None:
        self._ref: Callable[[], GenerationSag | None] = lambda: None

    def set(self, generation: GenerationSag | None) -> None:
        self._ref = weakref.ref(generation) if generation is not None else (lambda: None)

    def get(self) -> GenerationSag | None:
        return self._ref()


active = _ActiveGeneration()


def on_cfg_denoiser(params: Any) -> None:
    generation = active.get()
    if generation is not None:
        generation.begin_step(params)


def on_cfg_denoised(params: Any) -> None:
    generation = active.get()
    if generation is not None:
        generation.guide(params)


def on_cfg_after_cfg(params: Any) -> None:
    generation = active.get()
    if generation is not None:
        params.x = generation.apply(params.x)


def on_script_unloaded() -> None:
    generation = active.get()
    if generation is not None:
        generation.run.detach()
    active.set(None)


def on_infotext_pasted(infotext: str, params: dict) -> None:
    """Read Forge's sag_* keys too, fill defaults for absent SAG keys, and drop SAG if a value is bad."""
    if FIELDS_BY_ATTR["scale"].infotext not in params and "sag_scale" in params:
        if str(params.get("sag_enabled", "True")) != "False":
            for forge_key, attr in FORGE_KEYS.items():
                if forge_key in params:
                    params[FIELDS_BY_ATTR[attr].infotext] = params[forge_key]
    if FIELDS_BY_ATTR["scale"].infotext not in params:
        return
    try:
        values = SagParams.from_infotext(params)
    except SagParamError as error:
        print(f"{error}. The pasted infotext leaves Self-Attention Guidance off.", file=sys.stderr)
        for key in INFOTEXT_KEYS:
            params.pop(key, None)
        return
    for field in FIELDS[1:]:
        params[field.infotext] = getattr(values, field.attr)


def without_spare_slot(args: tuple) -> tuple:
    """The script's values without its last, spare input when that is empty (None, as the UI sends it).

    The webui's API drops positional values beyond a script's inputs without a word (Api.init_script_args);
    a filled spare input is kept, so that SagParams.from_args sees the list is too long and refuses it.
    """
    if len(args) == len(FIELDS) + 1 and args[-1] is None:
        return tuple(args[:-1])
    return tuple(args)


def guard_sampling(p: Any, *, on_exit: Callable[[], None] | None = None,
                   error: Exception | None = None) -> None:
    """Wrap this job's `p.sample`: raise `error` instead of sampling, and always call `on_exit` after.

    Exceptions from script methods are swallowed by the webui, so a refused setting fails the job
    here, where the UI and the API report it; and no webui hook runs after an exception, so the
    attention hook is removed here, in a finally.
    """
    unguard_sampling(p)
    original = p.sample

    def sample(*args, **kwargs):
        if error is not None:
            raise error
        try:
            return original(*args, **kwargs)
        finally:
            if on_exit is not None:
                on_exit()

    setattr(sample, _GUARD_ORIGINAL, original)
    p.sample = sample


def unguard_sampling(p: Any) -> None:
    if hasattr(vars(p).get("sample"), _GUARD_ORIGINAL):
        del p.sample


def end_generation(p: Any) -> None:
    """Undo everything a previous job of ours may have left on `p` or the model."""
    generation = active.get()
    if generation is not None:
        generation.run.detach()
    active.set(None)
    own = vars(p).pop(RUN_ATTR, None)
    if own is not None:
        own.run.detach()
    unguard_sampling(p)


class SelfAttentionGuidanceScript(scripts.Script):
    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list:
        enabled_field, *slider_fields = FIELDS
        with InputAccordion(enabled_field.default, label=enabled_field.label,
                            elem_id=self.elem_id(enabled_field.attr)) as enabled:
            with gr.Row():
                sliders = [self._slider(f) for f in slider_fields[:3]]
            with gr.Row():
                sliders += [self._slider(f) for f in slider_fields[3:]]
        scale_key = FIELDS_BY_ATTR["scale"].infotext
        self.infotext_fields = [(enabled, lambda d: scale_key in d)]
        self.infotext_fields += [(slider, f.infotext) for slider, f in zip(sliders, slider_fields)]
        self.paste_field_names = [f.infotext for f in slider_fields]
        return [enabled, *sliders, gr.State(value=None)]

    def _slider(self, field) -> gr.Slider:
        return gr.Slider(label=field.label, minimum=field.minimum, maximum=field.maximum, step=field.step,
                         value=field.default, elem_id=self.elem_id(field.attr))

    def process(self, p: Any, *args: Any) -> None:
        end_generation(p)
        for key in INFOTEXT_KEYS:
            p.extra_generation_params.pop(key, None)
        try:
            params = SagParams.from_args(without_spare_slot(args)).with_overrides(getattr(p, OVERRIDES_ATTR, None))
            if params.active:
                find_middle_self_attention(current_unet())
        except (SagParamError, LookupError) as error:
            guard_sampling(p, error=RuntimeError(f"Self-Attention Guidance: {error}")
                           if isinstance(error, LookupError) else error)
            return
        if not params.enabled:
            return
        generation = GenerationSag(p, params)
        setattr(p, RUN_ATTR, generation)
        active.set(generation)
        p.extra_generation_params.update(params.infotext())
        guard_sampling(p, on_exit=generation.run.detach)

    def process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        generation = vars(p).get(RUN_ATTR)
        if generation is not None:
            generation.run.guided_steps = generation.run.skipped_steps = 0

    def postprocess_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        generation = vars(p).get(RUN_ATTR)
        if generation is not None and generation.run.skipped_steps:
            p.extra_generation_params[SKIPPED_KEY] = generation.run.skipped_steps
        else:
            p.extra_generation_params.pop(SKIPPED_KEY, None)

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        end_generation(p)


script_callbacks.on_cfg_denoiser(on_cfg_denoiser)
script_callbacks.on_cfg_denoised(on_cfg_denoised)
script_callbacks.on_cfg_after_cfg(on_cfg_after_cfg)
script_callbacks.on_script_unloaded(on_script_unloaded)
script_callbacks.on_infotext_pasted(on_infotext_pasted)
