"""Per-generation guidance state (SAG, PAG, SEG), driven by the three stages of a CFG denoiser call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .attention_hook import MiddleAttentionHook, Recorded, SaliencyRecorder
from .conditioning import Conditioning
from .extra_pass import ExtraRows, predict_together
from .guidance import OutputSpace, degraded_input, perturbation_term, sag_guidance
from .layers import find_layer
from .params import PAG, SAG, SCALE, SEG, SagParams
from .perturbation import IdentityAttention, Perturbation, SmoothedQueries

Predict = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]
MaskFunction = Callable[[torch.Tensor, tuple[int, int], tuple[int, int], float], torch.Tensor]

RUN_OPTIONS_ATTR = "sag_run_options"
"""Attribute of a job object carrying its RunOptions (the lab's ablations set it; users never do)."""


@dataclass(frozen=True)
class RunOptions:
    """Choices beyond the user's settings, for experiments such as the lab's ablations.

    `sag_branch`: "auto" guides the uncond rows, or the prompt's at CFG scale 1 and below; "negative"
    always the uncond rows. `mask`: replaces `saliency_mask(saliency, grid, size, threshold)`.
    """

    sag_branch: str = "auto"
    mask: MaskFunction | None = None


@dataclass
class _GuidedInputs:
    """The guided rows of a step: their indices among the step's rows, inputs and fallback conditioning."""

    rows: list[int]
    x: torch.Tensor
    sigma: torch.Tensor
    cond: Conditioning


@dataclass(frozen=True)
class _Terms:
    """A guided step's result: the summed term of the methods and SAG's mask (None without SAG)."""

    term: torch.Tensor
    mask: torch.Tensor | None


class SagRun:
    """One generation's guidance: hook on the current U-Net, the step in flight, and what happened.

    Per denoiser call: `begin_step` (before the model), `guide` (after the model, before CFG is
    combined), `take_term` (after CFG). SAG's guided rows are one per image: the uncond rows, or at CFG
    scale 1 and below the prompt's; PAG and SEG guide the first prompt row of each image. A step whose
    guided rows were not all seen is skipped and counted.
    """

    def __init__(self, params: SagParams, options: RunOptions = RunOptions()) -> None:
        self.params = params
        self.options = options
        self.recorder = SaliencyRecorder(params.smooth_mask)
        self.hook: MiddleAttentionHook | None = None
        self.guided_steps = 0
        self.skipped_steps = 0
        self.failed_steps = 0  # this batch's steps whose guidance raised; never guided
        self.job_failed_steps = 0  # every batch's, with the first failure's message, for one console line
        self.first_failure: str | None = None
        self.mask_sum: torch.Tensor | None = None
        self.mask_steps = 0
        self._inputs: _GuidedInputs | None = None
        self._prompt: _GuidedInputs | None = None
        self._term: torch.Tensor | None = None

    def attach(self, unet: nn.Module, model: nn.Module | None = None) -> None:
        """Hook `unet` and the sampler's `model` around it (moving the hooks if either changed since the last step)."""
        hook = self.hook
        if hook is not None and hook.unet is unet and hook.model is model and hook.installed:
            return
        self.detach()
        self.hook = MiddleAttentionHook(unet, self.recorder, model, self.params.layer).install()

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
        self._inputs = self._prompt = self._term = None
        self.skipped_steps += 1

    def begin_step(self, x_in: torch.Tensor, sigma_in: torch.Tensor, rows: Sequence[int], cond: Conditioning,
                   progress: float, prompt_rows: Sequence[int] | None = None,
                   prompt_cond: Conditioning = None) -> bool:
        """Note this step's guided `rows` of `x_in` (one per image: SAG's) and their `cond` to fall back on,
        and the first prompt row of each image with its `prompt_cond` (PAG's and SEG's; `rows` if None).

        False if the step is not guided. A `cond` is used only where no model call showed the
        conditioning the host really sent for those rows.
        """
        self._inputs = self._prompt = None
        self._term = None
        if not self.in_window(progress):
            return False
        rows = list(rows)
        prompt_rows, prompt_cond = (rows, cond) if prompt_rows is None else (list(prompt_rows), prompt_cond)
        self._inputs = _GuidedInputs(rows, x_in[rows], sigma_in[rows], cond)
        self._prompt = _GuidedInputs(prompt_rows, x_in[prompt_rows], sigma_in[prompt_rows], prompt_cond)
        perturbed = self.params.acts(PAG) or self.params.acts(SEG)
        self.recorder.begin(x_in, rows if self.params.acts(SAG) else [], prompt_rows if perturbed else [])
        return True

    def guide(self, x_out: torch.Tensor, space: OutputSpace, predict: Predict) -> None:
        """Compute the guidance term from the guided rows of the model output `x_out`."""
        inputs, prompt, self._inputs, self._prompt = self._inputs, self._prompt, None, None
        if inputs is None:
            return
        recorded = self.recorder.finish()
        if recorded is None:
            self.skipped_steps += 1
            return
        try:
            terms = self._terms(inputs, prompt, recorded, x_out, space, predict)
        except Exception as error:  # e.g. the extra pass out of memory; the webui would swallow it unseen
            self.failed_steps += 1
            self.job_failed_steps += 1
            if self.first_failure is None:  # the message only: a traceback would keep the step's tensors alive
                self.first_failure = f"{type(error).__name__}: {error}"
            return
        self._term = terms.term
        self.guided_steps += 1
        if terms.mask is not None:
            self._accumulate_mask(terms.mask)

    def _perturbations(self) -> list[tuple[str, Perturbation]]:
        """PAG's and SEG's perturbations, for those of them that act, in that order."""
        params = self.params
        methods = [(PAG, IdentityAttention()), (SEG, SmoothedQueries(None, params.seg_blur_sigma))]
        return [(method, perturbation) for method, perturbation in methods if params.acts(method)]

    def _terms(self, inputs: _GuidedInputs, prompt: _GuidedInputs, recorded: Recorded, x_out: torch.Tensor,
               space: OutputSpace, predict: Predict) -> _Terms:
        """Every method's term of this step, from one extra model call (see predict_together).

        Where SAG's degradation leaves its input bit for bit as it was (blur sigma 0, nothing above the
        threshold), the model's prediction for it is the host's own uncond prediction of this step, so it is
        taken from there rather than asked again: a call of other rows would round differently on CPU
        kernels that block by batch size (the webui batches prompt and negative rows together with its
        prompt padding on), and SAG at no blur would not be CFG bit for bit.
        """
        params, parts, degraded, sag_prediction = self.params, [], None, None
        if params.acts(SAG):
            degraded = degraded_input(inputs.x, inputs.sigma, x_out[inputs.rows], recorded.saliency, recorded.size,
                                      blur_sigma=params.blur_sigma, threshold=params.threshold, space=space,
                                      mask_function=self.options.mask)
            if torch.equal(degraded.x, inputs.x):
                sag_prediction = x_out[inputs.rows]
            else:
                parts.append(ExtraRows(degraded.x, inputs.sigma, _either(recorded.cond, inputs.cond)))
        perturbations = self._perturbations()
        prompt_cond = _either(recorded.other_cond, prompt.cond)
        parts += [ExtraRows(prompt.x, prompt.sigma, prompt_cond, perturbation) for _, perturbation in perturbations]
        layer = find_layer(self.hook.unet, params.layer) if perturbations and self.hook is not None else None
        predictions = iter(predict_together(parts, predict, layer) if parts else ())
        term = 0
        if degraded is not None:
            prediction = next(predictions) if sag_prediction is None else sag_prediction
            term = sag_guidance(degraded.target, prediction, params.scale)
        pred_cond = x_out[prompt.rows]
        for method, _ in perturbations:
            term = term + perturbation_term(pred_cond, next(predictions), getattr(params, SCALE[method]))
        return _Terms(term, degraded.mask if degraded is not None else None)

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


def _either(recorded: Conditioning, fallback: Conditioning) -> Conditioning:
    """The conditioning the host was seen to send, else the one the CFG callback showed."""
    return recorded if recorded is not None else fallback
