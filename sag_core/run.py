"""Per-generation SAG state, driven by the three stages of a CFG denoiser call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .attention_hook import MiddleAttentionHook, SaliencyRecorder
from .conditioning import Conditioning
from .guidance import OutputSpace, sag_step
from .params import SagParams

Predict = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]


@dataclass
class _GuidedInputs:
    """The guided rows of a step: their indices among the step's rows, inputs and fallback conditioning."""

    rows: list[int]
    x: torch.Tensor
    sigma: torch.Tensor
    cond: Conditioning


class SagRun:
    """One generation's SAG: hook on the current U-Net, the step in flight, and what happened.

    Per denoiser call: `begin_step` (before the model), `guide` (after the model, before CFG is
    combined), `take_term` (after CFG). The guided rows are one per image: the uncond rows, or at CFG
    scale 1 and below the prompt's. A step whose guided rows were not all seen is skipped and counted.
    """

    def __init__(self, params: SagParams) -> None:
        self.params = params
        self.recorder = SaliencyRecorder()
        self.hook: MiddleAttentionHook | None = None
        self.guided_steps = 0
        self.skipped_steps = 0
        self.failed_steps = 0  # this batch's steps whose guidance raised; never guided
        self.job_failed_steps = 0  # every batch's, with the first failure's message, for one console line
        self.first_failure: str | None = None
        self.mask_sum: torch.Tensor | None = None
        self.mask_steps = 0
        self._inputs: _GuidedInputs | None = None
        self._term: torch.Tensor | None = None

    def attach(self, unet: nn.Module, model: nn.Module | None = None) -> None:
        """Hook `unet` and the sampler's `model` around it (moving the hooks if either changed since the last step)."""
        hook = self.hook
        if hook is not None and hook.unet is unet and hook.model is model and hook.installed:
            return
        self.detach()
        self.hook = MiddleAttentionHook(unet, self.recorder, model).install()

    def detach(self) -> None:
        """Remove the hook, if any; idempotent."""
        if self.hook is not None:
            self.hook.remove()
            self.hook = None

    def reset_batch(self) -> None:
        """Start counting and accumulating afresh, as each batch of a job does."""
        self.guided_steps = self.skipped_steps = self.failed_steps = self.mask_steps = 0
        self.mask_sum = None

    def mean_mask(self) -> torch.Tensor | None:
        """The blur mask averaged over the guided steps of the latest pass, (rows, 1, h, w); None if none."""
        if self.mask_sum is None or self.mask_steps == 0:
            return None
        return self.mask_sum / self.mask_steps

    def in_window(self, progress: float) -> bool:
        """Whether a step at `progress` of its pass is to be guided at all."""
        return self.params.active and self.params.in_window(progress)

    def skip_step(self) -> None:
        """Count a step in the window that cannot be guided."""
        self._inputs, self._term = None, None
        self.skipped_steps += 1

    def begin_step(self, x_in: torch.Tensor, sigma_in: torch.Tensor, rows: Sequence[int], cond: Conditioning,
                   progress: float) -> bool:
        """Note this step's guided `rows` of `x_in` (one per image) and their `cond` to fall back on.

        False if the step is not guided. `cond` is used only where no model call showed the
        conditioning the host really sent for those rows.
        """
        self._inputs, self._term = None, None
        if not self.in_window(progress):
            return False
        rows = list(rows)
        self._inputs = _GuidedInputs(rows, x_in[rows], sigma_in[rows], cond)
        self.recorder.begin(x_in, rows)
        return True

    def guide(self, x_out: torch.Tensor, space: OutputSpace, predict: Predict) -> None:
        """Compute the guidance term from the guided rows of the model output `x_out`."""
        inputs, self._inputs = self._inputs, None
        if inputs is None:
            return
        recorded = self.recorder.finish()
        if recorded is None:
            self.skipped_steps += 1
            return
        cond = recorded.cond if recorded.cond is not None else inputs.cond
        try:
            step = sag_step(
                inputs.x, inputs.sigma, x_out[inputs.rows], recorded.saliency, recorded.size,
                scale=self.params.scale, blur_sigma=self.params.blur_sigma, threshold=self.params.threshold,
                space=space, predict=lambda x: predict(x, inputs.sigma, cond))
        except Exception as error:  # e.g. the extra pass out of memory; the webui would swallow it unseen
            self.failed_steps += 1
            self.job_failed_steps += 1
            if self.first_failure is None:  # the message only: a traceback would keep the step's tensors alive
                self.first_failure = f"{type(error).__name__}: {error}"
            return
        self._term = step.term
        self.guided_steps += 1
        self._accumulate_mask(step.mask)

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
