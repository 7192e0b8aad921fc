"""The Forge family (lllyasviel's Forge, Panchovix's reForge) adapted to a SagRun: rows, extra pass, the patcher.

Their CFG denoiser (modules/sd_samplers_cfg_denoiser.py) still calls the webui's `cfg_denoiser` callback
with the sampler's latent (B rows, one per image), then hands the model to a ComfyUI-style patcher:
`sampling_function_inner` batches each conditioning entry's B rows in chunks (`transformer_options
["cond_or_uncond"]` says which chunk is a prompt (0) or the negative prompt (1)), and the patcher's
post-CFG functions see the CFG result with both predictions (Forge dfdcbab6
backend/sampling/sampling_function.py; reForge 3b56b268 ldm_patched/modules/samplers.py).

This adapter therefore numbers a step's rows as A1111 does, [prompt rows (B), uncond rows (B)], places
each U-Net call's chunks from `cond_or_uncond`, and guides from a post-CFG function put on a clone of
the job's U-Net patcher (never on the shared one). The extra pass goes through the host's own
`calc_cond_uncond_batch`, so ControlNet and the host's batching apply to it; every conditioning entry
of a chunk gets the same input there, so SAG's degraded input takes its own call beside PAG's and
SEG's rows (which share one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..hooks import HookSet
from ..layers import AttentionLayer
from ..methods import PROMPT, UNCOND
from ..params import SagParams
from ..run import RowSet
from ..spaces import X0Space
from ..tracking import RowTracker
from .a1111 import GenerationSag

CHUNK_KINDS = {0: PROMPT, 1: UNCOND}
"""sampling_function.py's COND = 0 and UNCOND = 1, as `cond_or_uncond` lists them per chunk."""


BUILT_IN_GUIDANCE = ("SelfAttentionGuidance Integrated", "PerturbedAttentionGuidance Integrated")
"""Titles (or their start) of the Forge family's own attention guidance scripts (extensions-builtin)."""

NOT_GUIDED = ("this model has no U-Net self-attention of SAG's kind (Flux, SD3 and other transformer models): "
              "it is not guided by SAG, PAG or SEG")

UI_NOTE = "Models without a U-Net (Flux, SD3 and other transformer models) are not guided; the console says so."


@dataclass(frozen=True)
class Forge:
    """What the adapter uses of a running Forge-family host: its batch function; the model's U-Net patcher."""

    calc_cond_uncond_batch: Callable[..., tuple[torch.Tensor, torch.Tensor]]

    @staticmethod
    def unet_patcher(sd_model: Any) -> Any:
        """The U-Net patcher of the current sampling pass (processing.py resets it before each)."""
        return sd_model.forge_objects.unet

    def unet(self, sd_model: Any) -> nn.Module | None:
        """The model's U-Net (ldm's module names), or None for a model without one (Flux, SD3: not guided)."""
        if not getattr(sd_model, "is_webui_legacy_model", lambda: True)():
            return None
        unet = getattr(self.unet_patcher(sd_model).model, "diffusion_model", None)
        return unet if hasattr(unet, "input_blocks") and hasattr(unet, "middle_block") else None


def built_in_guidance_warnings(p: Any, fork: str) -> list[str]:
    """A line for each of the host's own SAG / PAG scripts ticked in this job (their first argument is the switch).

    Both add their terms. The built-in SAG replaces the middle block's self-attention for every U-Net call
    (attn1_replace), so our methods cannot see or perturb that layer: there their steps are left unguided
    and counted (PerturbedLayer.check_ran, the saliency recorder). The built-in PAG replaces it only in its
    own extra call.
    """
    runner = getattr(p, "scripts", None)
    args = list(getattr(p, "script_args", None) or ())
    lines = []
    for script in getattr(runner, "alwayson_scripts", ()):
        title = script.title() if callable(getattr(script, "title", None)) else ""
        if not (title.startswith(BUILT_IN_GUIDANCE) and script.args_from < len(args) and args[script.args_from] is True):
            continue
        effect = ("it hides the middle block's self-attention, so ours leaves its steps on layer 'middle' unguided "
                  "(counted in the infotext)" if title.startswith(BUILT_IN_GUIDANCE[0]) else "both add their terms")
        lines.append(f"ticked together with {fork}'s built-in '{title}': {effect}; tick one of them")
    return lines


