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
from sag_core.attention_hook import find_middle_self_attention
from sag_core.conditioning import take_rows
from sag_core.params import FIELDS, FIELDS_BY_ATTR, INFOTEXT_FIELDS, OVERRIDES_ATTR, SagParamError, SagParams
from sag_core.preview import mask_overlay
from sag_core.run import SagRun
from sag_core.spaces import EpsSpace, X0Space
from sag_core.version import __version__

TITLE = "Self-Attention Guidance"
RUN_ATTR = "_sag_generation"
SKIPPED_KEY = "SAG skipped steps"
BRANCH_KEY, PROMPT_BRANCH = "SAG branch", "prompt"
FAILED_KEY = "SAG failed steps"
INFOTEXT_KEYS = tuple(f.infotext for f in INFOTEXT_FIELDS) + (SKIPPED_KEY, FAILED_KEY, BRANCH_KEY)
FORGE_KEYS = {"sag_scale": "scale", "sag_blur_sigma": "blur_sigma", "sag_threshold": "threshold"}
_GUARD_BASE = "__sag_unguarded_class__"  # on a job's guarded class: the class it replaced
_GUARD_STASH = "__sag_stashed_sample__"  # and an instance `p.sample` set before SAG's process, or None
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
        if rows is None:
            self.run.skip_step()
            return
        self.run.begin_step(params.x, params.sigma, rows, cond, progress)
        model = getattr(denoiser, "inner_model", None)
        try:
            self.run.attach(current_unet(), model if isinstance(model, torch.nn.Module) else None)
        except LookupError:
            self.run.detach()

    def _guided_rows(self, params: Any) -> tuple[list[int] | None, Any]:
        """The step rows SAG guides, one per image, and their conditioning as this callback sees it.

        The uncond rows (the last B); at CFG scale 1 and below, where the uncond prediction does not
        steer the image, the first prompt row of each image, as diffusers' SAG pipeline does. None
        when the prompt rows of the images cannot be told apart (AND prompts whose layout is unknown).
        """
        key = shared.sd_model.model.conditioning_key
        images = rows_of(params.text_uncond)
        if not guides_prompt(self.p):
            first = params.x.shape[0] - images
            rows = list(range(first, first + images))
            return rows, condition_dict(key, params.text_uncond, params.image_cond[first:])
        rows = first_prompt_rows(self._denoiser, rows_of(params.text_cond), images)
        if rows is None:
            return None, None
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

    def where_acted(self) -> list:
        """Per image of the batch, the (h, w) share of guided steps in which SAG blurred each latent cell."""
        mean = self.run.mean_mask()
        if mean is None:
            return []
        keep = self._keep()
        if keep is not None and keep.shape[-2:] == mean.shape[-2:]:
            mean = mean * keep.to(mean)
        return [row[0].cpu() for row in mean]

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
        """Add the previews after the job's images, each with its image's infotext (as ControlNet adds maps).

        Only for a job that `preview_blocker` lets through: a job run by a script of the Script dropdown
        (`script_args[0]` above 0; the rule and its webui sources are in `selectable_script_title`) may
        read `processed.images` by position (SD upscale's tiles, Loopback, X/Y/Z plot), so there the
        previews are dropped and nothing is appended.
        """
        previews, self.previews = self.previews, []
        if preview_blocker(self.p) is not None:
            return
        image_infotexts = processed.infotexts[processed.index_of_first_image:]
        for number, preview in previews:
            processed.images.append(preview)
            processed.infotexts.append(image_infotexts[number] if number < len(image_infotexts) else "")


def selectable_script_title(p: Any) -> str | None:
    """The title of the Script-dropdown script running this job, or None when no such script runs it.

    webui 1.6.0 to 1.10.1: `p.script_args[0]` is the dropdown's index (gr.Dropdown type="index", 0 =
    "None"), from the UI (txt2img.py, img2img.py pass the args to `ScriptRunner.run`) and from the API
    (api.py `init_script_args`: `script_name`'s index + 1). A nonzero index makes `ScriptRunner.run`
    hand the job to `selectable_scripts[index - 1].run`, which calls process_images itself on `p` or on
    copies that share its script_args. Without `script_name` the API calls process_images directly,
    even where a pasted infotext put the dropdown's text there (api.py `apply_infotext`, 1.8+): so
    only an int above 0 counts.
    """
    args = getattr(p, "script_args", None)
    index = args[0] if args else None
    if not isinstance(index, int) or isinstance(index, bool) or index <= 0:
        return None
    selectable = getattr(getattr(p, "scripts", None), "selectable_scripts", None) or []
    try:
        return str(selectable[index - 1].title())
    except Exception:  # a runner without the list, or a script whose title fails: still a selectable run
        return f"script #{index}"


