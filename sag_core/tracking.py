"""Which rows of a denoiser step each U-Net call carries, and the conditioning the host sent for them.

The webui feeds the rows of one denoiser step to its model in order, in one call or in slices; a
tiler (Tiled Diffusion) cuts each model call into tiles of the latent and sends several tiles per
U-Net call, each with all the rows of that model call. Every method needs the conditioning the host
really sent for its rows (after any padding it applied once the CFG callbacks had run); SAG's
saliency also needs to know where each U-Net row sits. Forward pre-hooks only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import Conditioning, concat_rows, slice_rows
from .hooks import HookSet


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
class Placement:
    """Where the rows of one U-Net call sit: step row and (top, left) in the latent of each row; tile size."""

    rows: list[int]
    offsets: list[tuple[int, int]]
    size: tuple[int, int]
    seen: bool = False  # the saliency layer's attention ran in this U-Net call


class RowTracker:
    """Follows one denoiser step's rows through the model and U-Net calls; keeps the conditioning of some rows.

    `begin` names the step's row sets (a kind such as "uncond" -> step rows); `finish` gives each
    set's conditioning as the host sent it, or None when the step was lost (more rows than the step
    has, a tile that could not be placed, a saliency run that cannot be told apart).
    """

    def __init__(self) -> None:
        self.active = False
        self.lost = False
        self.placement: Placement | None = None
        self._x: torch.Tensor | None = None
        self._call: _ModelCall | None = None
        self._sets: dict[str, list[int]] = {}
        self._wanted: set[int] = set()
        self._conds: dict[int, tuple[_ModelCall, int]] = {}
        self._cursor = 0

    def begin(self, x_in: torch.Tensor, row_sets: Mapping[str, Sequence[int]]) -> None:
        """Expect the step's rows `x_in` (rows, C, H, W) to be fed to the model; keep the conditioning of `row_sets`."""
        self.active, self.lost = True, False
        self._x, self._call, self.placement = x_in, None, None
        self._sets = {kind: list(rows) for kind, rows in row_sets.items()}
        self._wanted = {row for rows in self._sets.values() for row in rows}
        self._conds, self._cursor = {}, 0

    @property
    def size(self) -> tuple[int, int]:
        """The (H, W) of the step's latent."""
        return tuple(self._x.shape[-2:])

    def finish(self) -> dict[str, Conditioning] | None:
        """Stop tracking: each row set's conditioning (None values when no model call was seen), or None if lost."""
        conds, lost = self._conds, self.lost
        self.active, self._x, self._call, self.placement, self._conds = False, None, None, None, {}
        if lost:
            return None
        if not conds:
            return {kind: None for kind in self._sets}
        if set(conds) != self._wanted:
            return None
        joined = {kind: _cond_of(rows, conds) for kind, rows in self._sets.items()}
        if any(cond is None and self._sets[kind] for kind, cond in joined.items()):
            return None
        return joined

    def observe_model_call(self, x: torch.Tensor, cond: Conditioning = None) -> None:
        """A call of the sampler's model with `cond`: it takes the next `x.shape[0]` rows of the step."""
        if not self.active:
            return
        self._call = _ModelCall(self._cursor, x, cond)
        if cond is not None:
            for row in range(self._cursor, self._cursor + x.shape[0]):
                if row in self._wanted:
                    self._conds[row] = (self._call, row - self._cursor)
        self._cursor += x.shape[0]
        if self._cursor > self._x.shape[0]:  # more rows than the step has: someone else's call too
            self.lost = True

    def observe_unet_input(self, x: torch.Tensor) -> None:
        """Place the rows of a U-Net call (its input `x`, latent channels first)."""
        if not self.active:
            return
        self.placement = None
        rows, size = x.shape[0], tuple(x.shape[-2:])
        call = self._call
        if call is None:  # no model call seen this step: the U-Net call is one, on the whole latent
            if size != tuple(self._x.shape[-2:]):
                self.lost = True
                return
            call = _ModelCall(self._cursor, self._x[self._cursor:self._cursor + rows])
            self._cursor += rows
        if size == tuple(call.x.shape[-2:]):
            if call.used + rows > call.x.shape[0]:
                self.lost = True
                return
            first, call.used = call.first + call.used, call.used + rows
            self.placement = Placement(list(range(first, first + rows)), [(0, 0)] * rows, size)
            return
        self.placement = self._place_tiles(x, call)

    def place(self, x: torch.Tensor, rows: Sequence[int]) -> None:
        """Place a U-Net call (its input `x`) whose rows the host names: `rows[i]` is the step row of x's row i.

        For a host that tells each call's rows (Forge's `cond_or_uncond`); a call on another latent size
        (a tile, an area conditioning) or of other rows than named loses the step.
        """
        if not self.active:
            return
        self.placement = None
        rows = list(rows)
        if len(rows) != x.shape[0] or tuple(x.shape[-2:]) != self.size or not set(rows) <= set(range(len(self._x))):
            self.lost = True
            return
        self.placement = Placement(rows, [(0, 0)] * len(rows), self.size)

    def _place_tiles(self, x: torch.Tensor, call: _ModelCall) -> Placement | None:
        per_tile = call.x.shape[0]
        if x.shape[0] % per_tile:
            self.lost = True
            return None
        rows, offsets = [], []
        for start in range(0, x.shape[0], per_tile):
            offset = locate_tile(x[start:start + per_tile, :call.x.shape[1]], call.x)
            if offset is None:
                self.lost = True
                return None
            rows += range(call.first, call.first + per_tile)
            offsets += [offset] * per_tile
        return Placement(rows, offsets, tuple(x.shape[-2:]))


def _cond_of(rows: Sequence[int], conds: dict[int, tuple[_ModelCall, int]]) -> Conditioning:
    """The rows' conditioning in their order, each row sliced from its model call (None if unjoinable)."""
    if not rows:
        return None
    return concat_rows([slice_rows(conds[row][0].cond, conds[row][1], conds[row][1] + 1) for row in rows])


class RowTrackingHook(HookSet):
    """Pre-hooks on the U-Net (where each call's rows sit) and, if given, the sampler's model (which rows and
    which conditioning each model call takes), feeding a RowTracker."""

    def __init__(self, unet: nn.Module, tracker: RowTracker, model: nn.Module | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.model = model
        self.tracker = tracker

    def _register(self) -> list[Any]:
        handles = [self.unet.register_forward_pre_hook(self._on_unet, with_kwargs=True)]
        if self.model is not None:
            handles.append(self.model.register_forward_pre_hook(self._on_model, with_kwargs=True))
        return handles

    def _on_model(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else next(iter(kwargs.values()))
        self.tracker.observe_model_call(x, kwargs.get("cond"))

    def _on_unet(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.tracker.observe_unet_input(args[0] if args else kwargs["x"])
