"""Self-Attention Guidance for the AUTOMATIC1111 webui and its forks: the UI, the script hooks, the CFG callbacks.

Thin glue: the methods live in sag_core/methods, the hosts' protocols in sag_core/host (A1111's CFG
denoiser in host/a1111.py, webui 1.6 to 1.10; the Forge family's patcher in host/forge.py); this
file hands the host's modules to them.
"""

from __future__ import annotations

import sys
from typing import Any

import gradio as gr

from modules import prompt_parser, script_callbacks, scripts, shared, ui_components
from sag_core.host.a1111 import GenerationSag, Webui
from sag_core.host.forge import NOT_GUIDED, UI_NOTE, Forge, ForgeGeneration, built_in_guidance_warnings
from sag_core.host.infotext import FAILED_KEY, MARKERS, SKIPPED_KEY, read_pasted, write_branches, write_count, \
    write_settings
from sag_core.host.jobs import SamplingJobs, guard_sampling as guard_job, preview_blocker, unguard_sampling
from sag_core.host.preview import pasted_crop_box
from sag_core.host.refusal import client_error_type, refusal_message
from sag_core.host.support import forge_family, unsupported_host
from sag_core.layers import attention_layers, find_layer
from sag_core.methods import METHODS
from sag_core.params import FIELDS, FIELDS_BY_ATTR, OVERRIDES_ATTR, VALUE_FIELDS, Field, SagParamError, SagParams
from sag_core.run import SagRun
from sag_core.version import __version__

TITLE = "Self-Attention Guidance"
RUN_ATTR = "_sag_generation"
HAS_AFTER_COMPOSITE = hasattr(scripts.Script, "postprocess_image_after_composite")  # webui 1.8+
UNSUPPORTED = unsupported_host(shared, ui_components)
WEBUI = Webui(lambda: shared.sd_model, prompt_parser.reconstruct_multicond_batch)
FORK = forge_family()
if FORK is not None:  # the cond/uncond batch function: Forge's backend, or reForge's (and Classic's) ldm_patched
    try:
        from backend.sampling.sampling_function import calc_cond_uncond_batch
    except ImportError:
        from ldm_patched.modules.samplers import calc_cond_uncond_batch
FORGE = Forge(calc_cond_uncond_batch) if FORK is not None else None
REFUSED = client_error_type()

active: SamplingJobs[GenerationSag] = SamplingJobs()
"""The generations whose `p.sample` is running now (see sag_core/host/jobs.py), innermost last."""


def job_key() -> Any:
    """What tells one webui job (one Generate or API request) from the next: `state.begin` sets its start time."""
    return getattr(shared.state, "time_start", None)


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
    """Guard this job's `p.sample`: fail it with `error`, or sample with `generation` active (see host/jobs.py)."""
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
        generation.end()
        report_failures(generation.run)
    vars(p).pop(RUN_ATTR, None)
    unguard_sampling(p)


def model_unet() -> Any:
    """The loaded model's U-Net, hooked by name; None on Forge for a model that has none (not guided)."""
    return FORGE.unet(shared.sd_model) if FORGE is not None else WEBUI.unet()


def job_refusal(error: Exception) -> SagParamError:
    """What a job with a refused setting raises (see host/refusal.py); one console line says it."""
    field, message = refusal_message(error, lambda: attention_layers(model_unet()))
    print(f"[{TITLE}] job refused: {message}", file=sys.stderr)
    return REFUSED(field, message, getattr(error, "value", None))


class SelfAttentionGuidanceScript(scripts.Script):
    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible if UNSUPPORTED is None else False

    def ui(self, is_img2img: bool) -> list:
        """The first method's accordion holds the shared controls and, folded until used, one accordion per
        further method (each laid out as its file says)."""
        controls: dict[str, Any] = {}
        first, *others = METHODS
        with self._accordion(first.fields[0], controls):
            self._rows(first.layout, controls)
            for method in others:
                with self._accordion(method.fields[0], controls):
                    self._rows(method.layout, controls)
            if FORGE is not None:
                gr.Markdown(UI_NOTE)
        switches = [(controls[method.switch], lambda d, key=marker: key in d)
                    for method, marker in zip(METHODS, MARKERS)]  # 0.2.0's entries first, in its order
        self.infotext_fields = switches[:1] + [(controls[f.attr], f.infotext) for f in VALUE_FIELDS] + switches[1:]
        self.paste_field_names = [f.infotext for f in VALUE_FIELDS]
        return [*(controls[f.attr] for f in FIELDS), gr.State(value=None)]

    def _rows(self, layout: tuple[tuple[str, ...], ...], controls: dict[str, Any]) -> None:
        for row in layout:
            with gr.Row():
                controls.update((attr, self._control(FIELDS_BY_ATTR[attr])) for attr in row)

    def _accordion(self, field: Field, controls: dict[str, Any]) -> Any:
        accordion = ui_components.InputAccordion(field.default, label=field.label, elem_id=self.elem_id(field.attr))
        controls[field.attr] = accordion
        return accordion

    def _control(self, field: Field) -> Any:
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
        unet = layer = None
        try:
            params = SagParams.from_script_args(args).with_overrides(getattr(p, OVERRIDES_ATTR, None))
            if params.active:
                unet = model_unet()
                if unet is None:
                    print(f"[{TITLE}] {NOT_GUIDED}.", file=sys.stderr)
                    write_settings(p.extra_generation_params, None)
                    return
                layer = find_layer(unet, params.layer)
        except (SagParamError, LookupError) as error:
            write_settings(p.extra_generation_params, None)
            guard_sampling(p, error=job_refusal(error))
            return
        write_settings(p.extra_generation_params, params if params.switched_on else None)
        if not params.switched_on:
            return
        if FORGE is not None:
            generation = ForgeGeneration(p, params, FORGE, unet, layer)
            for line in built_in_guidance_warnings(p, FORK):
                print(f"[{TITLE}] {line}.", file=sys.stderr)
        else:
            generation = GenerationSag(p, params, WEBUI, unet, layer)
        write_branches(p.extra_generation_params, generation.run.kinds)
        setattr(p, RUN_ATTR, generation)
        guard_sampling(p, generation=generation)

    def process_before_every_sampling(self, p: Any, *args: Any, **kwargs: Any) -> None:
        """Forge family: put the guided clone of this pass's U-Net patcher on the job's model."""
        generation = own_generation(p)
        if isinstance(generation, ForgeGeneration):
            generation.patch_job(p)

    def process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        generation = own_generation(p)
        if generation is not None:
            generation.begin_batch()

    def postprocess_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        generation = own_generation(p)
        if generation is not None:
            generation.end_batch()
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
        print(f"[{TITLE}] mask preview skipped: {reason}.")


if UNSUPPORTED is None:
    script_callbacks.on_cfg_denoiser(on_cfg_denoiser)
    script_callbacks.on_cfg_denoised(on_cfg_denoised)
    script_callbacks.on_cfg_after_cfg(on_cfg_after_cfg)
    script_callbacks.on_script_unloaded(on_script_unloaded)
    script_callbacks.on_infotext_pasted(on_infotext_pasted)
    print(f"[{TITLE}] sd-webui-sag {__version__}")
else:
    print(f"[{TITLE}] sd-webui-sag {__version__} is inactive: {UNSUPPORTED}.")
