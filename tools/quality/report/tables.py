"""The report's tables that every page builds from: per-model scores and class histograms, changes by judge.

Markdown lines; a page (main_page.py, family_page.py, masks_page.py) chooses the changes they show.
"""

from __future__ import annotations

import statistics
from typing import Callable

import numpy as np

from ..data import CLASSES, sample_set
from ..lab import REAL_SEED, Lab
from ..rows import Row
from ..scores import (chroma, class_histogram, classify, frechet_distance, kernel_inception_distance,
                      precision_recall, recognised)
from ..weights import PANEL_SEEDS, TRAINING_SEEDS, ModelSpec
from .judges import (FIRST, PATCH_LEVELS, PRIMARY, SECOND, Judges, RowCells, collect, paired, scorer, scorers_better,
                     seed_fds)
from .stats import bootstrap_interval, describe_change, mean_change, pooled_changes, sign_test, spread


def row_scores(entry: RowCells, references: dict[int, np.ndarray], real_chroma: float) -> dict:
    """Every score of one row, over its cached sampling seeds."""
    reference = references[FIRST]
    fds = list(seed_fds(entry).values())
    pooled = entry.features(FIRST)
    shares = [recognised(cell["arrays"][f"probs_{FIRST}"], None if cell["arrays"]["labels"][0] < 0
                         else cell["arrays"]["labels"]) for cell in entry.cells.values()]
    precision, recall = precision_recall(reference, pooled)
    coverage = [cell["mask_coverage"] for cell in entry.cells.values() if cell["mask_coverage"] is not None]
    edges = list(entry.verdicts("edge").values())
    return {"fd": spread(fds), "fd_pooled": frechet_distance(pooled, reference),
            "kid": kernel_inception_distance(pooled, reference), "precision": precision, "recall": recall,
            "recognised": spread([100 * s for s in shares]), "chroma": float(entry.array("chroma").mean()) / real_chroma,
            "edge": statistics.fmean(edges) if edges else None,
            "coverage": statistics.fmean(coverage) if coverage else None, "seeds": len(entry.cells),
            "passes": statistics.fmean(c["unet_passes_per_image"] for c in entry.cells.values())}


def scores_table(found: dict[str, RowCells], references: dict[int, np.ndarray], real_chroma: float) -> list[str]:
    lines = ["| group | row | sampler, steps | CFG | SAG scale / sigma / threshold / window; PAG, SEG | seeds | FD ↓ "
             "| FD pooled ↓ | KID ↓ | precision ↑ | recall ↑ | recognised % | chroma vs real | edge energy vs real "
             "| mask coverage | U-Net passes per image | vs | ΔFD, same seeds | FD, scorer 2 | ΔFD, scorer 2 |",
             "|" + "---|" * 20]
    for name, entry in found.items():
        s, row = row_scores(entry, references, real_chroma), entry.row
        base = found.get(row.baseline) if row.baseline else None
        change = describe_change(paired(entry, base)) if base else "-"
        change_2 = describe_change(paired(entry, base, scorer(SECOND))) if base else "-"
        fd_2 = spread(list(seed_fds(entry, SECOND).values()))
        coverage = "-" if s["coverage"] is None else f"{s['coverage']:.2f}"
        edge = "-" if s["edge"] is None else f"{s['edge']:.2f}"
        lines.append(
            f"| {row.group} | {name} | {row.sampler}, {row.steps} | {row.cfg_scale:g} | {row.describe()} "
            f"| {s['seeds']} | {s['fd'][0]:.2f} ± {s['fd'][1]:.2f} | {s['fd_pooled']:.2f} | {s['kid']:.2f} "
            f"| {s['precision']:.3f} | {s['recall']:.3f} | {s['recognised'][0]:.1f} ± {s['recognised'][1]:.1f} "
            f"| {s['chroma']:.3f} | {edge} | {coverage} | {s['passes']:.0f} | {row.baseline or '-'} | {change} "
            f"| {fd_2[0]:.2f} ± {fd_2[1]:.2f} | {change_2} |")
    return lines


def histogram_table(found: dict[str, RowCells], real: np.ndarray) -> list[str]:
    """The scorer's class counts per row (pooled), against the real images': what drives the unconditional FD."""
    lines = ["| row | " + " | ".join(CLASSES) + " |", "|---|" + "---|" * len(CLASSES),
             "| real images | " + " | ".join(str(int(n)) for n in real) + " |"]
    for name, entry in found.items():
        counts = class_histogram(entry.array(f"probs_{FIRST}"), len(CLASSES))
        lines.append(f"| {name} | " + " | ".join(str(int(n)) for n in counts) + " |")
    return lines


