"""Scores of tools/quality.py: a Fréchet distance on classifier features, and how many shapes are recognised."""

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
