"""The quality lab's report, rebuilt from the cell cache alone: tables (markdown) and the frontier plot (PNG).

Per model and training seed, every row with cached cells gets: FD per sampling seed (mean ± standard
deviation over seeds) and pooled over its seeds' samples, KID, precision and recall, the recognised
share, the chroma against the real images', the mask coverage and the U-Net passes per image; and
its change from its baseline row on the same seeds. The replication table gives the key changes
per training seed and under the second scorer. Nothing here samples; missing cells are left out.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quality import REAL_SEED, SAMPLING_SEEDS, best_cfg_scale, resolve
from quality_data import CLASSES, sample_set
from quality_rows import CFG, NO_GUIDANCE, Row, cfg_name, rows_of
from quality_scores import (chroma, class_histogram, classify, frechet_distance, kernel_inception_distance,
                            precision_recall, recognised)
from quality_weights import MODELS, SCORER_SEEDS, TRAINING_SEEDS, ModelSpec
from sag_core.blur import gaussian_blur_2d

FIRST, SECOND = SCORER_SEEDS
KEY_CHANGES = [  # (row, baseline): the comparisons a user's question turns on
    ("CFG + SAG", CFG), (f"{cfg_name(3.0, 30)}", CFG), ("best CFG + SAG", "best CFG"), ("CFG + SAG 0.5-1", CFG),
    ("SAG alone", NO_GUIDANCE), ("DPM++ 2M CFG + SAG", "DPM++ 2M CFG"), ("DDIM CFG + SAG", "DDIM CFG"),
    ("DDIM CFG++ 7.5 + SAG", "DDIM CFG++ 7.5")]


@dataclass
class RowCells:
    """A row's cached cells for one model and training seed, by sampling seed."""

    row: Row
    cells: dict[int, dict]

    def features(self, scorer: int, seed: int | None = None) -> np.ndarray:
        seeds = [seed] if seed is not None else list(self.cells)
        return np.concatenate([self.cells[s]["arrays"][f"features_{scorer}"] for s in seeds])

    def array(self, name: str) -> np.ndarray:
        return np.concatenate([cell["arrays"][name] for cell in self.cells.values()])


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def collect(lab, model_key: str, rows: list[Row], reference: np.ndarray) -> dict[str, RowCells]:
    """The cached cells of `rows` for one model and training seed (best-CFG rows resolved as `run` resolved them)."""
    best = best_cfg_scale(lab, model_key, reference)
    found = {}
    for planned in rows:
        row = resolve(planned, best)
        if row is None:
            continue
        cells = {seed: lab.cells.load(model_key, row, seed) for seed in SAMPLING_SEEDS}
        cells = {seed: cell for seed, cell in cells.items() if cell is not None}
        if cells:
            found[row.name] = RowCells(row, cells)
    return found


def seed_fds(entry: RowCells, reference: np.ndarray, scorer: int = FIRST) -> dict[int, float]:
    return {seed: frechet_distance(entry.features(scorer, seed), reference) for seed in entry.cells}


def paired(entry: RowCells, base: RowCells, references: dict[int, np.ndarray], scorer: int = FIRST) -> list[float]:
    """The row's FD minus its baseline's on each sampling seed both have."""
    ours, theirs = seed_fds(entry, references[scorer], scorer), seed_fds(base, references[scorer], scorer)
    return [ours[seed] - theirs[seed] for seed in ours if seed in theirs]


def describe_change(changes: list[float]) -> str:
    """"−0.74 ± 0.05 (5 of 5 better)": mean ± sd over seeds, and on how many seeds FD fell (changes below 0.005 tie)."""
    if not changes:
        return "-"
    mean, sd = spread(changes)
    better, worse = sum(c < -0.005 for c in changes), sum(c > 0.005 for c in changes)
    return f"{round(mean, 2) + 0.0:+.2f} ± {sd:.2f} ({better} better, {worse} worse of {len(changes)})"


def row_scores(entry: RowCells, references: dict[int, np.ndarray], real_chroma: float) -> dict:
    """Every score of one row, over its cached sampling seeds."""
    reference = references[FIRST]
    fds = list(seed_fds(entry, reference).values())
    pooled = entry.features(FIRST)
    shares = [recognised(cell["arrays"][f"probs_{FIRST}"], None if cell["arrays"]["labels"][0] < 0
                         else cell["arrays"]["labels"]) for cell in entry.cells.values()]
    precision, recall = precision_recall(reference, pooled)
    coverage = [cell["mask_coverage"] for cell in entry.cells.values() if cell["mask_coverage"] is not None]
    return {"fd": spread(fds), "fd_pooled": frechet_distance(pooled, reference),
            "kid": kernel_inception_distance(pooled, reference), "precision": precision, "recall": recall,
            "recognised": spread([100 * s for s in shares]), "chroma": float(entry.array("chroma").mean()) / real_chroma,
            "coverage": statistics.fmean(coverage) if coverage else None, "seeds": len(entry.cells),
            "passes": statistics.fmean(c["unet_passes_per_image"] for c in entry.cells.values())}


