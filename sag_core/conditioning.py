"""Rows of a model conditioning as a CFG denoiser hands it to its model.

A conditioning is what the denoiser passes as `cond=`: a dict such as {"c_crossattn": [tensor],
"c_concat": [tensor]}, SDXL's {"crossattn": tensor, "vector": tensor, "c_concat": [tensor]}, or
{"c_crossattn": [tensor], "c_adm": tensor}; its tensors have one row per latent row.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

Conditioning = Any


def slice_rows(cond: Conditioning, start: int, stop: int) -> Conditioning:
    """Rows start..stop of every tensor in `cond` (dicts and lists are walked; other values are kept)."""
    if isinstance(cond, torch.Tensor):
        return cond[start:stop]
    if isinstance(cond, dict):
        return {key: slice_rows(value, start, stop) for key, value in cond.items()}
    if isinstance(cond, (list, tuple)):
        return type(cond)(slice_rows(value, start, stop) for value in cond)
    return cond


def concat_rows(pieces: Sequence[Conditioning]) -> Conditioning:
    """The pieces joined along rows; None when their layouts or tensor shapes beyond the rows differ."""
    first = pieces[0]
    if len(pieces) == 1:
        return first
    if isinstance(first, torch.Tensor):
        if not all(isinstance(p, torch.Tensor) and p.shape[1:] == first.shape[1:] for p in pieces):
            return None
        return torch.cat(list(pieces))
    if isinstance(first, dict):
        if not all(isinstance(p, dict) and p.keys() == first.keys() for p in pieces):
            return None
        joined = {key: concat_rows([p[key] for p in pieces]) for key in first}
        return None if any(value is None and first[key] is not None for key, value in joined.items()) else joined
    if isinstance(first, (list, tuple)):
        if not all(isinstance(p, (list, tuple)) and len(p) == len(first) for p in pieces):
            return None
        joined = [concat_rows([p[i] for p in pieces]) for i in range(len(first))]
        return None if any(value is None for value in joined) else type(first)(joined)
    return first if all(p is first for p in pieces) else None


def take_rows(cond: Conditioning, rows: Sequence[int]) -> Conditioning:
    """The given rows of `cond`, in that order."""
    return concat_rows([slice_rows(cond, row, row + 1) for row in rows])


def rows_of(cond: Conditioning) -> int:
    """Batch rows of a conditioning: a tensor, or SDXL's dict (DictWithShape) of tensors."""
    if hasattr(cond, "shape"):
        return cond.shape[0]
    return next(iter(cond.values())).shape[0]
