"""Per-generation SAG state, driven by the three stages of a CFG denoiser call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .attention_hook import MiddleAttentionHook, SaliencyRecorder
from .guidance import OutputSpace, sag_step
from .params import SagParams

PredictUncond = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], torch.Tensor]


@dataclass
class _UncondInputs:
    x: torch.Tensor
    sigma: torch.Tensor
    image_cond: torch.Tensor
    cond: Any


class SagRun:
    """One generation's SAG: hook on the current U-Net, the step in flight, and what happened.

    Per denoiser call: `begin_step` (before the model), `guide` (after the model, before CFG is
    combined), `apply` (after CFG). A step whose uncond rows were not all seen is skipped and counted.
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
        self._inputs: _UncondInputs | None = None
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

    def begin_step(self, x_in: torch.Tensor, sigma_in: torch.Tensor, image_cond_in: torch.Tensor,
                   uncond: Any, uncond_rows: int, progress: float) -> bool:
        """Note this step's uncond inputs (the last `uncond_rows` rows); False if the step is not guided."""
        self._inputs, self._term = None, None
        if not self.params.active or not self.params.in_window(progress):
            return False
        rows = slice(x_in.shape[0] - uncond_rows, None)
        self._inputs = _UncondInputs(x_in[rows], sigma_in[rows], image_cond_in[rows], uncond)
        self.recorder.begin(x_in, uncond_rows)
        return True

    def guide(self, x_out: torch.Tensor, space: OutputSpace, predict: PredictUncond) -> None:
        """Compute the guidance term from the uncond rows of the model output `x_out`."""
        inputs, self._inputs = self._inputs, None
        if inputs is None:
            return
        recorded = self.recorder.finish()
        if recorded is None:
            self.skipped_steps += 1
            return
        saliency, grid = recorded
        rows = inputs.x.shape[0]
        try:
            step = sag_step(
                inputs.x, inputs.sigma, x_out[-rows:], saliency, grid,
                scale=self.params.scale, blur_sigma=self.params.blur_sigma, threshold=self.params.threshold,
                space=space, predict=lambda x: predict(x, inputs.sigma, inputs.image_cond, inputs.cond))
        except Exception as error:  # e.g. the extra pass out of memory; the webui would swallow it unseen
            self.failed_steps += 1
            self.job_failed_steps += 1
            if self.first_failure is None:  # the message only: a traceback would keep the step's tensors alive
                self.first_failure = f"{type(error).__name__}: {error}"
            return
        self._term = step.term
        self.guided_steps += 1
        self._accumulate_mask(step.mask)

    def apply(self, denoised: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The CFG result plus this step's guidance; `keep` (1 = regenerate) confines it, as inpainting needs."""
        term, self._term = self._term, None
        if term is None:
            return denoised
        if keep is not None:
            term = term * keep
        return denoised + term.to(denoised.dtype)

    def _accumulate_mask(self, mask: torch.Tensor) -> None:
        """Sum the step's mask; a pass at another size (hires fix) starts the sum afresh."""
        if self.mask_sum is None or self.mask_sum.shape != mask.shape:
            self.mask_sum = mask.detach().float().clone()
            self.mask_steps = 1
        else:
            self.mask_sum += mask
            self.mask_steps += 1
