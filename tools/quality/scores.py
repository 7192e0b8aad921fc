"""Scores of the lab: distances on classifier features, a patch judge that is no classifier, image statistics."""

from __future__ import annotations

import numpy as np
import torch

CONFIDENT = 0.9


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding-error eigenvalues dropped)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (n, d) and b (m, d), as FID computes it.

    tr(sqrt(S_a S_b)) is taken as tr(sqrt(S_a^1/2 S_b S_a^1/2)), whose argument is symmetric, so it
    is exact and real where scipy's general sqrtm can return complex rounding noise.
    """
    a, b = a.astype(np.float64), b.astype(np.float64)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


@torch.no_grad()
def classify(classifier: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, d) and class probabilities (n, classes) of images (clamped to [-1, 1] as a decoder would)."""
    features, probs = [], []
    for first in range(0, len(images), batch):
        x = images[first:first + batch].clamp(-1, 1)
        f = classifier.features(x)
        features.append(f)
        probs.append(classifier.head(f).softmax(-1))
    return torch.cat(features).numpy(), torch.cat(probs).numpy()


def recognised(probs: np.ndarray, labels: np.ndarray | None) -> float:
    """Share of images given their requested class (or, with no labels, any one class) with p >= 0.9."""
    confidence = probs.max(1) if labels is None else probs[np.arange(len(probs)), labels]
    return float((confidence >= CONFIDENT).mean())


def chroma(images: torch.Tensor) -> np.ndarray:
    """Per image, the mean over pixels of max - min of its RGB channels (clamped to [-1, 1]): 0 for greys.

    Strong guidance over-saturates; the scorer is trained to ignore colour, so this watches it instead.
    """
    rgb = images[:, :3].clamp(-1, 1)
    return (rgb.amax(dim=1) - rgb.amin(dim=1)).mean(dim=(1, 2)).numpy()


def kernel_inception_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased squared MMD with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 (KID, Binkowski et al. 2018)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = a.shape[1]
    k_aa, k_bb, k_ab = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
    m, n = len(a), len(b)
    within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
    within_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
    return float(within_a + within_b - 2 * k_ab.mean())


def _radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest other point of the same set."""
    distances = np.sqrt(((features[:, None, :] - features[None, :, :]) ** 2).sum(-1))
    return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself


def _inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    distances = np.sqrt(((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
    return (distances <= radii[None, :]).any(axis=1)


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-nearest-neighbour manifolds.

    Precision: share of generated samples inside the real manifold (balls to each real point's k-th
    neighbour); recall: share of real samples inside the generated manifold.
    """
    real, generated = real.astype(np.float64), generated.astype(np.float64)
    precision = _inside(generated, real, _radii(real, k)).mean()
    recall = _inside(real, generated, _radii(generated, k)).mean()
    return float(precision), float(recall)


def class_histogram(probs: np.ndarray, classes: int) -> np.ndarray:
    """How many images the scorer puts in each class (arg max of its probabilities)."""
    return np.bincount(probs.argmax(1), minlength=classes)


def laplacian_pyramid(images: torch.Tensor, levels: int = 3) -> list[torch.Tensor]:
    """Band-pass levels (finest first) and the low-pass rest: a 5-tap binomial blur and halving per level."""
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = (taps[:, None] * taps[None, :]).expand(images.shape[1], 1, 5, 5).contiguous()
    gaussians = [images]
    for _ in range(levels - 1):
        padded = torch.nn.functional.pad(gaussians[-1], (2, 2, 2, 2), mode="reflect")
        gaussians.append(torch.nn.functional.conv2d(padded, kernel, groups=images.shape[1])[:, :, ::2, ::2])
    bands = [fine - torch.nn.functional.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
             for fine, coarse in zip(gaussians, gaussians[1:])]
    return bands + [gaussians[-1]]


def patch_descriptors(level: torch.Tensor, per_image: int, generator: torch.Generator, size: int = 7) -> torch.Tensor:
    """`per_image` random size x size patches (all channels) of each image, flattened: (n * per_image, C * size²)."""
    n, channels, height, width = level.shape
    rows = torch.randint(0, height - size + 1, (n, per_image), generator=generator)
    columns = torch.randint(0, width - size + 1, (n, per_image), generator=generator)
    windows = level.unfold(2, size, 1).unfold(3, size, 1)  # (n, C, H', W', size, size)
    picked = windows[torch.arange(n)[:, None], :, rows, columns]  # (n, per_image, C, size, size)
    return picked.reshape(n * per_image, channels * size * size)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator, directions: int = 256,
                       repeats: int = 4) -> float:
    """Mean over random unit directions of the 1-D Wasserstein distance between the projections of equal-size a and b."""
    distances = []
    for _ in range(repeats):
        axes = torch.randn(a.shape[1], directions, generator=generator)
        axes = axes / axes.norm(dim=0, keepdim=True)
        distances.append(((a @ axes).sort(dim=0).values - (b @ axes).sort(dim=0).values).abs().mean())
    return float(torch.stack(distances).mean())


class PatchJudge:
    """A judge that is not a classifier: sliced Wasserstein distances between 7x7 patches of samples and real images.

    As in Karras et al. 2018 (Progressive GAN), per level of a Laplacian pyramid (32, 16 and 8
    pixels here): fine edges and textures, shapes, colour layout. Patches are normalised with the
    real images' per-level mean and spread (not each set's own, so colour shifts count). A seed
    fixes the patch positions and directions, so that rows judged with the same seed are paired.
    """

    def __init__(self, real: torch.Tensor, per_image: int = 16, seed: int = 0) -> None:
        self.per_image = per_image
        generator = torch.Generator().manual_seed(seed)
        self.real = [patch_descriptors(level, per_image, generator) for level in laplacian_pyramid(real.clamp(-1, 1))]
        self.centre = [level.mean(dim=0) for level in self.real]
        self.scale = [level.std(dim=0) + 1e-6 for level in self.real]

    def distances(self, images: torch.Tensor, seed: int) -> list[float]:
        """SWD (x 100) per pyramid level, finest first, of `images` (clamped to [-1, 1]) against the real images."""
        generator = torch.Generator().manual_seed(seed)
        found = []
        for level, real, centre, scale in zip(laplacian_pyramid(images.float().clamp(-1, 1)), self.real, self.centre,
                                              self.scale):
            ours = patch_descriptors(level, self.per_image, generator)
            count = min(len(ours), len(real))  # equal-size sets; all of ours unless the real set is smaller
            ours = ours[torch.randperm(len(ours), generator=generator)[:count]]
            theirs = real[torch.randperm(len(real), generator=generator)[:count]]
            found.append(100 * sliced_wasserstein((ours - centre) / scale, (theirs - centre) / scale, generator))
        return found


def edge_energy(images: torch.Tensor) -> np.ndarray:
    """Per image, the mean absolute difference between neighbouring pixels of its RGB (clamped): blur lowers it."""
    rgb = images[:, :3].float().clamp(-1, 1)
    across = (rgb[..., :, 1:] - rgb[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    down = (rgb[..., 1:, :] - rgb[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return ((across + down) / 2).numpy()