def key_change_table(per_seed: dict[str, dict[str, RowCells]], describe: Callable[[RowCells, RowCells], str],
                     changes: list[tuple[str, str]]) -> list[str]:
    """One line per change, one column per model and training seed: `describe(row, baseline)` or "-"."""
    keys = list(per_seed)
    lines = ["| change | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for row, base in changes:
        cells = [describe(per_seed[key][row], per_seed[key][base]) if row in per_seed[key] and base in per_seed[key]
                 else "-" for key in keys]
        if any(cell != "-" for cell in cells):
            lines.append(f"| {row} vs {base} | " + " | ".join(cells) + " |")
    return lines


def judges_table(found: dict[str, RowCells], changes: list[tuple[str, str]]) -> list[str]:
    """Each of `changes` of one model and training seed under every judge, on the seeds it could score."""
    names = [scorer(seed) for seed in PANEL_SEEDS]
    lines = ["| change | seeds | " + " | ".join(f"ΔFD {name}" for name in names)
             + " | scorers finding it better | Δ patch SWD ×100 | fine / middle / coarse level "
             "| edge energy vs real: row / baseline |",
             "|---|" + "---|" * (len(names) + 5)]
    for row, base in changes:
        if row not in found or base not in found:
            continue
        entry, baseline = found[row], found[base]
        better, judged = scorers_better(entry, baseline)
        levels = " / ".join(mean_change(paired(entry, baseline, level)) for level in PATCH_LEVELS)
        edges = [list(e.verdicts("edge").values()) for e in (entry, baseline)]
        edge = "-" if not all(edges) else " / ".join(f"{statistics.fmean(e):.2f}" for e in edges)
        patch = paired(entry, baseline, "patches")
        patch_text = "-" if not patch else f"{mean_change(patch)} ({sum(c < 0 for c in patch)}/{len(patch)})"
        lines.append(f"| {row} vs {base} | {len(paired(entry, baseline))} | "
                     + " | ".join(mean_change(paired(entry, baseline, name)) for name in names)
                     + f" | {better} of {judged} | {patch_text} | {levels} | {edge} |")
    return lines


def pooled_test_table(per_seed: dict[str, dict[str, RowCells]], changes: list[tuple[str, str]],
                      judge: str = PRIMARY) -> list[str]:
    """Each change under `judge` pooled over the trained models: mean, bootstrap interval, seeds better, sign test."""
    lines = ["| change | pairs | mean | 95 % bootstrap interval | better | sign test p |", "|---|---|---|---|---|---|"]
    for row, base in changes:
        pooled = pooled_changes(per_seed, row, base, judge)
        if len(pooled) < 2:
            continue
        low, high = bootstrap_interval(pooled)
        lines.append(f"| {row} vs {base} | {len(pooled)} | {mean_change(pooled)} | {low:+.2f} to {high:+.2f} | "
                     f"{sum(c < 0 for c in pooled)} of {len(pooled)} | {sign_test(pooled):.2g} |")
    return lines


def model_tables(lab: Lab, models: dict[str, ModelSpec], rows: list[Row], judges: Judges,
                 plot_groups: tuple[str, ...] = ()) -> tuple[list[str], dict[str, dict[str, RowCells]], dict]:
    """Per model and training seed with cached cells: its scores table and class histograms (markdown lines),
    its judged rows (by "model-seedN"), and the rows of `plot_groups` by model, row and training seed."""
    real_images, _ = sample_set(640, REAL_SEED)
    real_chroma = float(chroma(real_images).mean())
    real_histogram = class_histogram(classify(judges.panel[FIRST], real_images)[1], len(CLASSES))
    lines, per_seed, per_model = [], {}, {}
    for name in models:
        for training_seed in TRAINING_SEEDS:
            key = f"{name}-seed{training_seed}"
            found = collect(lab, key, rows, judges)
            if not found:
                continue
            per_seed[key] = found
            for row_name, entry in found.items():
                if entry.row.group in plot_groups:
                    per_model.setdefault(name, {}).setdefault(row_name, {})[training_seed] = entry
            lines += [f"## Model '{name}', training seed {training_seed}", "",
                      *scores_table(found, judges.references, real_chroma), "",
                      "Class histograms (scorer 1, pooled):", "", *histogram_table(found, real_histogram), ""]
    return lines, per_seed, per_model
