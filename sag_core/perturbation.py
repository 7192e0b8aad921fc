"""Hooks that perturb a self-attention for some batch rows only: what PAG's and SEG's perturbations run in.

A perturbation (sag_core/methods/pag.py, seg.py) names the projection it reads (`to_q` or `to_v`),
may replace that projection's output for its rows (`project`), and may replace the attention's
output for its rows from what it saw (`output`). The host keeps its own attention forward (SDP,
xformers ...): forward hooks read what that forward computed and change the perturbed rows only;
every other row is the host's own output, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn

from .hooks import HookSet
from .layers import AttentionLayer


class PerturbationError(RuntimeError):
    """The perturbed rows could not be computed from what the host's forward did."""


class Perturbation(Protocol):
    projection: str
    seen: str
    needs_grid: bool
    grid: tuple[int, int] | None

    def project(self, rows: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor | None:
        """The perturbed rows of the projection's output, or None to keep the host's."""

    def output(self, attention: nn.Module, seen: torch.Tensor) -> torch.Tensor | None:
        """The perturbed rows of the attention's output from the projection rows seen, or None to keep the host's."""


def token_grid(latent_size: tuple[int, int], factor: int) -> tuple[int, int]:
    """The (h, w) token grid of a block that sees the latent downsampled `factor` times (1, 2, 4, 8).

    ldm's stride-2 convolutions (padding 1) round each half up, so odd latents give ceil(side / factor).
    """
    height, width = latent_size
    return -(-height // factor), -(-width // factor)


@dataclass
class _Run:
    """One forward of the hooked attention: the perturbed rows' index, and their projection rows once seen."""

    x: torch.Tensor
    index: torch.Tensor
    seen: torch.Tensor | None = None


class PerturbedSelfAttention(HookSet):
    """Hooks that make a self-attention module's output for `rows` of each batch the perturbed one.

    For ldm's and sgm's `CrossAttention` / `MemoryEfficientCrossAttention` (anything with `to_q`,
    `to_v` and `to_out` whose forward calls them). The hooks are removed by `remove()` and on leaving
    the `with` block, whatever ended it (an exception, KeyboardInterrupt).

    With a `period`, a batch is read as whole repeats of `period` rows (a tiler sends several tiles of one
    call per batch) and `rows` are perturbed in each repeat. `grid` gives the token grid when the
    perturbation needs one and leaves it open.
    """

    def __init__(self, attention: nn.Module, rows: Sequence[int], perturbation: Perturbation,
                 period: int | None = None, grid: Callable[[], tuple[int, int] | None] | None = None) -> None:
        rows = list(rows)
        if len(set(rows)) != len(rows) or any(row < 0 for row in rows):
            raise ValueError(f"perturbed rows must be distinct and non-negative, got {rows}")
        if period is not None and rows and max(rows) >= period:
            raise ValueError(f"perturbed rows {rows} do not fit a period of {period} rows")
        self._run: _Run | None = None
        self.perturbed_runs = 0  # forwards of the attention that perturbed its rows since the hooks were made
        super().__init__()
        self.attention = attention
        self.rows = rows
        self.perturbation = perturbation
        self.period = period
        self._grid = grid

    def _register(self) -> list[Any]:
        attention = self.attention
        projection = getattr(attention, self.perturbation.projection)
        return [attention.register_forward_pre_hook(self._before, with_kwargs=True),
                attention.register_forward_hook(self._after), projection.register_forward_hook(self._on_projection)]

    def remove(self) -> None:
        """Remove every hook and forget a forward cut short; safe to call any number of times."""
        self._run = None
        super().remove()

    def _before(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._run = None
        if not self.rows:
            return
        x = args[0] if args else kwargs["x"]
        rows = self._rows_of_batch(x.shape[0])
        if self.perturbation.needs_grid:
            grid = self._current_grid()
            if grid is None:
                raise PerturbationError("the layer's token grid is unknown: its transformer did not run first")
            if x.shape[1] != grid[0] * grid[1]:
                raise PerturbationError(f"the attention runs on {x.shape[1]} tokens, not a {grid[0]} x {grid[1]} grid")
        self._run = _Run(x, torch.tensor(rows, dtype=torch.long, device=x.device))

    def _rows_of_batch(self, batch: int) -> list[int]:
        """The rows of a batch of `batch` rows to perturb: `rows`, in each repeat of `period` if there is one."""
        if self.period is None:
            if max(self.rows) >= batch:
                raise PerturbationError(f"perturbed rows {self.rows} are outside a batch of {batch}")
            return self.rows
        if batch % self.period:
            raise PerturbationError(f"a batch of {batch} rows is not whole repeats of the {self.period} rows sent")
        return [start + row for start in range(0, batch, self.period) for row in self.rows]

    def _current_grid(self) -> tuple[int, int] | None:
        grid = getattr(self.perturbation, "grid", None)
        return grid if grid is not None or self._grid is None else self._grid()

    def _on_projection(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        """The first projection output over the attention's own tokens in the run in flight: keep its rows and
        give the perturbation the chance to replace them."""
        run = self._run
        if run is None or output.shape[:2] != run.x.shape[:2] or run.seen is not None:
            return None
        run.seen = output.index_select(0, run.index)
        replaced = self.perturbation.project(run.seen, self._current_grid() if self.perturbation.needs_grid else None)
        return None if replaced is None else output.index_copy(0, run.index, replaced.to(output.dtype))

    def _after(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        run, self._run = self._run, None
        if run is None:
            return None
        self.perturbed_runs += 1
        perturbation = self.perturbation
        if run.seen is None:
            raise PerturbationError(
                f"the host's attention forward computed no {perturbation.seen} through {perturbation.projection}")
        perturbed = perturbation.output(module, run.seen)
        return None if perturbed is None else output.index_copy(0, run.index, perturbed.to(output.dtype))


class PerturbedLayer(HookSet):
    """One method's perturbation on every self-attention of a named layer, for its own rows of each batch.

    The layer's transformer input gives the token grid at each forward (tiles and hires passes change
    it); the rows are read in repeats of `period` (see PerturbedSelfAttention).
    """

    def __init__(self, layer: AttentionLayer, rows: Sequence[int], perturbation: Perturbation,
                 period: int | None = None) -> None:
        super().__init__()
        self.layer = layer
        self.grid: tuple[int, int] | None = None
        self.parts = [PerturbedSelfAttention(attention, rows, perturbation, period, lambda: self.grid)
                      for attention in layer.attentions]

    def _register(self) -> list[Any]:
        return [self.layer.transformer.register_forward_pre_hook(self._on_transformer),
                *(part.install() for part in self.parts)]

    def _on_transformer(self, module: nn.Module, args: tuple) -> None:
        self.grid = tuple(args[0].shape[-2:]) if args else None

    def check_ran(self) -> None:
        """Raise unless every attention of the layer ran its own forward, perturbed, since the hooks were made.

        A host patch that replaces the attention's forward (Forge's attn1_replace, used by its built-in
        SAG) would leave the rows unperturbed and the method's term silently zero.
        """
        if not all(part.perturbed_runs for part in self.parts):
            raise PerturbationError(f"the self-attention of layer {self.layer.name!r} did not run its own forward "
                                    "(another extension replaces it?): nothing was perturbed")
