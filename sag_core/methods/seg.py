"""Smoothed Energy Guidance (SEG): the prompt's prediction with the layer's queries blurred over the image, pushed
away from.

Hong, "Smoothed Energy Guidance: Guiding Diffusion Models with Reduced Energy Curvature of Attention",
NeurIPS 2024 (arXiv 2408.00760).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..blur import gaussian_blur_2d
from ..fields import Field
from .base import Extra, Method, Step

SEG_INFINITE_SIGMA = 9999.0
"""A SEG sigma at or above this is an infinite blur: the field's default and maximum, so the default is infinite."""


def seg_guidance(pred_cond: torch.Tensor, pred_smoothed: torch.Tensor, scale: float) -> torch.Tensor:
    """SEG's term: scale * (cond - cond with smoothed attention energy), added to the CFG result."""
    return (pred_cond - pred_smoothed) * scale


def seg_kernel_size(sigma: float, side: int) -> int:
    """SEG's odd kernel size along a grid side: ceil(6 sigma) made odd, at most the side (side + 1 if even)."""
    size = math.ceil(6 * sigma)
    size += 1 - size % 2
    return min(size, side if side % 2 else side + 1)


def smooth_queries(q: torch.Tensor, grid: tuple[int, int], sigma: float) -> torch.Tensor:
    """SEG's perturbed queries: each channel of q (rows, h*w, C) blurred over the (h, w) token grid.

    Reflect-padded Gaussian of `sigma` tokens; from SEG_INFINITE_SIGMA on every token gets the mean query.
    """
    height, width = grid
    rows, tokens, channels = q.shape
    if tokens != height * width:
        raise ValueError(f"{tokens} query tokens do not fill a {height} x {width} token grid")
    if sigma >= SEG_INFINITE_SIGMA:
        return q.mean(dim=1, keepdim=True).expand_as(q).contiguous()
    image = q.transpose(1, 2).reshape(rows, channels, height, width)
    sizes = (seg_kernel_size(sigma, height), seg_kernel_size(sigma, width))
    blurred = gaussian_blur_2d(image, sigma, sizes)
    return blurred.reshape(rows, channels, tokens).transpose(1, 2)


@dataclass(frozen=True)
class SmoothedQueries:
    """SEG's perturbation: the perturbed rows' queries are blurred by `sigma` tokens over the layer's (h, w) grid.

    A `grid` of None is read at each forward from the layer's transformer input (see PerturbedLayer).
    """

    grid: tuple[int, int] | None
    sigma: float
    projection = "to_q"
    seen = "queries"
    needs_grid = True

    def project(self, rows: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor | None:
        return smooth_queries(rows, grid, self.sigma)

    def output(self, attention: nn.Module, seen: torch.Tensor) -> torch.Tensor | None:
        return None


class SmoothedEnergyGuidance(Method):
    """SEG blurs the queries of the first prompt row of each image in the chosen layer."""

    name = "seg"
    fields = (
        Field("seg_enabled", "Smoothed Energy Guidance", None, False,
              hint="Switch Smoothed Energy Guidance on: one extra prompt-branch pass per guided step with the "
                   "chosen layer's queries blurred over the image, and the result pushed away from it."),
        Field("seg_scale", "SEG scale", "SEG scale", 3.0, 0.0, 10.0, 0.1, axis="SEG scale",
              hint="How hard SEG pushes away from the prediction with blurred attention; the paper uses 3. "
                   "0 switches the effect off."),
        Field("seg_blur_sigma", "SEG blur sigma", "SEG blur sigma", 9999.0, 0.0, 9999.0, 0.5, axis="SEG blur sigma",
              widget="number",
              hint="Gaussian blur of the queries, in tokens of the chosen layer; 9999 means infinite (every token "
                   "attends alike), the paper's default. Smaller values perturb less."),
    )

    def extra(self, step: Step) -> Extra:
        return Extra(step.x, step.sigma, step.cond, SmoothedQueries(None, step.settings.seg_blur_sigma))

    def term(self, step: Step, extra: Extra | None, prediction: torch.Tensor | None) -> torch.Tensor:
        return seg_guidance(step.out, prediction, step.settings.seg_scale)


SEG = SmoothedEnergyGuidance()