def scores_table(found: dict[str, RowCells], references: dict[int, np.ndarray], real_chroma: float) -> list[str]:
    lines = ["| group | row | sampler, steps | CFG | SAG scale / sigma / threshold / window | seeds | FD ↓ | FD pooled ↓ "
             "| KID ↓ | precision ↑ | recall ↑ | recognised % | chroma vs real | mask coverage "
             "| U-Net passes per image | vs | ΔFD, same seeds | FD, scorer 2 | ΔFD, scorer 2 |",
             "|" + "---|" * 19]
    for name, entry in found.items():
        s, row = row_scores(entry, references, real_chroma), entry.row
        base = found.get(row.baseline) if row.baseline else None
        change = describe_change(paired(entry, base, references)) if base else "-"
        change_2 = describe_change(paired(entry, base, references, SECOND)) if base else "-"
        fd_2 = spread(list(seed_fds(entry, references[SECOND], SECOND).values()))
        coverage = "-" if s["coverage"] is None else f"{s['coverage']:.2f}"
        lines.append(
            f"| {row.group} | {name} | {row.sampler}, {row.steps} | {row.cfg_scale:g} | {row.describe_sag()} "
            f"| {s['seeds']} | {s['fd'][0]:.2f} ± {s['fd'][1]:.2f} | {s['fd_pooled']:.2f} | {s['kid']:.2f} "
            f"| {s['precision']:.3f} | {s['recall']:.3f} | {s['recognised'][0]:.1f} ± {s['recognised'][1]:.1f} "
            f"| {s['chroma']:.3f} | {coverage} | {s['passes']:.0f} | {row.baseline or '-'} | {change} "
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


def replication_table(per_seed: dict[str, dict[str, RowCells]], references: dict[int, np.ndarray]) -> list[str]:
    """The key changes per model and training seed, under both scorers: does the sign hold?"""
    keys = list(per_seed)
    lines = ["| change | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for row, base in KEY_CHANGES:
        cells = []
        for key in keys:
            found = per_seed[key]
            if row not in found or base not in found:
                cells.append("-")
                continue
            first = paired(found[row], found[base], references, FIRST)
            second = paired(found[row], found[base], references, SECOND)
            first_mean, second_mean = (round(statistics.fmean(c), 2) + 0.0 for c in (first, second))
            cells.append(f"{first_mean:+.2f} / {second_mean:+.2f} "
                         f"({sum(c < 0 for c in first)}/{len(first)})")
        lines.append(f"| {row} vs {base} | " + " | ".join(cells) + " |")
    return lines


def sanity_table(scorers: dict, references: dict[int, np.ndarray]) -> tuple[list[str], bool]:
    """Real images blurred with sigma 0, 0.5, 1, 2 (all channels): FD must grow with the blur."""
    lines = ["| real images, blur sigma | FD (scorer 1) | FD (scorer 2) |", "|---|---|---|"]
    means = []
    for sigma in (0.0, 0.5, 1.0, 2.0):
        per_scorer = []
        for scorer in SCORER_SEEDS:
            fds = []
            for seed in SAMPLING_SEEDS:
                images, _ = sample_set(128, REAL_SEED + seed)
                blurred = gaussian_blur_2d(images, sigma) if sigma else images
                fds.append(frechet_distance(classify(scorers[scorer], blurred)[0], references[scorer]))
            per_scorer.append(spread(fds))
        means.append([mean for mean, _ in per_scorer])
        lines.append(f"| {sigma:g} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in per_scorer) + " |")
    monotone = all(later[i] > earlier[i] for earlier, later in zip(means, means[1:]) for i in range(2))
    return lines, monotone


def frontier_plot(per_model: dict[str, dict[str, dict[int, RowCells]]], references: dict[int, np.ndarray],
                  models: dict[str, ModelSpec], path: Path) -> None:
    """Change in FD from CFG 3 (same seeds) against U-Net passes per image, one panel per model and scorer.

    Each point is one frontier row: the mean ± sd of its paired changes over every training and
    sampling seed the model has. Paired changes, not raw FDs, because the seeds' spread (each seed's
    128 images are another sample) is larger than the effects. The y axis is linear within ±1 and
    logarithmic beyond, so strong CFG's large losses fit beside SAG's small gains.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = {"CFG": ("o", "tab:blue", -1.2), "CFG, more steps": ("s", "tab:cyan", -1.2),
             "CFG + SAG": ("D", "tab:red", 1.2), "SAG alone": ("^", "tab:orange", 1.2),
             "no guidance": ("x", "black", -1.2)}
    figure, axes = plt.subplots(len(SCORER_SEEDS), len(per_model), figsize=(7 * len(per_model), 5.5 * len(SCORER_SEEDS)),
                                squeeze=False)
    for scorer, axes_row in zip(SCORER_SEEDS, axes):
        for axis, (model, rows) in zip(axes_row, per_model.items()):
            frontier_panel(axis, rows, references, scorer, kinds)
            axis.set_title(f"model '{model}' ({models[model].about}); scorer {scorer}", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def frontier_panel(axis, rows: dict[str, dict[int, RowCells]], references: dict[int, np.ndarray], scorer: int,
                   kinds: dict) -> None:
    """One model's frontier rows under one scorer: each row's paired change from CFG 3 against its passes."""
    bases = rows.get(CFG, {})
    for name, by_seed in rows.items():
        entries = list(by_seed.values())
        row = entries[0].row
        changes = [change for seed, entry in by_seed.items() if seed in bases
                   for change in paired(entry, bases[seed], references, scorer)]
        if not changes or name == "best CFG":  # the best-CFG row is one of the CFG rows, drawn already
            continue
        kind = ("CFG + SAG" if row.sag is not None and row.cfg_scale > 1 else "SAG alone" if row.sag is not None
                else "CFG, more steps" if row.steps != 20 else "CFG" if row.cfg_scale > 1 else "no guidance")
        marker, colour, shift = kinds[kind]
        passes = statistics.fmean(c["unet_passes_per_image"] for e in entries for c in e.cells.values())
        mean, sd = spread(changes)
        axis.errorbar(passes + shift, mean, yerr=sd, fmt=marker, color=colour, capsize=3,
                      label=kind if kind not in axis.get_legend_handles_labels()[1] else None)
        label = f"{name} (CFG {row.cfg_scale:g})" if row.name.startswith("best") else name
        axis.annotate(label, (passes + shift, mean), textcoords="offset points", fontsize=7,
                      xytext=(6, -3) if shift > 0 else (-6, -3), ha="left" if shift > 0 else "right")
    axis.axhline(0.0, color="grey", linewidth=0.8)
    axis.set_yscale("symlog", linthresh=1.0)
    axis.set_xlim(25, 75)
    axis.set_xlabel("U-Net passes per image (rows of U-Net input; CFG at 20 steps = 40)")
    axis.set_ylabel("ΔFD from CFG 3 on the same seeds (below 0 = better)")
    axis.legend(fontsize=8, loc="upper right")
    axis.grid(alpha=0.3)


def write(lab, docs: Path, models: dict[str, ModelSpec] = MODELS, rows: list[Row] | None = None,
          plot_groups: tuple[str, ...] = ("frontier",)) -> None:
    """Rebuild docs/quality-results.md and docs/quality-frontier.png from the cached cells."""
    scorers = lab.scorers()
    references = lab.reference(scorers)
    real_images, _ = sample_set(640, REAL_SEED)
    real_chroma = float(chroma(real_images).mean())
    real_histogram = class_histogram(classify(scorers[FIRST], real_images)[1], len(CLASSES))
    rows = rows if rows is not None else rows_of(["frontier", "samplers", "ablations"])
    lines = ["# Quality lab: every table", "",
             "Generated by `python tools/quality.py report` from the cell cache (out/quality/cells); do not edit. "
             "What the rows and scores are, and what they say, is in [quality.md](quality.md).", ""]
    per_seed, per_model = {}, {}
    for name in models:
        for training_seed in TRAINING_SEEDS:
            key = f"{name}-seed{training_seed}"
            found = collect(lab, key, rows, references[FIRST])
            if not found:
                continue
            per_seed[key] = found
            for row_name, entry in found.items():
                if entry.row.group in plot_groups:
                    per_model.setdefault(name, {}).setdefault(row_name, {})[training_seed] = entry
            lines += [f"## Model '{name}', training seed {training_seed}", "",
                      *scores_table(found, references, real_chroma), "", "Class histograms (scorer 1, pooled):", "",
                      *histogram_table(found, real_histogram), ""]
    lines += ["## Replication: the key changes per model and training seed", "",
              "Each cell: mean ΔFD over the sampling seeds under scorer 1 / scorer 2, and (on how many sampling seeds "
              "scorer 1's FD fell / seeds).", "", *replication_table(per_seed, references), ""]
    sanity, monotone = sanity_table(scorers, references)
    lines += ["## Sanity: blurred real images", "", *sanity, "",
              f"FD grows with the blur under both scorers: {'yes' if monotone else 'NO'}.", ""]
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "quality-results.md").write_text("\n".join(lines))
    if per_model:
        frontier_plot(per_model, references, models, docs / "quality-frontier.png")
    print(f"wrote {docs / 'quality-results.md'} and {docs / 'quality-frontier.png'} "
          f"({sum(len(f) for f in per_seed.values())} rows over {len(per_seed)} trained models)")
