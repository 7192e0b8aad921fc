"""Per-generation guidance state, driven by the three stages of a CFG denoiser call, for every registered method.

Per denoiser call a host adapter calls `begin_step` (before the model, with the step's row sets),
`guide` (after the model, before CFG is combined) and `take_term` (after CFG). The run asks each
acting method for its rows of one extra model call (sag_core/extra_pass.py) and sums their terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from .attention_hook import SaliencyHook, SaliencyRecorder
from .conditioning import Conditioning
from .extra_pass import predict_together
from .hooks import HookSet
from .layers import AttentionLayer, find_layer
from .methods import PROMPT, UNCOND, Method, RunOptions, Step
from .methods.base import OutputSpace
from .params import SagParams
from .tracking import RowTracker, RowTrackingHook

Predict = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]
TrackingHook = Callable[[nn.Module, RowTracker, "nn.Module | None"], HookSet]
"""Builds the hooks that tell a RowTracker where each U-Net call's rows sit (the host's protocol)."""

RUN_OPTIONS_ATTR = "sag_run_options"
"""Attribute of a job object carrying its RunOptions (the lab's ablations set it; users never do)."""

__all__ = ["PROMPT", "RUN_OPTIONS_ATTR", "UNCOND", "RowSet", "RunOptions", "SagRun"]


@dataclass(frozen=True)
class RowSet:
    """One kind of row of a step (one per image): their indices among the step's rows and their conditioning
    as the CFG callback showed it (used only where no model call showed what the host really sent)."""

    rows: list[int]
    cond: Conditioning


@dataclass
class _Rows:
    rows: list[int]
    x: torch.Tensor
    sigma: torch.Tensor
    cond: Conditioning


class _Hooks:
    """What the run holds on one U-Net: the row tracking, SAG's saliency hook when it acts, the resolved layer."""

    def __init__(self, unet: nn.Module, model: nn.Module | None, layer: AttentionLayer,
                 tracker: RowTracker, recorder: SaliencyRecorder | None, track: TrackingHook) -> None:
        self.unet, self.model, self.layer = unet, model, layer
        self.parts = [track(unet, tracker, model)]
        if recorder is not None:
            self.parts.append(SaliencyHook(layer, recorder))

    @property
    def installed(self) -> bool:
        return all(part.installed for part in self.parts)

    def install(self) -> "_Hooks":
        for part in self.parts:
            part.install()
        return self

    def remove(self) -> None:
        for part in self.parts:
            part.remove()


class SagRun:
    """One generation's guidance: hooks on the current U-Net, the step in flight, and what happened.

    A step whose rows were not all seen is skipped and counted; one whose extra pass raised is
    counted as failed (its first message kept for one console line) and left unguided.
    """

    def __init__(self, params: SagParams, options: RunOptions = RunOptions(), cfg_scale: float = 7.0) -> None:
        self.params = params
        self.options = options
        self.cfg_scale = cfg_scale
        self.methods: tuple[Method, ...] = params.acting()
        self.kinds = {method.name: method.rows(cfg_scale, options) for method in self.methods}
        self.tracker = RowTracker()
        saliency = [method for method in self.methods if method.records_saliency]
        self._saliency_kind = self.kinds[saliency[0].name] if saliency else None
        self.recorder = SaliencyRecorder(self.tracker, params.smooth_mask) if saliency else None
        self.hooks: _Hooks | None = None
        self.states = {method.name: method.new_state() for method in self.methods}
        self.guided_steps = self.skipped_steps = 0
        self.failed_steps = 0  # this batch's steps whose guidance raised; never guided
        self.job_failed_steps = 0  # every batch's, with the first failure's message, for one console line
        self.first_failure: str | None = None
        self.mask_sum: torch.Tensor | None = None
        self.mask_steps = 0
        self._rows: dict[str, _Rows] | None = None
        self._term: torch.Tensor | None = None

    @property
    def kinds_needed(self) -> set[str]:
        """The row kinds (UNCOND, PROMPT) the acting methods guide or read the predictions of."""
        return set(self.kinds.values()).union(*(method.predictions for method in self.methods))

    @property
    def layer(self) -> AttentionLayer | None:
        """The guided layer of the hooked U-Net, resolved once when it was hooked."""
        return self.hooks.layer if self.hooks is not None else None

    def attach(self, unet: nn.Module, model: nn.Module | None = None, layer: AttentionLayer | None = None,
               track: TrackingHook = RowTrackingHook) -> None:
        """Hook `unet` and the sampler's `model` around it (moving the hooks if either changed since the last step).

        `layer` is the guided layer when the caller has already resolved it on this `unet`; `track` builds
        the row tracking hooks of the host (A1111's: rows in the order the model calls take them).
        """
        hooks = self.hooks
        if hooks is not None and hooks.unet is unet and hooks.model is model and hooks.installed:
            return
        self.detach()
        resolved = layer if layer is not None else find_layer(unet, self.params.layer)
        self.hooks = _Hooks(unet, model, resolved, self.tracker, self.recorder, track).install()

    def detach(self) -> None:
        """Remove the hooks, if any; idempotent."""
        if self.hooks is not None:
            self.hooks.remove()
            self.hooks = None

    def reset_batch(self) -> None:
        """Start counting, accumulating and every method's state afresh, as each batch of a job does."""
        self.guided_steps = self.skipped_steps = self.failed_steps = self.mask_steps = 0
        self.mask_sum = None
        self.states = {method.name: method.new_state() for method in self.methods}

    def mean_mask(self) -> torch.Tensor | None:
        """The blur mask averaged over the guided steps of the latest pass, (rows, 1, h, w); None if none."""
        if self.mask_sum is None or self.mask_steps == 0:
            return None
        return self.mask_sum / self.mask_steps

    def where_acted(self, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per image of the batch, the (h, w) share of guided steps in which SAG blurred each latent cell,
        confined to `keep` (inpainting's regenerated area) when given."""
        mean = self.mean_mask()
        if mean is None:
            return []
        if keep is not None and keep.shape[-2:] == mean.shape[-2:]:
            mean = mean * keep.to(mean)
        return [row[0].cpu() for row in mean]

    def in_window(self, progress: float) -> bool:
        """Whether a step at `progress` of its pass is to be guided at all."""
        return self.params.active and self.params.in_window(progress)

    def skip_step(self) -> None:
        """Count a step in the window that cannot be guided."""
        self._rows = self._term = None
        self.skipped_steps += 1

    def begin_step(self, x_in: torch.Tensor, sigma_in: torch.Tensor, row_sets: Mapping[str, RowSet],
                   progress: float) -> bool:
        """Note this step's row sets (one RowSet per kind in `kinds_needed`) of `x_in`; False if it is not guided."""
        self._rows = self._term = None
        if not self.in_window(progress):
            return False
        self._rows = {kind: _Rows(list(row_set.rows), x_in[list(row_set.rows)], sigma_in[list(row_set.rows)],
                                  row_set.cond) for kind, row_set in row_sets.items() if kind in self.kinds_needed}
        self.tracker.begin(x_in, {kind: rows.rows for kind, rows in self._rows.items()})
        if self.recorder is not None:
            self.recorder.begin(x_in, self._rows[self._saliency_kind].rows)
        return True

    def guide(self, x_out: torch.Tensor, space: OutputSpace, predict: Predict) -> None:
        """Compute the guidance term from the model output `x_out` of the step's rows."""
        rows, self._rows = self._rows, None
        if rows is None:
            return
        conds = self.tracker.finish()
        saliency = self.recorder.finish() if self.recorder is not None else None
        if conds is None or (self.recorder is not None and saliency is None):
            self.skipped_steps += 1
            return
        try:
            term, mask = self._terms(rows, conds, saliency, x_out, space, predict)
        except Exception as error:  # e.g. the extra pass out of memory; the webui would swallow it unseen
            self.failed_steps += 1
            self.job_failed_steps += 1
            if self.first_failure is None:  # the message only: a traceback would keep the step's tensors alive
                self.first_failure = f"{type(error).__name__}: {error}"
            return
        self._term = term
        self.guided_steps += 1
        if mask is not None:
            self._accumulate_mask(mask)

    def _step_of(self, method: Method, rows: dict[str, _Rows], conds: dict[str, Conditioning],
                 saliency: torch.Tensor | None, x_out: torch.Tensor, space: OutputSpace) -> Step:
        kind = self.kinds[method.name]
        own = rows[kind]
        cond = conds.get(kind)
        prompt, uncond = rows.get(PROMPT), rows.get(UNCOND)
        return Step(x=own.x, sigma=own.sigma, out=x_out[own.rows], cond=cond if cond is not None else own.cond,
                    space=space, settings=self.params, cfg_scale=self.cfg_scale, options=self.options,
                    saliency=saliency if method.records_saliency else None, size=tuple(own.x.shape[-2:]),
                    pred_cond=x_out[prompt.rows] if prompt is not None else None,
                    pred_uncond=x_out[uncond.rows] if uncond is not None else None, state=self.states[method.name])

    def _terms(self, rows: dict[str, _Rows], conds: dict[str, Conditioning], saliency: torch.Tensor | None,
               x_out: torch.Tensor, space: OutputSpace, predict: Predict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every acting method's term of this step, from one extra model call (see predict_together)."""
        steps = [self._step_of(method, rows, conds, saliency, x_out, space) for method in self.methods]
        extras = [method.extra(step) for method, step in zip(self.methods, steps)]
        parts = [extra for extra in extras if extra is not None and extra.prediction is None]
        perturbed = any(part.perturbation is not None for part in parts)
        predictions = iter(predict_together(parts, predict, self.layer if perturbed else None) if parts else ())
        term, mask = None, None
        for method, step, extra in zip(self.methods, steps, extras):
            prediction = None if extra is None else extra.prediction
            if extra is not None and prediction is None:
                prediction = next(predictions)
            method_term = method.term(step, extra, prediction)
            term = method_term if term is None else term + method_term
            if extra is not None and extra.mask is not None:
                mask = extra.mask
        return term, mask

    def take_term(self, keep: torch.Tensor | None = None) -> torch.Tensor | None:
        """This step's guidance term, once; `keep` (1 = regenerate) confines it, as inpainting needs."""
        term, self._term = self._term, None
        if term is None or keep is None:
            return term
        return term * keep

    def _accumulate_mask(self, mask: torch.Tensor) -> None:
        """Sum the step's mask; a pass at another size (hires fix) starts the sum afresh."""
        if self.mask_sum is None or self.mask_sum.shape != mask.shape:
            self.mask_sum = mask.detach().float().clone()
            self.mask_steps = 1
        else:
            self.mask_sum += mask
            self.mask_steps += 1
