"""Self-Attention Guidance for the AUTOMATIC1111 webui: UI, CFG callbacks, infotext.

The maths live in `sag_core`; this file only adapts the webui's script and CFG-denoiser protocol
(modules/scripts.py and modules/sd_samplers_cfg_denoiser.py, webui 1.6 to 1.10) to it.
"""

from __future__ import annotations

import importlib.util
import sys
import weakref
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from modules import prompt_parser, script_callbacks, scripts, shared, ui_components
from sag_core.conditioning import condition_dict, rows_of, take_rows
from sag_core.infotext import (BRANCH_KEY, FAILED_KEY, FORGE_KEYS, INFOTEXT_KEYS, MARKERS, PROMPT_BRANCH,  # noqa: F401
                               SKIPPED_KEY, read_pasted, write_count, write_settings)
from sag_core.jobs import SamplingJobs, preview_blocker, selectable_script_title, unguard_sampling  # noqa: F401
from sag_core.jobs import guard_sampling as guard_job
from sag_core.layers import attention_layers, find_layer
from sag_core.params import (FIELDS, FIELDS_BY_ATTR, OVERRIDES_ATTR, PAG, SAG, SEG, SWITCH, VALUE_FIELDS,
                             SagParamError, SagParams, shown, without_spare_slot)  # noqa: F401
from sag_core.preview import mask_overlay, pasted_crop_box
from sag_core.run import RUN_OPTIONS_ATTR, RunOptions, SagRun
from sag_core.spaces import EpsSpace, X0Space
from sag_core.version import __version__

TITLE = "Self-Attention Guidance"
RUN_ATTR = "_sag_generation"
HAS_AFTER_COMPOSITE = hasattr(scripts.Script, "postprocess_image_after_composite")  # webui 1.8+


def unsupported_host() -> str | None:
    """Why SAG cannot run in this webui, or None where it can (AUTOMATIC1111 1.6 or newer).

    Each fork is told apart by what only it has (SD.Next: `shared.Backend`; Forge and reForge: the
    `modules_forge` package, reForge's own options), so A1111 is never mistaken for one of them.
    """
    if hasattr(shared, "Backend") or hasattr(shared, "native"):
        return ("SD.Next is not supported: it replaced SAG with Perturbed-Attention Guidance; use its "
                "'Attention guidance' setting under Guidance instead")
    if "modules_forge" in sys.modules or importlib.util.find_spec("modules_forge") is not None:
        shared_options = sys.modules.get("modules.shared_options")
        fork = "reForge" if "reforge_karras_rho" in getattr(shared_options, "options_templates", {}) else "Forge"
        return (f"{fork} is not supported: it has its own SAG; use its built-in "
                "'SelfAttentionGuidance Integrated' script instead")
    if not hasattr(ui_components, "InputAccordion"):
        return "this webui is older than 1.6.0, which SAG needs; update the webui (git pull)"
    return None


UNSUPPORTED = unsupported_host()


def current_unet() -> Any:
    return shared.sd_model.model.diffusion_model


