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


def sag_step(x: torch.Tensor, sigma: torch.Tensor, uncond_out: torch.Tensor, saliency: torch.Tensor,
             grid: tuple[int, int], *, scale: float, blur_sigma: float, threshold: float,
             space: OutputSpace, predict: Predict) -> SagStep:
    """Guidance for the uncond rows `x` whose model output was `uncond_out`; `predict` runs the uncond model."""
    x0 = space.to_x0(x, uncond_out, sigma)
    mask = saliency_mask(saliency, grid, x.shape[-2:], threshold)
    degraded_x0 = degrade_x0(x0, mask, blur_sigma)
    degraded_x = space.renoise(degraded_x0, x, uncond_out, sigma)
    prediction = predict(degraded_x)
    term = sag_guidance(space.target(degraded_x0, uncond_out), prediction, scale)
    return SagStep(term=term, mask=mask)


def rescale_to_cond(pred: torch.Tensor, pred_cond: torch.Tensor, factor: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2024, Sec. 3.4): pull each row's std back towards the cond prediction's.

    pred * std(cond) / std(pred) (per row, unbiased std over all other dims), mixed in by `factor`.
    """
    dims = list(range(1, pred.ndim))
    rescaled = pred * (pred_cond.std(dim=dims, keepdim=True) / pred.std(dim=dims, keepdim=True))
    return factor * rescaled + (1 - factor) * pred


def perturbed_guidance(pred_cond: torch.Tensor, pred_perturbed: torch.Tensor, scale: float, *,
                       pred_uncond: torch.Tensor | None = None, cfg_scale: float = 1.0,
                       guidance_rescale: float = 0.0) -> torch.Tensor:
    """PAG's and SEG's combined prediction: CFG plus scale * (cond - cond with perturbed attention).

    uncond + cfg_scale * (cond - uncond) + scale * (cond - perturbed), or without uncond (no CFG)
    cond + scale * (cond - perturbed) (both papers, and diffusers' PAG pipelines); then the optional
    guidance rescale towards cond. Weights summing to 1, the same in x0 and eps space (not the rescale).
    """
    base = pred_cond if pred_uncond is None else pred_uncond + cfg_scale * (pred_cond - pred_uncond)
    pred = base + scale * (pred_cond - pred_perturbed)
    if guidance_rescale > 0:
        pred = rescale_to_cond(pred, pred_cond, guidance_rescale)
    return pred
