"""Perturbed-Attention Guidance (PAG): the prompt's prediction with the layer's self-attention map replaced by the
identity, pushed away from.

Ahn et al., "Self-Rectifying Diffusion Sampling with Perturbed-Attention Guidance", ECCV 2024 (arXiv 2403.17377).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..fields import Field
from .base import Extra, Method, Step


def pag_guidance(pred_cond: torch.Tensor, pred_perturbed: torch.Tensor, scale: float) -> torch.Tensor:
    """PAG's term: scale * (cond - cond with identity self-attention), added to the CFG result."""
    return (pred_cond - pred_perturbed) * scale


def identity_attention(attention: nn.Module, value: torch.Tensor) -> torch.Tensor:
    """PAG's perturbed output: the rows' own values (rows, N, inner) through the attention's output projection."""
    return attention.to_out(value)


@dataclass(frozen=True)
class IdentityAttention:
    """PAG's perturbation: the perturbed rows' attention map is the identity, so each token's output is its value.

    Read by PerturbedSelfAttention (sag_core/perturbation.py): it keeps the rows' `to_v` output, and the
    attention's output for those rows becomes `output(...)`.
    """

    projection = "to_v"
    seen = "values"
    needs_grid = False

    def project(self, rows: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor | None:
        return None

    def output(self, attention: nn.Module, seen: torch.Tensor) -> torch.Tensor | None:
        return identity_attention(attention, seen)


class PerturbedAttentionGuidance(Method):
    """PAG perturbs the first prompt row of each image in the chosen layer."""

    name = "pag"
    fields = (
        Field("pag_enabled", "Perturbed-Attention Guidance", None, False,
              hint="Switch Perturbed-Attention Guidance on: one extra prompt-branch pass per guided step with the "
                   "chosen layer's self-attention replaced by the identity, and the result pushed away from it."),
        Field("pag_scale", "PAG scale", "PAG scale", 3.0, 0.0, 10.0, 0.1, axis="PAG scale",
              hint="How hard PAG pushes away from the prediction with identity self-attention; the paper uses 3 "
                   "(with CFG) to 5 (without). 0 switches the effect off."),
    )

    def extra(self, step: Step) -> Extra:
        return Extra(step.x, step.sigma, step.cond, IdentityAttention())

    def term(self, step: Step, extra: Extra | None, prediction: torch.Tensor | None) -> torch.Tensor:
        return pag_guidance(step.out, prediction, step.settings.pag_scale)


PAG = PerturbedAttentionGuidance()
