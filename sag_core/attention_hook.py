"""Records self-attention saliency at a U-Net block (the middle one by default) through torch forward hooks.

The hooks never change what a module computes: the host keeps its own (SDP, xformers ...) forward
for the output. The hooks read the queries and keys the host's forward computed (through its own
`to_q`/`to_k` modules, so after whatever the host applied to the context, e.g. a hypernetwork), and
compute the attention scores of only the rows SAG guides, in query chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import Conditioning, concat_rows, slice_rows
from .hooks import HookSet
from .layers import MIDDLE, find_layer
from .saliency import saliency_from_qk


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


def locate_tile(tile: torch.Tensor, whole: torch.Tensor, tolerance: float = 1e-2) -> tuple[int, int] | None:
    """Where `tile` (rows, C, h, w) was cut from `whole` (rows, C, H, W), each row up to a positive scale.

    The U-Net sees the sampler's latent times c_in, cut into tiles by a tiler. The first row's first
    channel finds the one offset whose normalised cross-correlation is 1; every row and channel must
    then match there. None when no offset or several fit (a flat latent), or the rows do not match.
    """
    height, width = tile.shape[-2:]
    probe, image = tile[:1, :1].float(), whole[:1, :1].float()
    tiny = torch.finfo(torch.float32).tiny
    correlation = F.conv2d(image, probe)[0, 0]
    energy = F.conv2d(image * image, torch.ones_like(probe))[0, 0]
    ncc = correlation / (energy.clamp_min(tiny).sqrt() * probe.norm().clamp_min(tiny))
    found = (ncc > 1.0 - 1e-4).nonzero()
    if len(found) != 1:
        return None
    top, left = found[0].tolist()
    crop = whole[:, :, top:top + height, left:left + width].float()
    tile = tile.float()
    scale = (tile * crop).sum((1, 2, 3)) / (crop * crop).sum((1, 2, 3)).clamp_min(tiny)
    residual = (tile - scale.view(-1, 1, 1, 1) * crop).norm() / tile.norm().clamp_min(tiny)
    if bool((scale <= 0).any()) or residual > tolerance:
        return None
    return top, left


@dataclass
class _ModelCall:
    """One call of the sampler's model (the CFG denoiser's inner model): its first step row, input and conditioning."""

    first: int
    x: torch.Tensor
    cond: Conditioning = None
    used: int = 0


@dataclass
class _PendingAttention:
    """The guided rows of the hooked attention's run in flight, and their queries and keys once computed."""

    call_rows: list[int]
    index: torch.Tensor
    q: torch.Tensor | None = None
    k: torch.Tensor | None = None


@dataclass(frozen=True)
class Recorded:
    """What one denoiser step recorded for its guided rows and its conditioning-only rows.

    `saliency` (rows, H*W) at latent resolution over `size` (H, W), None without guided rows; `cond`
    the model conditioning the guided rows were sampled with and `other_cond` that of the
    conditioning-only rows (None when no model call was seen, e.g. no sampler model hooked).
    """

    saliency: torch.Tensor | None
    size: tuple[int, int]
    cond: Conditioning = None
    other_cond: Conditioning = None


@dataclass
class _Placement:
    """Where the rows of one U-Net call sit: step row and (top, left) in the latent of each row; tile size."""

    rows: list[int]
    offsets: list[tuple[int, int]]
    size: tuple[int, int]
    seen: bool = False  # the hooked attention ran in this U-Net call