def preview_blocker(p: Any) -> str | None:
    """Why this job's previews must not be added (they would displace images a script reads), or None."""
    title = selectable_script_title(p) if p is not None else None
    return f"the Script dropdown's '{title}' runs this job and reads its images by position" if title else None


def pasted_crop_box(p: Any, paste_to: Any, image: Image.Image) -> Any:
    """`paste_to` where `image` is the original with the generated crop pasted back, else None.

    webui 1.8.0 to 1.10.1 (processing.py `apply_overlay`, `uncrop`): inpainting "only masked" pastes
    the crop at `p.paste_to` into an overlay-sized picture only when an overlay exists
    (`opts.overlay_inpaint` on and `p.overlay_images[i]`); otherwise the picture after the composite
    is the crop itself, whatever its size, and the mask covers it whole.
    """
    if paste_to is None or not getattr(shared.opts, "overlay_inpaint", True):
        return None
    overlays = getattr(p, "overlay_images", None)
    index = getattr(p, "batch_index", 0)
    if overlays is None or index >= len(overlays) or overlays[index] is None:
        return None
    return tuple(paste_to) if image.size == overlays[index].size else None


def job_key() -> Any:
    """What tells one webui job (one Generate or API request) from the next: `state.begin` sets its start time."""
    return getattr(shared.state, "time_start", None)


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


class SamplingJobs:
    """The generations whose `p.sample` is running now, innermost last; empty between jobs.

    A job's generation is here exactly while its own sampling runs (see `guard_sampling`), so a
    nested job (ADetailer's inpainting pass, run from `postprocess_image`) never meets the outer
    job's SAG, and the outer job finds its own again when it samples its next batch.
    """

    def __init__(self) -> None:
        self._running: list[GenerationSag] = []

    def push(self, generation: GenerationSag) -> None:
        if self._running:
            self._running[-1].run.detach()  # re-attached at the outer job's next guided step
        self._running.append(generation)

    def pop(self, generation: GenerationSag) -> None:
        generation.run.detach()
        self._running = [running for running in self._running if running is not generation]

    def get(self) -> GenerationSag | None:
        return self._running[-1] if self._running else None

    def clear(self) -> None:
        for generation in self._running:
            generation.run.detach()
        self._running = []


active = SamplingJobs()


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
    for field in INFOTEXT_FIELDS[1:]:
        params[field.infotext] = getattr(values, field.attr)


def without_spare_slot(args: tuple) -> tuple:
    """The script's values without its last, spare input when that is empty (None, as the UI sends it).

    The webui's API drops positional values beyond a script's inputs without a word (Api.init_script_args);
    a filled spare input is kept, so that SagParams.from_args sees the list is too long and refuses it.
    """
    if len(args) == len(FIELDS) + 1 and args[-1] is None:
        return tuple(args[:-1])
    return tuple(args)


