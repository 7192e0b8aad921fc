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