def step_rows(kind: str, images: int) -> list[int]:
    """A kind's rows among a step's 2B rows: prompt rows first, then the uncond rows (as on A1111)."""
    return list(range(images)) if kind == PROMPT else list(range(images, 2 * images))


def chunk_rows(cond_or_uncond: list[int], batch: int) -> list[int] | None:
    """The step row of each row of a U-Net call made of `cond_or_uncond` chunks, `batch` rows in all.

    Each chunk carries one conditioning entry for every image (B rows). With AND prompts several chunks
    are prompt chunks; each is placed on the prompt rows, so their saliency is averaged. None when
    the call is not whole chunks.
    """
    if not cond_or_uncond or batch % len(cond_or_uncond):
        return None
    images = batch // len(cond_or_uncond)
    rows: list[int] = []
    for chunk in cond_or_uncond:
        if chunk not in CHUNK_KINDS:
            return None
        rows += step_rows(CHUNK_KINDS[chunk], images)
    return rows


class ChunkTrackingHook(HookSet):
    """A pre-hook on the U-Net that places each call's chunks on the step's rows from its transformer options."""

    def __init__(self, unet: nn.Module, tracker: RowTracker, model: nn.Module | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.tracker = tracker

    def _register(self) -> list[Any]:
        return [self.unet.register_forward_pre_hook(self._on_unet, with_kwargs=True)]

    def _on_unet(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not self.tracker.active:
            return
        x = args[0] if args else kwargs["x"]
        options = kwargs.get("transformer_options") or {}
        rows = chunk_rows(list(options.get("cond_or_uncond", ())), x.shape[0])
        if rows is None:
            self.tracker.lost = True
            return
        self.tracker.place(x, rows)


class ForgeGeneration(GenerationSag):
    """Binds one SagRun to one generation on a Forge-family host: the step's rows, the patch, the term.

    The glue calls `begin_step` from the webui's `cfg_denoiser` callback, `patch_job` from
    `process_before_every_sampling` (each sampling pass, hires fix included) and `end` when the job
    ends; the post-CFG function the patch installs guides the step, so A1111's `guide` and `apply` stages have nothing to do here.
    Batches, previews and the inpainting mask are kept as on A1111.
    """

    def __init__(self, p: Any, params: SagParams, forge: Forge, unet: Any = None,
                 layer: AttentionLayer | None = None) -> None:
        super().__init__(p, params, None, unet, layer)
        self.forge = forge
        self._images = 0
        self._patched: tuple[Any, Any, Any] | None = None  # (forge_objects, its own patcher, our clone)
        self._added: tuple[torch.Tensor, torch.Tensor] | None = None  # this step's term and sigma, for CFG++

    def patch(self, patcher: Any) -> Any:
        """A clone of the pass's U-Net patcher with our post-CFG function; the shared patcher is left as it was.

        Forge skips the uncond rows at CFG scale 1 unless told not to; when a method reads them, it is.
        """
        generation = self

        def post_cfg(args: dict) -> torch.Tensor:  # a plain function: clone() deep-copies model_options
            return generation.post_cfg(args)

        clone = patcher.clone()
        clone.set_model_sampler_post_cfg_function(post_cfg, disable_cfg1_optimization=UNCOND in self.run.kinds_needed)
        return clone

    def patch_job(self, p: Any) -> None:
        """Put the patched clone on the job's model for this sampling pass (from `process_before_every_sampling`)."""
        self.restore()
        objects = p.sd_model.forge_objects
        shared_patcher = self.forge.unet_patcher(p.sd_model)
        objects.unet = self.patch(shared_patcher)
        self._patched = (objects, shared_patcher, objects.unet)

    def restore(self) -> None:
        """Give the job's model its own U-Net patcher back, if ours is still on it; idempotent."""
        patched, self._patched = self._patched, None
        if patched is not None and patched[0].unet is patched[2]:
            patched[0].unet = patched[1]

    def end(self) -> None:
        super().end()
        self.restore()

    def begin_step(self, params: Any) -> None:
        """Before the model runs: note the step's rows (prompt then uncond, B each) and hook the pass's U-Net."""
        self._denoiser = denoiser = params.denoiser
        total = getattr(denoiser, "total_steps", None)
        progress = denoiser.step / total if total else 0.0
        x, sigma = params.x, params.sigma
        self._images = images = x.shape[0]
        if not self.run.in_window(progress):
            self.run.begin_step(x, sigma, {}, progress)
            return
        if UNCOND in self.run.kinds_needed and params.text_uncond is None:  # Forge drops it at CFG scale 1
            self.run.skip_step()
            return
        unet = self.forge.unet(self.p.sd_model)
        if unet is None:
            self.run.skip_step()
            return
        rows = {kind: RowSet(step_rows(kind, images), kind) for kind in sorted(self.run.kinds_needed, reverse=True)}
        self.run.begin_step(torch.cat([x, x]), torch.cat([sigma, sigma]), rows, progress)
        known_unet, layer = self._layer
        try:
            self.run.attach(unet, None, layer if known_unet is unet else None, track=ChunkTrackingHook)
        except LookupError:
            self.run.detach()

    def post_cfg(self, args: dict) -> torch.Tensor:
        """The patcher's post-CFG function: guide the step from both predictions and add the methods' term.

        A RowSet's conditioning is its kind; the extra pass turns it back into the host's entries.
        """
        denoised = args["denoised"]
        if self._images != denoised.shape[0]:
            return denoised
        model, options = args["model"], args["model_options"]
        entries = {PROMPT: args["cond"], UNCOND: args["uncond"]}

        def predict(x: torch.Tensor, sigma: torch.Tensor, kind: str) -> torch.Tensor:
            prompt, uncond = (entries[PROMPT], None) if kind == PROMPT else ([], entries[UNCOND])
            out_cond, out_uncond = self.forge.calc_cond_uncond_batch(model, prompt, uncond, x, sigma, options)
            return out_cond if kind == PROMPT else out_uncond

        self.run.guide(torch.cat([args["cond_denoised"], args["uncond_denoised"]]), X0Space(), predict)
        term = self.run.take_term(self.keep())
        self._added = None if term is None else (term, args["sigma"])
        return denoised if term is None else denoised + term.to(denoised.dtype)

    def guide(self, params: Any) -> None:
        """A1111's `cfg_denoised` stage: Forge does not call it; the post-CFG function guides."""

    def apply(self, denoised: Any) -> Any:
        """A1111's `cfg_after_cfg` stage: the term is in already; under DDIM CFG++ it joins the uncond noise too.

        Forge's CFG++ re-noises with `last_noise_uncond` = (x - uncond x0) / sigma, computed from the host's
        own uncond prediction; SAG's term moves that prediction as it moves the result (see a1111.apply).
        """
        added, self._added = self._added, None
        denoiser = self._denoiser
        noise = getattr(denoiser, "last_noise_uncond", None)
        if added is not None and getattr(denoiser, "need_last_noise_uncond", False) and noise is not None \
                and noise.shape == added[0].shape:
            term, sigma = added
            denoiser.last_noise_uncond = noise - (term / sigma.view(-1, 1, 1, 1)).to(noise.dtype)
        return denoised


__all__ = ["BUILT_IN_GUIDANCE", "CHUNK_KINDS", "ChunkTrackingHook", "Forge", "ForgeGeneration", "NOT_GUIDED",
           "UI_NOTE", "built_in_guidance_warnings", "chunk_rows", "step_rows"]
