"""Records SAG's self-attention saliency at a U-Net layer (the middle block by default) through forward hooks.

The hooks never change what a module computes: the host keeps its own (SDP, xformers ...) forward
for the output. They read the queries and keys the host's forward computed (through its own
`to_q`/`to_k` modules, so after whatever the host applied to the context, e.g. a hypernetwork), and
compute the attention scores of only the rows SAG guides, in query chunks. Where each U-Net row
sits in the step comes from a RowTracker (sag_core/tracking.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import HookSet
from .layers import MIDDLE, AttentionLayer, find_layer
from .saliency import saliency_from_qk
from .tracking import RowTracker


def find_self_attention(unet: nn.Module, layer: str = MIDDLE) -> tuple[nn.Module, nn.Module]:
    """The named block's first spatial transformer and its first self-attention (ldm and sgm layouts).

    Raises LayerError (a LookupError) naming the layers the U-Net has when it has no such block.
    """
    found = find_layer(unet, layer)
    return found.transformer, found.attentions[0]


def find_middle_self_attention(unet: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The middle block's first spatial transformer and its first self-attention (SAG's default layer)."""
    return find_self_attention(unet, MIDDLE)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    batch, tokens, width = t.shape
    return t.reshape(batch, tokens, heads, width // heads).transpose(1, 2)


@dataclass
class _PendingAttention:
    """The guided rows of the hooked attention's run in flight, and their queries and keys once computed."""

    call_rows: list[int]
    index: torch.Tensor
    q: torch.Tensor | None = None
    k: torch.Tensor | None = None


class SaliencyRecorder:
    """Saliency of the guided rows over the U-Net calls of one denoiser step, over the whole latent.

    The guided rows are the step's rows SAG guides (one per image). Each U-Net row is placed by the
    tracker, its saliency stretched over its tile (nearest, or bilinear when `smooth`), and
    overlapping tiles averaged. A step in which part of a guided row's latent was never seen
    records nothing (`finish` gives None).
    """

    def __init__(self, tracker: RowTracker, smooth: bool = False) -> None:
        self.tracker = tracker
        self.mode = "bilinear" if smooth else "nearest"
        self._grid: tuple[int, int] | None = None
        self._pending: _PendingAttention | None = None
        self._rows: dict[int, int] = {}
        self._sum = self._count = torch.zeros(0)

    def begin(self, x_in: torch.Tensor, rows: Sequence[int]) -> None:
        """Record the saliency of the step rows `rows` of `x_in` (rows, C, H, W)."""
        self._pending = None
        self._rows = {row: position for position, row in enumerate(rows)}
        canvas = (len(self._rows), *x_in.shape[-2:])
        self._sum = torch.zeros(canvas, dtype=torch.float32, device=x_in.device)
        self._count = torch.zeros(canvas, dtype=torch.float32, device=x_in.device)

    def finish(self) -> torch.Tensor | None:
        """Stop recording: the guided rows' saliency (rows, H*W) at latent resolution, or None if incomplete."""
        self._pending = None
        rows, self._rows = self._rows, {}
        if not rows or bool((self._count == 0).any()):
            return None
        return (self._sum / self._count).flatten(1)

    def observe_grid(self, height: int, width: int) -> None:
        self._grid = (height, width)

    def guided_rows_of_call(self, tokens: int) -> list[int]:
        """Which rows of the U-Net call in flight are guided rows, if its attention has `tokens` on the grid.

        The hooked attention runs once per U-Net call. A second run inside the same call (an extension
        running the blocks on another latent as well) leaves unknown which run is the image's, so the
        step records nothing.
        """
        tracker, grid = self.tracker, self._grid
        placement = tracker.placement
        if not tracker.active or tracker.lost or placement is None or not self._rows:
            return []
        if placement.seen:
            tracker.lost = True
            return []
        placement.seen = True
        if grid is None or grid[0] * grid[1] != tokens:
            return []
        return [index for index, row in enumerate(placement.rows) if row in self._rows]

    def add(self, call_rows: list[int], saliency: torch.Tensor) -> None:
        """Spread the (len(call_rows), N) saliency of those rows of the call in flight over their tiles."""
        placement, grid = self.tracker.placement, self._grid
        stretched = F.interpolate(saliency.float().reshape(-1, 1, *grid), size=placement.size, mode=self.mode)
        height, width = placement.size
        for index, values in zip(call_rows, stretched[:, 0]):
            row = self._rows[placement.rows[index]]
            top, left = placement.offsets[index]
            self._sum[row, top:top + height, left:left + width] += values
            self._count[row, top:top + height, left:left + width] += 1.0

    def begin_attention(self, tokens: int) -> None:
        """The hooked self-attention starts a run on `tokens` tokens: expect the queries and keys of its guided rows."""
        call_rows = self.guided_rows_of_call(tokens)
        self._pending = None
        if call_rows:
            self._pending = _PendingAttention(call_rows, torch.tensor(call_rows))

    def observe_queries(self, q: torch.Tensor) -> None:
        """The queries (rows, N, width) the host's forward computed in the run in flight."""
        pending = self._pending
        if pending is not None and pending.q is None:
            pending.q = q.index_select(0, pending.index.to(q.device))

    def observe_keys(self, attention: nn.Module, k: torch.Tensor) -> None:
        """The keys the host's forward computed; with the queries, the guided rows' saliency is recorded."""
        pending = self._pending
        if pending is None or pending.q is None or pending.k is not None:
            return
        pending.k = k.index_select(0, pending.index.to(k.device))
        if pending.k.shape[1] != pending.q.shape[1]:  # not self-attention after all
            self._pending = None
            return
        heads = attention.heads
        scale = getattr(attention, "scale", None) or (pending.q.shape[-1] // heads) ** -0.5  # Forge's has none
        saliency = saliency_from_qk(_split_heads(pending.q, heads), _split_heads(pending.k, heads), scale)
        self._pending = None
        self.add(pending.call_rows, saliency)

    def end_attention(self) -> None:
        """The run is over: rows whose queries or keys were not seen stay unrecorded (the step then records nothing)."""
        self._pending = None


class SaliencyHook(HookSet):
    """Hooks that feed a SaliencyRecorder; they only read, and are always removable.

    On the layer's transformer (grid size), its first attn1 (start and end of each run) and that
    attention's `to_q`/`to_k` (the queries and keys the host's forward computed).
    """

    def __init__(self, layer: AttentionLayer, recorder: SaliencyRecorder) -> None:
        super().__init__()
        self.transformer, self.attention = layer.transformer, layer.attentions[0]
        self.recorder = recorder

    def _register(self) -> list[Any]:
        attention = self.attention
        return [
            self.transformer.register_forward_pre_hook(self._on_transformer),
            attention.register_forward_pre_hook(self._on_attention, with_kwargs=True),
            attention.register_forward_hook(self._after_attention),
            attention.to_q.register_forward_hook(self._on_queries),
            attention.to_k.register_forward_hook(self._on_keys),
        ]

    def _on_transformer(self, module: nn.Module, args: tuple) -> None:
        if args:
            self.recorder.observe_grid(*args[0].shape[-2:])

    def _on_attention(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs["x"]
        self.recorder.begin_attention(x.shape[1])

    def _after_attention(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.recorder.end_attention()

    def _on_queries(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.recorder.observe_queries(output)

    def _on_keys(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.recorder.observe_keys(self.attention, output)