def guard_sampling(p: Any, *, generation: GenerationSag | None = None, error: Exception | None = None) -> None:
    """Guard this job's `p.sample`: raise `error` instead of sampling, or run it with `generation` active.

    Exceptions from script methods are swallowed by the webui, so a refused setting fails the job
    here, where the UI and the API report it. `p.sample` spans one batch's sampling, hires pass
    included, and nothing else: the generation is active (and may hook the U-Net) only inside it,
    and the hook is removed in a finally, since no webui hook runs after an exception.

    The guard is a per-job subclass of `p`'s class (same names), whose `sample` guards only `p`
    itself: a shallow copy made later (`copy(p)`, as extensions make) shares the class but samples
    itself, unguarded. An instance `p.sample` another extension set earlier is kept and called inside.
    """
    unguard_sampling(p)
    base, owner = type(p), weakref.ref(p)
    stashed = vars(p).pop("sample", None)

    def sample(self, *args, **kwargs):
        def unguarded():
            return stashed(*args, **kwargs) if stashed is not None else base.sample(self, *args, **kwargs)

        if self is not owner() or not isinstance(self, guarded):
            return unguarded()
        try:
            if error is not None:
                raise error
            if generation is None:
                return unguarded()
            active.push(generation)
            try:
                return unguarded()
            finally:
                active.pop(generation)
        except BaseException:
            end_generation(self)  # the job ends here: its postprocess, which would undo the guard, never runs
            raise

    guarded = type(base.__name__, (base,), {
        "__slots__": (), "__qualname__": base.__qualname__, "__module__": base.__module__,
        "sample": sample, _GUARD_BASE: base, _GUARD_STASH: stashed})
    p.__class__ = guarded


def unguard_sampling(p: Any) -> None:
    """Give `p` back its own class (and an extension's earlier `p.sample`); for a copy of a job too."""
    guarded = type(p)
    base = guarded.__dict__.get(_GUARD_BASE)
    if base is None:
        return
    p.__class__ = base
    stashed = guarded.__dict__[_GUARD_STASH]
    if stashed is not None and "sample" not in vars(p):
        p.sample = stashed


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


def write_infotext(extra: dict, params: SagParams | None) -> None:
    """Put this job's SAG settings into `extra`, dropping stale ones; values already there keep their place."""
    written = params.infotext() if params is not None else {}
    for field in INFOTEXT_FIELDS:
        if field.infotext not in written:
            extra.pop(field.infotext, None)
    extra.pop(BRANCH_KEY, None)
    extra.update(written)


def write_count(extra: dict, key: str, count: int) -> None:
    """Put a batch's step count into `extra` when there is one, else drop a stale one (cells share `extra`)."""
    if count:
        extra[key] = count
    else:
        extra.pop(key, None)


class SelfAttentionGuidanceScript(scripts.Script):
    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible if UNSUPPORTED is None else False

    def ui(self, is_img2img: bool) -> list:
        enabled_field, *slider_fields, preview_field = FIELDS
        with ui_components.InputAccordion(enabled_field.default, label=enabled_field.label,
                            elem_id=self.elem_id(enabled_field.attr)) as enabled:
            with gr.Row():
                sliders = [self._slider(f) for f in slider_fields[:3]]
            with gr.Row():
                sliders += [self._slider(f) for f in slider_fields[3:]]
                preview = gr.Checkbox(label=preview_field.label, value=preview_field.default,
                                      elem_id=self.elem_id(preview_field.attr))
        scale_key = FIELDS_BY_ATTR["scale"].infotext
        self.infotext_fields = [(enabled, lambda d: scale_key in d)]
        self.infotext_fields += [(slider, f.infotext) for slider, f in zip(sliders, slider_fields)]
        self.paste_field_names = [f.infotext for f in slider_fields]
        return [enabled, *sliders, preview, gr.State(value=None)]

    def _slider(self, field) -> gr.Slider:
        return gr.Slider(label=field.label, minimum=field.minimum, maximum=field.maximum, step=field.step,
                         value=field.default, elem_id=self.elem_id(field.attr))

    def process(self, p: Any, *args: Any) -> None:
        end_generation(p)
        try:
            params = SagParams.from_args(without_spare_slot(args)).with_overrides(getattr(p, OVERRIDES_ATTR, None))
            if params.active:
                find_middle_self_attention(current_unet())
        except (SagParamError, LookupError) as error:
            write_infotext(p.extra_generation_params, None)
            guard_sampling(p, error=RuntimeError(f"Self-Attention Guidance: {error}")
                           if isinstance(error, LookupError) else error)
            return
        write_infotext(p.extra_generation_params, params if params.enabled else None)
        if not params.enabled:
            return
        if params.active and guides_prompt(p):
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
            generation.batch_masks = generation.where_acted()
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
            box = pasted_crop_box(p, paste_to, pp.image)
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