class GenerationSag:
    """Binds one SagRun to one generation: finds its denoiser, output space and U-Net each step."""

    def __init__(self, p: Any, params: SagParams) -> None:
        self.run = SagRun(params, getattr(p, RUN_OPTIONS_ATTR, None) or RunOptions())
        self._p = weakref.ref(p)
        self._denoiser: Any = None
        self.batch_masks: list = []
        self.previews: list[tuple[int, Image.Image]] = []

    @property
    def p(self) -> Any:
        """The job this generation belongs to (None once it is gone)."""
        return self._p()

    def owns(self, params: Any) -> bool:
        """Whether this denoiser call samples our job; False for a job nested in our sampling (webui 1.8+ tells)."""
        owner = getattr(getattr(params, "denoiser", None), "p", None)
        return owner is None or owner is self.p

    def _find_denoiser(self, params: Any) -> Any:
        denoiser = getattr(params, "denoiser", None)  # webui 1.8+
        if denoiser is None:
            denoiser = self.p.sampler.model_wrap_cfg
        return denoiser

    def begin_step(self, params: Any) -> None:
        self._denoiser = denoiser = self._find_denoiser(params)
        total = getattr(denoiser, "total_steps", None)
        progress = denoiser.step / total if total else 0.0
        if not self.run.in_window(progress):
            self.run.begin_step(params.x, params.sigma, [], None, progress)
            return
        rows, cond = self._guided_rows(params)
        prompt_rows, prompt_cond = self._prompt_rows(params) if perturbs(self.run.params) else (rows, cond)
        if rows is None or prompt_rows is None:
            self.run.skip_step()
            return
        self.run.begin_step(params.x, params.sigma, rows, cond, progress, prompt_rows, prompt_cond)
        model = getattr(denoiser, "inner_model", None)
        try:
            self.run.attach(current_unet(), model if isinstance(model, torch.nn.Module) else None)
        except LookupError:
            self.run.detach()

    def _guided_rows(self, params: Any) -> tuple[list[int] | None, Any]:
        """The step rows SAG guides, one per image, and their conditioning as this callback sees it.

        The uncond rows (the last B); at CFG scale 1 and below, where the uncond prediction does not
        steer the image, the first prompt row of each image, as diffusers' SAG pipeline does.
        """
        if self.run.options.sag_branch == "auto" and guides_prompt(self.p):
            return self._prompt_rows(params)
        images = rows_of(params.text_uncond)
        first = params.x.shape[0] - images
        key = shared.sd_model.model.conditioning_key
        return list(range(first, first + images)), condition_dict(key, params.text_uncond, params.image_cond[first:])

    def _prompt_rows(self, params: Any) -> tuple[list[int] | None, Any]:
        """The first prompt row of each image and their conditioning (PAG's and SEG's rows); None when the
        prompt rows of the images cannot be told apart (AND prompts whose layout is unknown)."""
        rows = first_prompt_rows(self._denoiser, rows_of(params.text_cond), rows_of(params.text_uncond))
        if rows is None:
            return None, None
        key = shared.sd_model.model.conditioning_key
        return rows, condition_dict(key, take_rows(params.text_cond, rows), params.image_cond[rows])

    def guide(self, params: Any) -> None:
        alphas = getattr(self._denoiser, "alphas", None)  # only CFGDenoiserTimesteps predicts eps
        space = X0Space() if alphas is None else EpsSpace(alphas)
        inner_model = params.inner_model

        def predict(x, sigma, cond):
            return inner_model(x, sigma, cond=cond)

        self.run.guide(params.x, space, predict)

    def apply(self, denoised: Any) -> Any:
        """The CFG result plus SAG's term; under CFG++ the term also joins the noise the sampler re-noises with.

        DDIM CFG++ (webui 1.10 sd_samplers_timesteps_impl.ddim_cfgpp) steps with the guided eps for x0
        but re-noises with `denoiser.last_noise_uncond`, the uncond eps. SAG's term belongs to that
        branch, so it is added there too: SAG then moves each step exactly as it does under DDIM.
        """
        term = self.run.take_term(self._keep())
        if term is None:
            return denoised
        denoiser = self._denoiser
        noise = getattr(denoiser, "last_noise_uncond", None)
        if getattr(denoiser, "need_last_noise_uncond", False) and noise is not None and noise.shape == term.shape:
            denoiser.last_noise_uncond = noise + term.to(noise.dtype)
        return denoised + term.to(denoised.dtype)

    def _keep(self) -> Any:
        """The inpainting `nmask` of the current pass (1 where the image is regenerated), or None."""
        if self._denoiser is None or getattr(self._denoiser, "mask", None) is None:
            return None
        return self._denoiser.nmask

    def detach(self) -> None:
        self.run.detach()

    def begin_batch(self) -> None:
        self.run.reset_batch()
        self.batch_masks = []

    def add_preview(self, image: Image.Image, number: int, index_in_batch: int, box: Any) -> None:
        """Draw this batch image's mask over `image` (the picture the user gets) and keep it for the end.

        `number` is the image's place among the job's generated images, as its infotext is indexed;
        `box` is where the generated crop lies in `image` (see `pasted_crop_box`), None when it fills it.
        """
        if index_in_batch >= len(self.batch_masks):
            return
        mask = self.batch_masks[index_in_batch]
        overlay = mask_overlay(np.asarray(image.convert("RGB")), mask, box)
        self.previews.append((number, Image.fromarray(overlay)))

    def append_previews(self, processed: Any) -> None:
        """Add the previews after the job's images, each with its image's infotext (as ControlNet adds maps),
        unless `preview_blocker` (sag_core/jobs.py) says a script reads the job's images by position."""
        previews, self.previews = self.previews, []
        if preview_blocker(self.p) is not None:
            return
        image_infotexts = processed.infotexts[processed.index_of_first_image:]
        for number, preview in previews:
            processed.images.append(preview)
            processed.infotexts.append(image_infotexts[number] if number < len(image_infotexts) else "")