class SaliencyRecorder:
    """Saliency of the guided rows over the U-Net calls of one denoiser step, over the whole latent.

    The guided rows are the step's B uncond rows (the last ones), or at CFG scale 1 and below the
    first cond row of each image. The webui feeds the rows of one denoiser step to its model in
    order, in one call or in slices. A tiler (Tiled Diffusion) cuts each model call into tiles of
    the latent and sends several tiles per U-Net call, each with all the rows of that model call.
    Each U-Net row is placed (its step row, and its tile's position found in the model call's
    input), its saliency stretched over its tile (nearest, or bilinear when `smooth`), and
    overlapping tiles averaged. A step in which a row could not be placed, or part of a guided
    row's latent was never seen, records nothing. The conditioning of each guided row, and of each
    conditioning-only row (the prompt rows PAG and SEG perturb), is kept from the model call that
    took it, as the host sent it (after any padding the host applied once the CFG callbacks had run).
    """

    def __init__(self, smooth: bool = False) -> None:
        self.mode = "bilinear" if smooth else "nearest"
        self._active = False
        self._grid: tuple[int, int] | None = None
        self._x: torch.Tensor | None = None
        self._call: _ModelCall | None = None
        self._placement: _Placement | None = None
        self._pending: _PendingAttention | None = None
        self._sum = self._count = torch.zeros(0)
        self._rows: dict[int, int] = {}
        self._cond_rows: dict[int, int] = {}
        self._conds: dict[int, tuple[_ModelCall, int]] = {}
        self._cursor = 0
        self._lost = False

    def begin(self, x_in: torch.Tensor, rows: Sequence[int], cond_rows: Sequence[int] = ()) -> None:
        """Expect the step's rows `x_in` (rows, C, H, W) to be fed to the model; record the step rows `rows`,
        and only the conditioning of `cond_rows`."""
        self._active, self._lost = True, False
        self._x, self._call, self._placement, self._pending = x_in, None, None, None
        self._rows = {row: position for position, row in enumerate(rows)}
        self._cond_rows = {row: position for position, row in enumerate(cond_rows)}
        self._conds, self._cursor = {}, 0
        canvas = (len(self._rows), *x_in.shape[-2:])
        self._sum = torch.zeros(canvas, dtype=torch.float32, device=x_in.device)
        self._count = torch.zeros(canvas, dtype=torch.float32, device=x_in.device)

    def finish(self) -> Recorded | None:
        """Stop recording: what the guided rows recorded, or None if incomplete."""
        conds = self._conds
        self._active, self._x, self._call, self._placement, self._pending = False, None, None, None, None
        self._conds = {}
        if self._lost or (self._rows and bool((self._count == 0).any())):
            return None
        cond = other_cond = None
        if conds:
            if set(conds) != set(self._rows) | set(self._cond_rows):
                return None
            cond, other_cond = self._cond_of(self._rows, conds), self._cond_of(self._cond_rows, conds)
            if (cond is None and self._rows) or (other_cond is None and self._cond_rows):
                return None
        size = tuple(self._sum.shape[-2:])
        saliency = (self._sum / self._count).flatten(1) if self._rows else None
        return Recorded(saliency, size, cond, other_cond)

    @staticmethod
    def _cond_of(rows: dict[int, int], conds: dict[int, tuple[_ModelCall, int]]) -> Conditioning:
        """The rows' conditioning in their order, each row sliced from its model call (None if unjoinable)."""
        if not rows:
            return None
        ordered = [conds[row] for row in sorted(rows, key=rows.get)]
        return concat_rows([slice_rows(call.cond, offset, offset + 1) for call, offset in ordered])

    def observe_model_call(self, x: torch.Tensor, cond: Conditioning = None) -> None:
        """A call of the sampler's model with `cond`: it takes the next `x.shape[0]` rows of the step."""
        if not self._active:
            return
        self._call = _ModelCall(self._cursor, x, cond)
        if cond is not None:
            for row in range(self._cursor, self._cursor + x.shape[0]):
                if row in self._rows or row in self._cond_rows:
                    self._conds[row] = (self._call, row - self._cursor)
        self._cursor += x.shape[0]
        if self._cursor > self._x.shape[0]:  # more rows than the step has: someone else's call too
            self._lost = True

    def observe_unet_input(self, x: torch.Tensor) -> None:
        """Place the rows of a U-Net call (its input `x`, latent channels first)."""
        if not self._active:
            return
        self._placement = None
        rows, size = x.shape[0], tuple(x.shape[-2:])
        call = self._call
        if call is None:  # no model call seen this step: the U-Net call is one, on the whole latent
            if size != tuple(self._x.shape[-2:]):
                self._lost = True
                return
            call = _ModelCall(self._cursor, self._x[self._cursor:self._cursor + rows])
            self._cursor += rows
        if size == tuple(call.x.shape[-2:]):
            if call.used + rows > call.x.shape[0]:
                self._lost = True
                return
            first, call.used = call.first + call.used, call.used + rows
            self._placement = _Placement(list(range(first, first + rows)), [(0, 0)] * rows, size)
            return
        self._placement = self._place_tiles(x, call)

    def _place_tiles(self, x: torch.Tensor, call: _ModelCall) -> _Placement | None:
        per_tile = call.x.shape[0]
        if x.shape[0] % per_tile:
            self._lost = True
            return None
        rows, offsets = [], []
        for start in range(0, x.shape[0], per_tile):
            offset = locate_tile(x[start:start + per_tile, :call.x.shape[1]], call.x)
            if offset is None:
                self._lost = True
                return None
            rows += range(call.first, call.first + per_tile)
            offsets += [offset] * per_tile
        return _Placement(rows, offsets, tuple(x.shape[-2:]))

    def observe_grid(self, height: int, width: int) -> None:
        self._grid = (height, width)

    def guided_rows_of_call(self, tokens: int) -> list[int]:
        """Which rows of the U-Net call in flight are guided rows, if its attention has `tokens` on the grid.

        The hooked attention runs once per U-Net call. A second run inside the same call (an extension
        running the blocks on another latent as well) leaves unknown which run is the image's, so the
        step records nothing.
        """
        placement, grid = self._placement, self._grid
        if not self._active or self._lost or placement is None or not self._rows:
            return []
        if placement.seen:
            self._lost = True
            return []
        placement.seen = True
        if grid is None or grid[0] * grid[1] != tokens:
            return []
        return [index for index, row in enumerate(placement.rows) if row in self._rows]

    def add(self, call_rows: list[int], saliency: torch.Tensor) -> None:
        """Spread the (len(call_rows), N) saliency of those rows of the call in flight over their tiles."""
        placement, grid = self._placement, self._grid
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
        saliency = saliency_from_qk(_split_heads(pending.q, heads), _split_heads(pending.k, heads), attention.scale)
        self._pending = None
        self.add(pending.call_rows, saliency)

    def end_attention(self) -> None:
        """The run is over: rows whose queries or keys were not seen stay unrecorded (the step then records nothing)."""
        self._pending = None


