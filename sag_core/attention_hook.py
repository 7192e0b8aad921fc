"""Records self-attention saliency at the U-Net middle block through torch forward pre-hooks.

The hooks never change what the module computes: the host keeps its own (SDP, xformers ...) forward
for the output, and the hook recomputes only the attention scores of the uncond rows it needs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .saliency import saliency_from_qk


def find_middle_self_attention(unet: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The middle block's first spatial transformer and its first self-attention (ldm and sgm layouts)."""
    for block in getattr(unet, "middle_block", ()):
        transformer_blocks = getattr(block, "transformer_blocks", None)
        if transformer_blocks is not None and len(transformer_blocks) > 0:
            return block, transformer_blocks[0].attn1
    raise LookupError(
        "this U-Net has no self-attention in its middle block (for example SSD-1B or an MMDiT model); "
        "Self-Attention Guidance needs one")


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    batch, tokens, width = t.shape
    return t.reshape(batch, tokens, heads, width // heads).transpose(1, 2)


class SaliencyRecorder:
    """Saliency of the uncond rows over the U-Net calls of one denoiser step.

    The webui feeds the rows of one denoiser step to the U-Net in order, in one call or in slices,
    with the B uncond rows last; a running row cursor tells which rows of each call are uncond.
    """

    def __init__(self) -> None:
        self._active = False
        self._grid: tuple[int, int] | None = None
        self._parts: dict[int, torch.Tensor] = {}
        self._grids: set[tuple[int, int]] = set()
        self._total = self._first_uncond = self._cursor = 0

    def begin(self, total_rows: int, uncond_rows: int) -> None:
        """Expect `total_rows` rows in this step, of which the last `uncond_rows` are uncond."""
        self._active = True
        self._total, self._first_uncond, self._cursor = total_rows, total_rows - uncond_rows, 0
        self._parts, self._grids = {}, set()

    def finish(self) -> tuple[torch.Tensor, tuple[int, int]] | None:
        """Stop recording; the (B, N) saliency and its grid, or None if some uncond row was never seen."""
        self._active = False
        expected = self._total - self._first_uncond
        covered = sum(part.shape[0] for part in self._parts.values())
        if expected == 0 or covered != expected or len(self._grids) != 1:
            return None
        saliency = torch.cat([self._parts[offset] for offset in sorted(self._parts)])
        return saliency, next(iter(self._grids))

    def observe_grid(self, height: int, width: int) -> None:
        self._grid = (height, width)

    def observe_call(self, attention: nn.Module, x: torch.Tensor, context: torch.Tensor | None) -> None:
        """Account for one call of the hooked self-attention; record saliency for its uncond rows."""
        if not self._active:
            return
        first, count = self._cursor, x.shape[0]
        self._cursor += count
        low, high = max(first, self._first_uncond), min(first + count, self._total)
        grid = self._grid
        if low >= high or grid is None or grid[0] * grid[1] != x.shape[1]:
            return
        rows = x[low - first:high - first]
        keys = rows if context is None else context[low - first:high - first]
        if keys.shape[1] != rows.shape[1]:
            return
        heads = attention.heads
        q = _split_heads(attention.to_q(rows), heads)
        k = _split_heads(attention.to_k(keys), heads)
        self._parts[low - self._first_uncond] = saliency_from_qk(q, k, attention.scale)
        self._grids.add(grid)


class MiddleAttentionHook:
    """Pre-hooks on the middle transformer (grid size) and its first attn1 (saliency); always removable."""

    def __init__(self, unet: nn.Module, recorder: SaliencyRecorder) -> None:
        self.unet = unet
        self.transformer, self.attention = find_middle_self_attention(unet)
        self.recorder = recorder
        self._handles: list[Any] = []

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    def install(self) -> "MiddleAttentionHook":
        self.remove()
        self._handles = [
            self.transformer.register_forward_pre_hook(self._on_transformer),
            self.attention.register_forward_pre_hook(self._on_attention, with_kwargs=True),
        ]
        return self

    def remove(self) -> None:
        """Remove both hooks; safe to call any number of times."""
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def __enter__(self) -> "MiddleAttentionHook":
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def _on_transformer(self, module: nn.Module, args: tuple) -> None:
        if args:
            self.recorder.observe_grid(*args[0].shape[-2:])

    def _on_attention(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs["x"]
        context = kwargs.get("context", args[1] if len(args) > 1 else None)
        self.recorder.observe_call(module, x, context)