def job_key() -> Any:
    """What tells one webui job (one Generate or API request) from the next: `state.begin` sets its start time."""
    return getattr(shared.state, "time_start", None)


def perturbs(params: SagParams) -> bool:
    """Whether PAG or SEG acts: their extra rows are the prompt's."""
    return params.acts(PAG) or params.acts(SEG)


def guides_prompt(p: Any) -> bool:
    """Whether SAG guides the prompt's branch: at CFG scale 1 and below (distilled models, LCM, Turbo ...)."""
    return p is not None and float(getattr(p, "cfg_scale", 7.0)) <= 1.0


def first_prompt_rows(denoiser: Any, prompt_rows: int, images: int) -> list[int] | None:
    """The first prompt row of each image among the step's rows (conds_list[i][0][0] in CFGDenoiser.forward).

    Without AND there is one prompt row per image. With AND the layout comes from the sampler's own
    conditioning, as the denoiser rebuilds it each step; None if that cannot be read.
    """
    if prompt_rows == images:
        return list(range(images))
    try:
        cond = denoiser.sampler.sampler_extra_args["cond"]
        conds_list, _ = prompt_parser.reconstruct_multicond_batch(cond, denoiser.step)
        rows = [entries[0][0] for entries in conds_list]
    except (AttributeError, KeyError, TypeError, IndexError):
        return None
    return rows if len(rows) == images else None


active: SamplingJobs[GenerationSag] = SamplingJobs()
"""The generations whose `p.sample` is running now (see sag_core/jobs.py), innermost last."""


def generation_for(params: Any) -> GenerationSag | None:
    """The generation whose sampling this denoiser call belongs to, if it is one of ours."""
    generation = active.get()
    return generation if generation is not None and generation.owns(params) else None


def on_cfg_denoiser(params: Any) -> None:
    generation = generation_for(params)
    if generation is not None:
        generation.begin_step(params)


def on_cfg_denoised(params: Any) -> None:
    generation = generation_for(params)
    if generation is not None:
        generation.guide(params)


def on_cfg_after_cfg(params: Any) -> None:
    generation = generation_for(params)
    if generation is not None:
        params.x = generation.apply(params.x)


def on_script_unloaded() -> None:
    active.clear()


def on_infotext_pasted(infotext: str, params: dict) -> None:
    """Read Forge's sag_* keys too, fill defaults for absent keys of the methods on, drop ours if a value is bad."""
    refusal = read_pasted(params)
    if refusal is not None:
        print(f"{refusal}.", file=sys.stderr)


def guard_sampling(p: Any, *, generation: GenerationSag | None = None, error: Exception | None = None) -> None:
    """Guard this job's `p.sample`: fail it with `error`, or sample with `generation` active (see sag_core/jobs.py)."""
    guard_job(p, active, end_generation, generation=generation, error=error)


def own_generation(p: Any) -> GenerationSag | None:
    """The generation made for this very `p`; a shallow copy of a job (ADetailer's `copy(p)`) has none of its own."""
    generation = vars(p).get(RUN_ATTR)
    return generation if generation is not None and generation.p is p else None


