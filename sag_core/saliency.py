"""Saliency of self-attention: how much attention each token receives (SAG paper, Sec. 4.1)."""

from __future__ import annotations

import torch

from .autocast import autocast_off

DEFAULT_CHUNK_BYTES = 16 * 2**20


def saliency_from_probs(probs: torch.Tensor, heads: int) -> torch.Tensor:
    """Attention received per key token, mean over heads: (B*heads, Nq, Nk) in ldm's (b h) layout -> (B, Nk).

    Each query row sums to 1, so the result sums to Nq and has mean 1 when Nq == Nk.
    """
    rows, queries, keys = probs.shape
    return probs.reshape(rows // heads, heads, queries, keys).mean(1).sum(1)


def query_chunk_size(heads: int, keys: int, budget_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """How many query rows of one image's (heads, chunk, keys) fp32 score block fit in the budget."""
    return max(1, budget_bytes // (heads * keys * 4))


def saliency_from_qk(q: torch.Tensor, k: torch.Tensor, scale: float, chunk: int | None = None) -> torch.Tensor:
    """Attention received per key token from queries (B, H, Nq, D) and keys (B, H, Nk, D) -> (B, Nk).

    Scores are computed in fp32 (autocast off: the webui's would lower the matmul to fp16), `chunk` query
    rows at a time, so the (H, Nq, Nk) map never exists at once.
    """
    batch, heads, queries, _ = q.shape
    keys = k.shape[2]
    chunk = chunk or query_chunk_size(heads, keys)
    q = q.float() * scale
    k = k.float()
    received = torch.zeros(batch, heads, keys, dtype=torch.float32, device=q.device)
    with autocast_off(q.device):
        for first in range(0, queries, chunk):
            scores = torch.matmul(q[:, :, first:first + chunk], k.transpose(-1, -2))
            received += scores.softmax(dim=-1).sum(dim=2)
    return received.mean(dim=1)


def saliency_mask(saliency: torch.Tensor, grid: tuple[int, int], size: tuple[int, int],
                  threshold: float) -> torch.Tensor:
    """Where saliency exceeds `threshold`, as a 0/1 map (B, 1, *size) upsampled (nearest) from the token grid."""
    batch = saliency.shape[0]
    mask = (saliency > threshold).reshape(batch, 1, *grid).float()
    return torch.nn.functional.interpolate(mask, size=tuple(size), mode="nearest")
