"""The lab's setting: where it keeps its caches, its fixed seeds, and which CFG scale a best-CFG row takes.

Both the sampling (runner.py) and the report (report/) read it, so that a resolved row is the same row to each.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import ROOT
from .cells import CellCache, Sampling
from .data import sample_set
from .models import ClassifierConfig, ShapeClassifier
from .rows import CFG_SCALES, Row, cfg_name
from .scores import classify, frechet_distance
from .weights import SCORER_SEEDS, ModelSpec, scoring_classifier

REFERENCE_SEED = 777_000
REAL_SEED = 888_000
REFERENCE_IMAGES = 2048
SAMPLING_SEEDS = (1, 2, 3, 4, 5)
OUT = ROOT / "out" / "quality"


@dataclass(frozen=True)
class Lab:
    """Where the lab keeps its caches, and the scorers' training."""

    out: Path = OUT
    classifier: ClassifierConfig = ClassifierConfig()
    sampling: Sampling = Sampling()
    reference_images: int = REFERENCE_IMAGES

    @property
    def weights(self) -> Path:
        return self.out / "weights"

    @property
    def cells(self) -> CellCache:
        return CellCache(self.out / "cells")

    def scorers(self, seeds: tuple[int, ...] = SCORER_SEEDS) -> dict[int, ShapeClassifier]:
        """The scoring classifiers of these seeds, trained now if not cached."""
        return {seed: scoring_classifier(self.weights, replace(self.classifier, seed=seed))[0] for seed in seeds}

    def real_images(self) -> torch.Tensor:
        """The fixed real images every score compares with."""
        return sample_set(self.reference_images, REFERENCE_SEED)[0]

    def reference(self, scorers: dict[int, ShapeClassifier]) -> dict[int, np.ndarray]:
        """Each scorer's features of the fixed real reference set."""
        images = self.real_images()
        return {seed: classify(scorer, images)[0] for seed, scorer in scorers.items()}


def model_key(spec: ModelSpec, training_seed: int) -> str:
    return f"{spec.name}-seed{training_seed}"


BEST_CFG_SEEDS = (1, 2, 3)


def best_cfg_scale(lab: Lab, key: str, reference: np.ndarray) -> float | None:
    """The CFG scale (20 steps) with the lowest mean FD (first scorer) on this model's cached cells; None if absent.

    Judged on the sampling seeds among BEST_CFG_SEEDS that every CFG row has, so that a run adding
    later seeds never moves the choice (and with it the best-CFG rows' cells).
    """
    cells = {scale: {seed: lab.cells.load(key, Row("frontier", cfg_name(scale), scale), seed)
                     for seed in BEST_CFG_SEEDS}
             for scale in CFG_SCALES}
    seeds = [seed for seed in BEST_CFG_SEEDS if all(by_seed[seed] is not None for by_seed in cells.values())]
    if not seeds:
        return None
    means = {scale: statistics.fmean(frechet_distance(by_seed[seed]["arrays"][f"features_{SCORER_SEEDS[0]}"], reference)
                                     for seed in seeds) for scale, by_seed in cells.items()}
    return min(means, key=means.get)


def resolve(row: Row, best: float | None) -> Row | None:
    """The row with its CFG scale fixed (a best-CFG row takes the model's best scale); None while that is unknown."""
    if not row.best_cfg:
        return row
    return None if best is None else replace(row, cfg_scale=best, best_cfg=False)