def report_failures(run: SagRun) -> None:
    """One console line per job whose guidance failed on some steps (the webui would not say a word)."""
    if run.job_failed_steps:
        print(f"[{TITLE}] the extra U-Net pass failed on {run.job_failed_steps} step(s): {run.first_failure}; "
              "those steps are not guided", file=sys.stderr)


def end_generation(p: Any) -> None:
    """Undo what this job's SAG left on `p` (its generation, its guarded class) and on the model."""
    generation = own_generation(p)
    if generation is not None:
        generation.run.detach()
        report_failures(generation.run)
    vars(p).pop(RUN_ATTR, None)
    unguard_sampling(p)


def client_error_type() -> type[SagParamError]:
    """SagParamError as the webui's API answers a bad request: HTTP 422 with the message, no traceback logged.

    modules/api/api.py `handle_exception` (1.6.0 to 1.10.1) answers with the exception's `status_code` and
    `detail` and logs a traceback unless it is a fastapi HTTPException. The UI shows `type: message` as before.
    """
    try:
        from fastapi import HTTPException
    except ImportError:
        return SagParamError

    class Refused(SagParamError, HTTPException):
        def __init__(self, field: str, message: str, value: Any = None) -> None:
            super().__init__(field, message, value)
            self.status_code, self.detail, self.headers = 422, str(self), None

        def __str__(self) -> str:
            return str(self.args[0])

    Refused.__name__ = Refused.__qualname__ = SagParamError.__name__
    return Refused


REFUSED = client_error_type()


def job_refusal(error: Exception) -> SagParamError:
    """What a job with a refused setting raises (a bad layer name told with the loaded model's layers); one
    console line says it."""
    field = getattr(error, "field", "layer")
    message = str(error).removeprefix("Self-Attention Guidance: ")
    if isinstance(error, LookupError):
        message = f"layer ({FIELDS_BY_ATTR['layer'].label}): {error}"
    elif field == "layer" and getattr(error, "value", None) is not None:
        layers = ", ".join(attention_layers(current_unet())) or "none"
        message = (f"layer ({FIELDS_BY_ATTR['layer'].label}) must be one of the loaded model's self-attention "
                   f"layers: {layers}; got {shown(error.value)}")
    print(f"[{TITLE}] job refused: {message}", file=sys.stderr)
    return REFUSED(field, message, getattr(error, "value", None))


