"""The perturbed self-attention of Perturbed-Attention Guidance (PAG) and Smoothed Energy Guidance (SEG).

PAG (Ahn et al. 2024) replaces a self-attention map by the identity: each token attends only to itself,
so the attention's output is its value projection through its output projection. SEG (Hong 2024) blurs
the queries over the token grid with a Gaussian before the host computes attention; an infinite blur
gives every token the mean query.

The host keeps its own attention forward (SDP, xformers ...). Forward hooks read what that forward
computed (the values it passed through `to_v`, the queries out of `to_q`) and change the result of
the perturbed batch rows only: every other row is the host's own output, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import torch
from torch import nn

from .blur import gaussian_blur_2d
from .hooks import HookSet
from .layers import AttentionLayer

SEG_INFINITE_SIGMA = 9999.0
"""A SEG sigma at or above this is an infinite blur: the field's default and maximum, so the default is infinite."""


class PerturbationError(RuntimeError):
    """The perturbed rows could not be computed from what the host's forward did."""


def token_grid(latent_size: tuple[int, int], factor: int) -> tuple[int, int]:
    """The (h, w) token grid of a block that sees the latent downsampled `factor` times (1, 2, 4, 8).

    ldm's stride-2 convolutions (padding 1) round each half up, so odd latents give ceil(side / factor).
    """
    height, width = latent_size
    return -(-height // factor), -(-width // factor)


def identity_attention(attention: nn.Module, value: torch.Tensor) -> torch.Tensor:
    """PAG's perturbed output: the rows' own values (rows, N, inner) through the attention's output projection."""
    return attention.to_out(value)


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
class IdentityAttention:
    """PAG: the perturbed rows' attention map is the identity."""


@dataclass(frozen=True)
class SmoothedQueries:
    """SEG: the perturbed rows' queries are blurred by `sigma` tokens over the layer's (h, w) token grid.

    A `grid` of None is read at each forward from the layer's transformer input (see PerturbedLayer).
    """

    grid: tuple[int, int] | None
    sigma: float


Perturbation = Union[IdentityAttention, SmoothedQueries]


@dataclass
class _Run:
    """One forward of the hooked attention: the perturbed rows' index, and their values once seen."""

    x: torch.Tensor
    index: torch.Tensor
    value: torch.Tensor | None = None
    queries_seen: bool = False


class PerturbedSelfAttention(HookSet):
    """Hooks that make a self-attention module's output for `rows` of each batch the perturbed one.

    For ldm's and sgm's `CrossAttention` / `MemoryEfficientCrossAttention` (anything with `to_q`,
    `to_v` and `to_out` whose forward calls them). The hooks are removed by `remove()` and on leaving
    the `with` block, whatever ended it (an exception, KeyboardInterrupt).

    With a `period`, a batch is read as whole repeats of `period` rows (a tiler sends several tiles of one
    call per batch) and `rows` are perturbed in each repeat. `grid` gives SEG's token grid when the
    perturbation leaves it open.
    """

    def __init__(self, attention: nn.Module, rows: Sequence[int], perturbation: Perturbation,
                 period: int | None = None, grid: Callable[[], tuple[int, int] | None] | None = None) -> None:
        rows = list(rows)
        if len(set(rows)) != len(rows) or any(row < 0 for row in rows):
            raise ValueError(f"perturbed rows must be distinct and non-negative, got {rows}")
        if period is not None and rows and max(rows) >= period:
            raise ValueError(f"perturbed rows {rows} do not fit a period of {period} rows")
        self._run: _Run | None = None
        super().__init__()
        self.attention = attention
        self.rows = rows
        self.perturbation = perturbation
        self.period = period
        self._grid = grid

    def _register(self) -> list[Any]:
        attention = self.attention
        projection = (attention.to_q.register_forward_hook(self._on_queries)
                      if isinstance(self.perturbation, SmoothedQueries)
                      else attention.to_v.register_forward_hook(self._on_values))
        return [attention.register_forward_pre_hook(self._before, with_kwargs=True),
                attention.register_forward_hook(self._after), projection]

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
        if isinstance(self.perturbation, SmoothedQueries):
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
        grid = self.perturbation.grid
        return grid if grid is not None or self._grid is None else self._grid()

    def _own_projection(self, output: torch.Tensor) -> _Run | None:
        """The run in flight, if this projection output is its first one over the attention's own tokens."""
        run = self._run
        if run is None or output.shape[:2] != run.x.shape[:2]:
            return None
        return run

    def _on_values(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        run = self._own_projection(output)
        if run is not None and run.value is None:
            run.value = output.index_select(0, run.index)

    def _on_queries(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        run = self._own_projection(output)
        if run is None or run.queries_seen:
            return None
        run.queries_seen = True
        smoothed = smooth_queries(output.index_select(0, run.index), self._current_grid(), self.perturbation.sigma)
        return output.index_copy(0, run.index, smoothed.to(output.dtype))

    def _after(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        run, self._run = self._run, None
        if run is None:
            return None
        if isinstance(self.perturbation, SmoothedQueries):
            if not run.queries_seen:
                raise PerturbationError("the host's attention forward computed no queries through to_q")
            return None
        if run.value is None:
            raise PerturbationError("the host's attention forward computed no values through to_v")
        perturbed = identity_attention(module, run.value)
        return output.index_copy(0, run.index, perturbed.to(output.dtype))


class PerturbedLayer(HookSet):
    """One method's perturbation on every self-attention of a named layer, for its own rows of each batch.

    The layer's transformer input gives SEG its token grid at each forward (tiles and hires passes
    change it); the rows are read in repeats of `period` (see PerturbedSelfAttention).
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
