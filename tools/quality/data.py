"""The procedural image set of the quality lab: one coloured shape or textured patch per 32x32 image.

Each image is drawn from signed distances with a one-pixel soft edge, so every class has crisp
edges (and two of them fine stripes or checks) that a blurry sample loses. Channels: RGB in [-1, 1]
and a fourth, derived one: the shape's coverage mask mapped to [-1, 1].
"""

from __future__ import annotations

import math

import torch

CLASSES = ("disc", "square", "triangle", "ring", "cross", "diamond", "stripes", "checks")
SIZE = 32
CHANNELS = 4
PALETTE = torch.tensor([  # black, white, red, green, blue, yellow, cyan, magenta at +-0.9
    [-0.9, -0.9, -0.9], [0.9, 0.9, 0.9], [0.9, -0.9, -0.9], [-0.9, 0.9, -0.9],
    [-0.9, -0.9, 0.9], [0.9, 0.9, -0.9], [-0.9, 0.9, 0.9], [0.9, -0.9, 0.9],
])
PERIOD = 4.0  # pixels per stripe or check pair


def _half_plane(dx: torch.Tensor, dy: torch.Tensor, nx: float, ny: float, offset: torch.Tensor) -> torch.Tensor:
    """Signed distance to the half-plane n . d <= offset (n a unit vector)."""
    return dx * nx + dy * ny - offset


def signed_distance(label: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside) of each image's shape, offsets (dx, dy) from its centre, size r."""
    radial = torch.sqrt(dx * dx + dy * dy)
    box = torch.maximum(dx.abs(), dy.abs())
    slant = 1 / math.sqrt(5)  # the triangle's sides: apex at (0, -r), base corners at (+-r, r)
    triangle = torch.maximum(_half_plane(dx, dy, 0.0, 1.0, r),
                             torch.maximum(_half_plane(dx, dy, 2 * slant, -slant, r * slant),
                                           _half_plane(dx, dy, -2 * slant, -slant, r * slant)))
    bar = 0.35 * r
    cross = torch.minimum(torch.maximum(dx.abs() - r, dy.abs() - bar), torch.maximum(dx.abs() - bar, dy.abs() - r))
    per_class = torch.stack([
        radial - r,                                 # disc
        box - 0.85 * r,                             # square
        triangle,                                   # triangle
        (radial - 0.7 * r).abs() - 0.3 * r,         # ring
        cross,                                      # cross
        (dx.abs() + dy.abs() - r) / math.sqrt(2),   # diamond
        box - 0.85 * r,                             # stripes (a square patch)
        box - 0.85 * r,                             # checks (a square patch)
    ])
    return per_class.gather(0, label.view(1, -1, 1, 1).expand(1, *dx.shape)).squeeze(0)


def pattern(label: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Share of the first foreground colour at each pixel: 1 for plain shapes, stripes or checks otherwise."""
    wave_y = torch.sin(2 * math.pi * (dy + phase) / PERIOD)
    wave_x = torch.sin(2 * math.pi * (dx + phase) / PERIOD)
    stripes = (0.5 + 1.5 * wave_y).clamp(0, 1)
    checks = (0.5 + 1.5 * wave_x * wave_y * 2).clamp(0, 1)
    plain = torch.ones_like(dx)
    label = label.view(-1, 1, 1)
    return torch.where(label == CLASSES.index("stripes"), stripes,
                       torch.where(label == CLASSES.index("checks"), checks, plain))


def draw(labels: torch.Tensor, generator: torch.Generator, jitter: float = 0.0) -> torch.Tensor:
    """Images (n, 4, 32, 32) of the given class labels, position, size, colours and phase drawn from `generator`.

    `jitter` moves each palette colour by up to that much per channel (clamped to +-0.9); distinct
    palette colours differ by 1.8 in some channel, so shapes keep a contrast of at least 1.8 - 2 * jitter.
    """
    n = labels.shape[0]
    centre = 11 + 10 * torch.rand(n, 2, generator=generator)
    r = 6 + 4 * torch.rand(n, generator=generator)
    phase = PERIOD * torch.rand(n, generator=generator)
    colours = PALETTE[torch.rand(n, len(PALETTE), generator=generator).argsort(dim=1)[:, :3]]  # bg, fg, fg2
    if jitter:
        colours = (colours + jitter * (2 * torch.rand(colours.shape, generator=generator) - 1)).clamp(-0.9, 0.9)
    axis = torch.arange(SIZE, dtype=torch.float32) + 0.5
    dy = (axis.view(1, SIZE, 1) - centre[:, 1].view(n, 1, 1)).expand(n, SIZE, SIZE)
    dx = (axis.view(1, 1, SIZE) - centre[:, 0].view(n, 1, 1)).expand(n, SIZE, SIZE)
    coverage = (0.5 - signed_distance(labels, dx, dy, r.view(n, 1, 1))).clamp(0, 1)
    share = pattern(labels, dx, dy, phase.view(n, 1, 1))
    background, first, second = (colours[:, i].view(n, 3, 1, 1) for i in range(3))
    inside = first * share.unsqueeze(1) + second * (1 - share.unsqueeze(1))
    rgb = background * (1 - coverage.unsqueeze(1)) + inside * coverage.unsqueeze(1)
    return torch.cat([rgb, coverage.unsqueeze(1) * 2 - 1], dim=1)


def balanced_labels(n: int) -> torch.Tensor:
    """0, 1, ..., 7, 0, 1, ...: every class equally often (to within one) in any n."""
    return torch.arange(n) % len(CLASSES)


def sample_set(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded set of n images with balanced labels."""
    generator = torch.Generator().manual_seed(seed)
    labels = balanced_labels(n)
    return draw(labels, generator), labels


def random_batch(n: int, generator: torch.Generator, jitter: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch: n images of uniformly drawn classes (colours jittered by up to `jitter`)."""
    labels = torch.randint(len(CLASSES), (n,), generator=generator)
    return draw(labels, generator, jitter), labels