class SelfAttentionGuidanceScript(scripts.Script):
    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible if UNSUPPORTED is None else False

    def ui(self, is_img2img: bool) -> list:
        """SAG's controls first; PAG and SEG each in an accordion of their own inside, folded until used."""
        controls = {}
        with self._accordion(FIELDS_BY_ATTR["enabled"], controls):
            for row in (("scale", "blur_sigma", "threshold"), ("start", "end", "preview"), ("layer", "smooth_mask")):
                with gr.Row():
                    controls.update((attr, self._control(FIELDS_BY_ATTR[attr])) for attr in row)
            for method in (PAG, SEG):
                with self._accordion(FIELDS_BY_ATTR[SWITCH[method]], controls), gr.Row():
                    controls.update((f.attr, self._control(f)) for f in FIELDS
                                    if f.method == method and f.attr != SWITCH[method])
        switches = [(controls[SWITCH[method]], lambda d, key=marker: key in d)
                    for method, marker in zip((SAG, PAG, SEG), MARKERS)]  # 0.2.0's entries first, in its order
        self.infotext_fields = switches[:1] + [(controls[f.attr], f.infotext) for f in VALUE_FIELDS] + switches[1:]
        self.paste_field_names = [f.infotext for f in VALUE_FIELDS]
        return [*(controls[f.attr] for f in FIELDS), gr.State(value=None)]

    def _accordion(self, field, controls: dict) -> Any:
        accordion = ui_components.InputAccordion(field.default, label=field.label, elem_id=self.elem_id(field.attr))
        controls[field.attr] = accordion
        return accordion

    def _control(self, field) -> Any:
        common = dict(label=field.label, value=field.default, elem_id=self.elem_id(field.attr))
        if field.is_bool:
            return gr.Checkbox(**common)
        if field.is_choice:
            return gr.Dropdown(choices=list(field.choices), **common)
        if field.widget == "number":
            return gr.Number(minimum=field.minimum, maximum=field.maximum, step=field.step, **common)
        return gr.Slider(minimum=field.minimum, maximum=field.maximum, step=field.step, **common)

    def process(self, p: Any, *args: Any) -> None:
        end_generation(p)
        try:
            params = SagParams.from_script_args(args).with_overrides(getattr(p, OVERRIDES_ATTR, None))
            if params.active:
                find_layer(current_unet(), params.layer)
        except (SagParamError, LookupError) as error:
            write_settings(p.extra_generation_params, None)
            guard_sampling(p, error=job_refusal(error))
            return
        write_settings(p.extra_generation_params, params if params.switched_on else None)
        if not params.switched_on:
            return
        options = getattr(p, RUN_OPTIONS_ATTR, None) or RunOptions()
        if params.acts(SAG) and options.sag_branch == "auto" and guides_prompt(p):
            p.extra_generation_params[BRANCH_KEY] = PROMPT_BRANCH
        generation = GenerationSag(p, params)
        setattr(p, RUN_ATTR, generation)
        guard_sampling(p, generation=generation)

    def process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        generation = own_generation(p)
        if generation is not None:
            generation.begin_batch()

    def postprocess_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        generation = own_generation(p)
        if generation is not None and generation.run.params.preview:
            generation.batch_masks = generation.run.where_acted(generation._keep())
        run = generation.run if generation is not None else None
        write_count(p.extra_generation_params, SKIPPED_KEY, run.skipped_steps if run else 0)
        write_count(p.extra_generation_params, FAILED_KEY, run.failed_steps if run else 0)

    def postprocess_image(self, p: Any, pp: Any, *args: Any) -> None:
        if not HAS_AFTER_COMPOSITE:  # webui 1.6/1.7: the last look at each image before it is saved
            self._add_preview(p, pp, paste_to=None)

    def postprocess_image_after_composite(self, p: Any, pp: Any, *args: Any) -> None:
        self._add_preview(p, pp, paste_to=getattr(p, "paste_to", None))

    def _add_preview(self, p: Any, pp: Any, paste_to: Any) -> None:
        generation = own_generation(p)
        if generation is not None and generation.run.params.preview and preview_blocker(p) is None:
            index_in_batch = getattr(p, "batch_index", 0)
            number = p.iteration * p.batch_size + index_in_batch  # processing.py's infotext(i) index
            box = pasted_crop_box(p, paste_to, pp.image.size, getattr(shared.opts, "overlay_inpaint", True))
            generation.add_preview(pp.image, number, index_in_batch, box)

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        generation = own_generation(p)
        if generation is not None and generation.run.params.preview:
            self._tell_preview_skipped(p)
        if generation is not None and generation.previews:
            generation.append_previews(processed)
        end_generation(p)

    def _tell_preview_skipped(self, p: Any) -> None:
        """Say once per webui job (a script may run many) why its previews are left out."""
        reason = preview_blocker(p)
        if reason is None:
            return
        key = job_key()
        if key is not None and getattr(self, "_told_preview_skipped_for", None) == key:
            return
        self._told_preview_skipped_for = key
        print(f"[Self-Attention Guidance] mask preview skipped: {reason}.")


if UNSUPPORTED is None:
    script_callbacks.on_cfg_denoiser(on_cfg_denoiser)
    script_callbacks.on_cfg_denoised(on_cfg_denoised)
    script_callbacks.on_cfg_after_cfg(on_cfg_after_cfg)
    script_callbacks.on_script_unloaded(on_script_unloaded)
    script_callbacks.on_infotext_pasted(on_infotext_pasted)
    print(f"[Self-Attention Guidance] sd-webui-sag {__version__}")
else:
    print(f"[Self-Attention Guidance] sd-webui-sag {__version__} is inactive: {UNSUPPORTED}.")
