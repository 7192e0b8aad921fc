"""Sampling one cell of the quality lab (a row, for one model, training seed and sampling seed) and its cache.

Each cell's images go through the test host's `process_images` (webui v1.10.1's CFG denoiser and
samplers, tests/host) with the extension's own script. What the scores need is kept per cell in
out/quality/cells: the images (float16), the scorers' features and class probabilities per image,
a colour statistic per image, the share of the latent SAG's mask covered, the U-Net rows per image, and a digest of
the images (the smoke test compares rows exactly with it). Cells are never recomputed once cached;
each records the extension's code fingerprint, so the report can say which are older than the code.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from . import ROOT
from .data import balanced_labels
from .host import RUN_OPTIONS_ATTR, MulticondBatch, RunOptions, harness, processing, saliency_mask
from .models import NULL_CLASS, DiffusionPair, ShapeClassifier
from .rows import Row
from .scores import chroma, classify


@dataclass(frozen=True)
class Sampling:
    """How many images a cell has and how they are batched into txt2img jobs."""

    images: int = 128
    batch: int = 32


def extension_fingerprint() -> str:
    """A short hash of the extension's code (sag_core with its sub-packages, and scripts): recorded in each cell."""
    digest = hashlib.sha1()
    for path in sorted([*(ROOT / "sag_core").rglob("*.py"), *ROOT.glob("scripts/*.py")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


class UNetRows:
    """Counts the rows (images) the U-Net is run on, through a forward pre-hook: the cost of a row."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.count = 0
        self._handle = unet.register_forward_pre_hook(self._see)

    def _see(self, module: torch.nn.Module, args: tuple) -> None:
        self.count += args[0].shape[0]

    def remove(self) -> None:
        self._handle.remove()


class MaskLog:
    """The token masks SAG used in a cell: their mean coverage, and the variant masks the ablations swap in."""

    def __init__(self, variant: str, seed: int) -> None:
        self.variant = variant
        self.generator = torch.Generator().manual_seed(seed)
        self.covered = 0.0
        self.masks = 0

    def make(self, original: Any) -> Any:
        def saliency_mask(saliency: torch.Tensor, grid: tuple[int, int], size: tuple[int, int], threshold: float):
            above = (saliency > threshold).float()
            if self.variant == "saliency":
                self._count(above)
                return original(saliency, grid, size, threshold)
            if self.variant == "inverse":
                above = 1.0 - above
            else:  # random: the same number of tokens per image, at random places
                rank = torch.rand(above.shape, generator=self.generator).argsort(dim=1).argsort(dim=1)
                above = (rank < above.sum(dim=1, keepdim=True)).float()
            self._count(above)
            mask = above.reshape(above.shape[0], 1, *grid)
            return torch.nn.functional.interpolate(mask, size=tuple(size), mode="nearest")
        return saliency_mask

    def _count(self, above: torch.Tensor) -> None:
        self.covered += float(above.mean(dim=1).sum())
        self.masks += above.shape[0]

    def coverage(self) -> float | None:
        return self.covered / self.masks if self.masks else None


def run_options(row: Row, log: MaskLog) -> RunOptions:
    """The row's mask variant and branch as the script's run options (the lab's ablations; every row logs its masks)."""
    return RunOptions(sag_branch="negative" if row.branch == "negative" else "auto", mask=log.make(saliency_mask))


def job_chunks(sampling: Sampling) -> Iterator[tuple[int, torch.Tensor]]:
    """(chunk index, class labels) of each txt2img job making up one cell's images."""
    labels = balanced_labels(sampling.images)
    for index, first in enumerate(range(0, sampling.images, sampling.batch)):
        yield index, labels[first:first + sampling.batch]


@torch.no_grad()
def sample_cell(ext: harness.Extension, model: DiffusionPair, row: Row, seed: int, sampling: Sampling,
                log: MaskLog) -> torch.Tensor:
    """One sampling seed's images of a row, each job run through the host's process_images with the SAG script."""
    samples = []
    for chunk, labels in job_chunks(sampling):
        requested = labels if row.conditional else torch.full_like(labels, NULL_CLASS)
        cond = model.context(requested)
        uncond = model.context(torch.full_like(labels, NULL_CLASS))
        p = processing.StableDiffusionProcessing(
            cond=MulticondBatch([[(i, 1.0)] for i in range(len(labels))], cond), uncond=uncond,
            batch_size=len(labels), steps=row.steps, cfg_scale=row.cfg_scale, width=256, height=256,
            seed=seed * 10_000 + chunk, sampler_name=row.sampler)
        p.scripts = ext.txt2img
        p.script_args = tuple(harness.sag_args(ext.txt2img, *row.script_values()))
        setattr(p, RUN_OPTIONS_ATTR, run_options(row, log))
        samples.append(processing.process_images(p).samples)
    if ext.txt2img.errors:
        raise RuntimeError(f"the SAG script failed: {ext.txt2img.errors}")
    return torch.cat(samples)


def describe_images(images: torch.Tensor, scorers: dict[int, ShapeClassifier]) -> dict[str, np.ndarray]:
    """What the scores need of a set of images: each scorer's features and probabilities, and each image's chroma."""
    described = {"chroma": chroma(images)}
    for seed, scorer in scorers.items():
        features, probs = classify(scorer, images)
        described[f"features_{seed}"] = features.astype(np.float32)
        described[f"probs_{seed}"] = probs.astype(np.float32)
    return described


def digest(images: torch.Tensor) -> str:
    return hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest()


class CellCache:
    """Cells on disk: one .npz (per-image arrays) and one .json (everything else) per cell."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, model_key: str, row: Row, seed: int) -> Path:
        return self.root / model_key / f"{row.key()}-seed{seed}"

    def exists(self, model_key: str, row: Row, seed: int) -> bool:
        """Whether the cell is complete on disk (its .json is written last)."""
        return self.path(model_key, row, seed).with_suffix(".json").exists()

    def meta(self, model_key: str, row: Row, seed: int) -> dict | None:
        """The cell's record without its arrays (digest, passes, coverage, ...); None if absent."""
        if not self.exists(model_key, row, seed):
            return None
        return json.loads(self.path(model_key, row, seed).with_suffix(".json").read_text())

    def has_images(self, model_key: str, row: Row, seed: int) -> bool:
        """Whether the cell exists and keeps its images (cells made before images were kept do not)."""
        if not self.exists(model_key, row, seed):
            return False
        with np.load(self.path(model_key, row, seed).with_suffix(".npz")) as arrays:
            return "images" in arrays.files

    def load(self, model_key: str, row: Row, seed: int, images: bool = False) -> dict | None:
        """The cell, its arrays read except the stored images unless asked for; None if absent."""
        cell = self.meta(model_key, row, seed)
        if cell is None:
            return None
        with np.load(self.path(model_key, row, seed).with_suffix(".npz")) as arrays:
            cell["arrays"] = {name: arrays[name] for name in arrays.files if images or name != "images"}
        return cell

    def save(self, model_key: str, row: Row, seed: int, cell: dict) -> None:
        base = self.path(model_key, row, seed)
        base.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(base.with_suffix(".npz"), **cell["arrays"])
        meta = {key: value for key, value in cell.items() if key != "arrays"}
        base.with_suffix(".json").write_text(json.dumps(meta, indent=1))  # written last: marks the cell complete


def compute_cell(ext: harness.Extension, model: DiffusionPair, scorers: dict[int, ShapeClassifier], row: Row,
                 seed: int, sampling: Sampling) -> tuple[dict, torch.Tensor]:
    """Sample and describe one cell; returns it (ready for CellCache.save) and its images."""
    counter, log = UNetRows(model.unet), MaskLog(row.mask, seed)
    started = time.perf_counter()
    try:
        images = sample_cell(ext, model, row, seed, sampling, log)
    finally:
        counter.remove()
    arrays = describe_images(images, scorers)
    arrays["images"] = images.half().numpy()  # so that other scorers can judge the cell later without sampling it
    arrays["labels"] = (balanced_labels(sampling.images) if row.conditional
                        else torch.full((sampling.images,), -1)).numpy()
    cell = {"row": row.name, "row_key": row.key(), "seed": seed, "images": sampling.images,
            "unet_passes_per_image": counter.count / sampling.images, "mask_coverage": log.coverage(),
            "digest": digest(images), "seconds": time.perf_counter() - started,
            "extension": extension_fingerprint(), "torch": torch.__version__, "arrays": arrays}
    return cell, images
