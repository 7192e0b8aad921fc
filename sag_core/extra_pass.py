"""The extra model pass of a guided step: every method's rows (its `Extra`) in one batched call, each perturbed alone.

SAG's rows carry the degraded input and need no perturbation; PAG's and SEG's carry the prompt rows
and perturb the chosen layer's self-attention for their own rows only. When the methods'
conditionings cannot all be joined (prompt and negative prompt of different lengths with the host's
padding off; on Forge, where each kind of row goes through the host's batch function on its own),
the methods whose conditionings join share a call: PAG's and SEG's prompt rows, SAG's apart.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Callable, Sequence

import torch

from .conditioning import Conditioning, concat_rows
from .layers import AttentionLayer
from .methods.base import Extra
from .perturbation import PerturbedLayer

Predict = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]


def _call(parts: Sequence[Extra], cond: Conditioning, predict: Predict,
          layer: AttentionLayer | None) -> list[torch.Tensor]:
    """One model call on the parts' rows stacked in order, each part's perturbation on its rows; split back."""
    sizes = [part.x.shape[0] for part in parts]
    total, first = sum(sizes), 0
    with ExitStack() as hooks:
        perturbed = []
        for part, size in zip(parts, sizes):
            if part.perturbation is not None:
                if layer is None:
                    raise ValueError("a perturbed pass needs the layer to perturb")
                perturbed.append(hooks.enter_context(
                    PerturbedLayer(layer, range(first, first + size), part.perturbation, total)))
            first += size
        out = predict(torch.cat([part.x for part in parts]), torch.cat([part.sigma for part in parts]), cond)
        for hook in perturbed:
            hook.check_ran()
    return list(out.split(sizes))


def joinable_groups(conds: Sequence[Conditioning]) -> list[list[int]]:
    """The conditionings' indices grouped so that each group's join: each joins the first group it fits."""
    groups: list[list[int]] = []
    for index, cond in enumerate(conds):
        group = next((group for group in groups if concat_rows([conds[i] for i in group] + [cond]) is not None), None)
        if group is None:
            groups.append([index])
        else:
            group.append(index)
    return groups


def predict_together(parts: Sequence[Extra], predict: Predict,
                     layer: AttentionLayer | None = None) -> list[torch.Tensor]:
    """Each part's prediction: one call for all where their conditionings join, else one call per joinable group."""
    conds = [part.cond for part in parts]
    if all(cond is None for cond in conds):
        return _call(parts, None, predict, layer)
    predictions: list[torch.Tensor] = [torch.empty(0)] * len(parts)
    for group in joinable_groups(conds):
        members = [parts[i] for i in group]
        for i, prediction in zip(group, _call(members, concat_rows([conds[i] for i in group]), predict, layer)):
            predictions[i] = prediction
    return predictions