class MiddleAttentionHook(HookSet):
    """Hooks that feed a SaliencyRecorder; they only read, and are always removable.

    On the U-Net (where each call's rows sit), the named layer's transformer (grid size; the middle
    block's by default), its first attn1 (start and end of each run) and that attention's
    `to_q`/`to_k` (the queries and keys the host's forward computed), and, if given, the sampler's
    model (which rows, and which conditioning, each model call takes).
    """

    def __init__(self, unet: nn.Module, recorder: SaliencyRecorder, model: nn.Module | None = None,
                 layer: str = MIDDLE) -> None:
        super().__init__()
        self.unet = unet
        self.model = model
        self.layer = layer
        self.transformer, self.attention = find_self_attention(unet, layer)
        self.recorder = recorder

    def _register(self) -> list[Any]:
        attention = self.attention
        handles = [
            self.unet.register_forward_pre_hook(self._on_unet, with_kwargs=True),
            self.transformer.register_forward_pre_hook(self._on_transformer),
            attention.register_forward_pre_hook(self._on_attention, with_kwargs=True),
            attention.register_forward_hook(self._after_attention),
            attention.to_q.register_forward_hook(self._on_queries),
            attention.to_k.register_forward_hook(self._on_keys),
        ]
        if self.model is not None:
            handles.append(self.model.register_forward_pre_hook(self._on_model, with_kwargs=True))
        return handles

    def _on_model(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else next(iter(kwargs.values()))
        self.recorder.observe_model_call(x, kwargs.get("cond"))

    def _on_unet(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.recorder.observe_unet_input(args[0] if args else kwargs["x"])

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
