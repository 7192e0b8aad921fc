"""The report's judges and what they judge: a row's cached cells, each with every judge's verdict.

The judges are the panel of scoring classifiers (their FD), the patch distance (no classifier, the primary
judge) and the edge energy; a change of a row from its baseline is paired seed by seed under one judge.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
import torch

from ..lab import SAMPLING_SEEDS, Lab, best_cfg_scale, resolve
from ..models import ShapeClassifier
from ..rows import Row
from ..scores import PatchJudge, classify, edge_energy, frechet_distance
from ..weights import PANEL_SEEDS, SCORER_SEEDS

FIRST, SECOND = SCORER_SEEDS
PATCH_LEVELS = ("patches 32", "patches 16", "patches 8")
PANEL = "scorers"  # the judge that is the mean FD of the whole panel of scorers
PRIMARY = "patches"
"""The lab's primary judge, named before the numbers (docs/quality.md "The primary judge" says why): the patch
distance, which is no classifier. Every verdict follows it; the scorers are reported as secondary."""


def scorer(seed: int) -> str:
    """The name of the judge that is scoring classifier `seed`'s FD."""
    return f"scorer {seed}"


@dataclass
class Judges:
    """Every judge the report applies to a cell: the panel of scorers' FD, the patch distance, the edge energy.

    Cells keep the first two scorers' features; the other scorers and the patch judge need the
    cell's images, so cells made before images were kept have only the first two verdicts.
    """

    panel: dict[int, ShapeClassifier]
    references: dict[int, np.ndarray]
    patches: PatchJudge
    real_edge: float

    @classmethod
    def build(cls, lab: Lab) -> "Judges":
        panel = lab.scorers(PANEL_SEEDS)
        real = lab.real_images()
        return cls(panel, lab.reference(panel), PatchJudge(real), float(edge_energy(real).mean()))

    def verdicts(self, cell: dict) -> dict[str, float]:
        """Judge name -> score of one cell (lower is better, except the edge energy: 1 is the real images')."""
        arrays = cell["arrays"]
        images = torch.from_numpy(arrays["images"].astype(np.float32)) if "images" in arrays else None
        found = {}
        for seed, model in self.panel.items():
            features = arrays.get(f"features_{seed}")
            if features is None and images is not None:
                features = classify(model, images)[0]
            if features is not None:
                found[scorer(seed)] = frechet_distance(features, self.references[seed])
        if len(found) == len(self.panel):
            found[PANEL] = statistics.fmean(found.values())
        if images is not None:
            levels = self.patches.distances(images, cell["seed"])
            found["patches"] = statistics.fmean(levels)
            found.update(zip(PATCH_LEVELS, levels))
            found["edge"] = float(edge_energy(images).mean()) / self.real_edge
        return found


@dataclass
class RowCells:
    """A row's cached cells for one model and training seed, by sampling seed (each with its judges' verdicts)."""

    row: Row
    cells: dict[int, dict]

    def features(self, scorer: int, seed: int | None = None) -> np.ndarray:
        seeds = [seed] if seed is not None else list(self.cells)
        return np.concatenate([self.cells[s]["arrays"][f"features_{scorer}"] for s in seeds])

    def array(self, name: str) -> np.ndarray:
        return np.concatenate([cell["arrays"][name] for cell in self.cells.values()])

    def verdicts(self, judge: str) -> dict[int, float]:
        """Sampling seed -> the judge's score, for the seeds it could judge."""
        return {seed: cell["verdicts"][judge] for seed, cell in self.cells.items() if judge in cell["verdicts"]}


def collect(lab: Lab, model_key: str, rows: list[Row], judges: Judges) -> dict[str, RowCells]:
    """The cached cells of `rows` for one model and training seed, judged (best-CFG rows resolved as `run` did)."""
    best = best_cfg_scale(lab, model_key, judges.references[FIRST])
    found = {}
    for planned in rows:
        row = resolve(planned, best)
        if row is None:
            continue
        cells = {seed: lab.cells.load(model_key, row, seed, images=True) for seed in SAMPLING_SEEDS}
        cells = {seed: cell for seed, cell in cells.items() if cell is not None}
        for cell in cells.values():
            cell["verdicts"] = judges.verdicts(cell)
            cell["arrays"].pop("images", None)
        if cells:
            found[row.name] = RowCells(row, cells)
    return found


def seed_fds(entry: RowCells, scorer_seed: int = FIRST) -> dict[int, float]:
    return entry.verdicts(scorer(scorer_seed))


def paired(entry: RowCells, base: RowCells, judge: str = scorer(FIRST)) -> list[float]:
    """The row's score minus its baseline's under `judge`, on each sampling seed both have."""
    ours, theirs = entry.verdicts(judge), base.verdicts(judge)
    return [ours[seed] - theirs[seed] for seed in ours if seed in theirs]


def scorers_better(entry: RowCells, baseline: RowCells) -> tuple[int, int]:
    """How many scorers' mean FD fell from the baseline, and how many scorers could judge the change."""
    judged = [changes for changes in (paired(entry, baseline, scorer(seed)) for seed in PANEL_SEEDS) if changes]
    return sum(statistics.fmean(changes) < 0 for changes in judged), len(judged)
