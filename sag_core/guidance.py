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
