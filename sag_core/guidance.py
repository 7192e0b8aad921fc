"""One SAG step: degrade the uncond x0 where attention is concentrated, predict again, push away."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch

from .blur import degrade_x0
from .saliency import saliency_mask
from .spaces import EpsSpace, X0Space

OutputSpace = Union[X0Space, EpsSpace]
Predict = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SagStep:
    """What one guided step produced: the term to add after CFG and the mask it used (B, 1, H, W)."""

    term: torch.Tensor
    mask: torch.Tensor


def sag_guidance(target: torch.Tensor, degraded_prediction: torch.Tensor, scale: float) -> torch.Tensor:
    """SAG's guidance term: scale * (target - prediction on the degraded input) (paper Eq. 11)."""
    return (target - degraded_prediction) * scale


@dataclass(frozen=True)
class DegradedInput:
    """SAG's extra pass before it runs: the degraded input, what its prediction is compared with, the mask."""

    x: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor


def degraded_input(x: torch.Tensor, sigma: torch.Tensor, uncond_out: torch.Tensor, saliency: torch.Tensor,
                   grid: tuple[int, int], *, blur_sigma: float, threshold: float,
                   space: OutputSpace, mask_function: Callable | None = None) -> DegradedInput:
    """The uncond rows `x` (model output `uncond_out`) with x0 blurred where saliency exceeds `threshold`, re-noised.

    `mask_function` replaces `saliency_mask` (the lab's mask ablations).
    """
    x0 = space.to_x0(x, uncond_out, sigma)
    mask = (mask_function or saliency_mask)(saliency, grid, x.shape[-2:], threshold)
    degraded_x0 = degrade_x0(x0, mask, blur_sigma)
    degraded_x = space.renoise(degraded_x0, x, uncond_out, sigma)
    return DegradedInput(degraded_x, space.target(degraded_x0, uncond_out), mask)


def sag_step(x: torch.Tensor, sigma: torch.Tensor, uncond_out: torch.Tensor, saliency: torch.Tensor,
             grid: tuple[int, int], *, scale: float, blur_sigma: float, threshold: float,
             space: OutputSpace, predict: Predict) -> SagStep:
    """Guidance for the uncond rows `x` whose model output was `uncond_out`; `predict` runs the uncond model."""
    degraded = degraded_input(x, sigma, uncond_out, saliency, grid, blur_sigma=blur_sigma, threshold=threshold,
                              space=space)
    term = sag_guidance(degraded.target, predict(degraded.x), scale)
    return SagStep(term=term, mask=degraded.mask)


def rescale_to_cond(pred: torch.Tensor, pred_cond: torch.Tensor, factor: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2024, Sec. 3.4): pull each row's std back towards the cond prediction's.

    pred * std(cond) / std(pred) (per row, unbiased std over all other dims), mixed in by `factor`.
    """
    dims = list(range(1, pred.ndim))
    rescaled = pred * (pred_cond.std(dim=dims, keepdim=True) / pred.std(dim=dims, keepdim=True))
    return factor * rescaled + (1 - factor) * pred


def perturbation_term(pred_cond: torch.Tensor, pred_perturbed: torch.Tensor, scale: float) -> torch.Tensor:
    """PAG's and SEG's term: scale * (cond - cond with perturbed attention), added to the CFG result."""
    return (pred_cond - pred_perturbed) * scale


def perturbed_guidance(pred_cond: torch.Tensor, pred_perturbed: torch.Tensor, scale: float, *,
                       pred_uncond: torch.Tensor | None = None, cfg_scale: float = 1.0,
                       guidance_rescale: float = 0.0) -> torch.Tensor:
    """PAG's and SEG's combined prediction: CFG plus scale * (cond - cond with perturbed attention).

    uncond + cfg_scale * (cond - uncond) + scale * (cond - perturbed), or without uncond (no CFG)
    cond + scale * (cond - perturbed) (both papers, and diffusers' PAG pipelines); then the optional
    guidance rescale towards cond. Weights summing to 1, the same in x0 and eps space (not the rescale).
    """
    base = pred_cond if pred_uncond is None else pred_uncond + cfg_scale * (pred_cond - pred_uncond)
    pred = base + perturbation_term(pred_cond, pred_perturbed, scale)
    if guidance_rescale > 0:
        pred = rescale_to_cond(pred, pred_cond, guidance_rescale)
    return pred
