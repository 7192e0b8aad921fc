"""The quality lab's report, rebuilt from the cell cache alone: tables (markdown) and the frontier plot (PNG).

Per model and training seed, every row with cached cells gets: FD per sampling seed (mean ± standard
deviation over seeds) and pooled over its seeds' samples, KID, precision and recall, the recognised
share, the chroma against the real images', the mask coverage and the U-Net passes per image; and
its change from its baseline row on the same seeds. The judges' tables give every change under
every judge: the FD of five scoring classifiers and a patch distance that is no classifier (cells
that keep their images only). Nothing here samples; missing cells are left out. The family page
(PAG and SEG beside SAG) is written alone from the family rows' cells, which a partial cache may hold.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from quality import REAL_SEED, SAMPLING_SEEDS, best_cfg_scale, resolve
from quality_data import CLASSES, sample_set
from quality_models import ShapeClassifier
from quality_rows import CFG, NO_GUIDANCE, Row, cfg_name, rows_of
from quality_scores import (PatchJudge, chroma, class_histogram, classify, edge_energy, frechet_distance,
                            kernel_inception_distance, precision_recall, recognised)
from quality_weights import MODELS, PANEL_SEEDS, SCORER_SEEDS, TRAINING_SEEDS, ModelSpec
from sag_core.blur import gaussian_blur_2d

FIRST, SECOND = SCORER_SEEDS
KEY_CHANGES = [  # (row, baseline): the comparisons a user's question turns on
    ("CFG + SAG", CFG), (f"{cfg_name(3.0, 30)}", CFG), ("best CFG + SAG", "best CFG"), ("CFG + SAG 0.5-1", CFG),
    (f"{cfg_name(3.0, 25)}", CFG), (cfg_name(2.0), CFG), (cfg_name(5.0), CFG),
    ("SAG alone", NO_GUIDANCE), ("DPM++ 2M CFG + SAG", "DPM++ 2M CFG"), ("DPM++ 2M CFG, 30 steps", "DPM++ 2M CFG"),
    ("DDIM CFG + SAG", "DDIM CFG"), ("DDIM CFG, 30 steps", "DDIM CFG"),
    ("DDIM CFG++ 7.5 + SAG", "DDIM CFG++ 7.5")]
PATCH_LEVELS = ("patches 32", "patches 16", "patches 8")
PANEL = "scorers"  # the judge that is the mean FD of the whole panel of scorers
PRIMARY = "patches"
"""The lab's primary judge, named before the numbers (docs/quality.md "The primary judge" says why): the patch
distance, which is no classifier. Every verdict follows it; the scorers are reported as secondary."""
BOOTSTRAP_DRAWS = 10_000


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
    def build(cls, lab) -> "Judges":
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


def sign_test(changes: list[float]) -> float:
    """Two-sided exact sign test of paired changes against "no change": P(a split at least this uneven) under
    Binomial(n, 1/2); ties (exactly 0) are dropped. 1.0 for no untied pair."""
    untied = [change for change in changes if change != 0]
    n, k = len(untied), sum(change < 0 for change in untied)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def bootstrap_interval(changes: list[float], draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean paired change (the pairs resampled with replacement)."""
    values = np.asarray(changes, dtype=np.float64)
    means = np.random.default_rng(seed).choice(values, size=(draws, len(values))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def pooled_changes(per_seed: dict[str, dict[str, RowCells]], row: str, base: str, judge: str) -> list[float]:
    """Every paired change of `row` from `base` under `judge`, over every trained model and sampling seed."""
    return [change for found in per_seed.values() if row in found and base in found
            for change in paired(found[row], found[base], judge)]


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


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def collect(lab, model_key: str, rows: list[Row], judges: Judges) -> dict[str, RowCells]:
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


def key_changes(found: dict[str, RowCells]) -> list[tuple[str, str]]:
    return [(row, base) for row, base in KEY_CHANGES if row in found and base in found]


def key_change_table(per_seed: dict[str, dict[str, RowCells]], describe: Callable[[RowCells, RowCells], str],
                     changes: list[tuple[str, str]] = KEY_CHANGES) -> list[str]:
    """One line per change (the key ones unless told), one column per model and training seed:
    `describe(row, baseline)` or "-"."""
    keys = list(per_seed)
    lines = ["| change | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for row, base in changes:
        cells = [describe(per_seed[key][row], per_seed[key][base]) if row in per_seed[key] and base in per_seed[key]
                 else "-" for key in keys]
        if any(cell != "-" for cell in cells):
            lines.append(f"| {row} vs {base} | " + " | ".join(cells) + " |")
    return lines


def mean_change(changes: list[float], digits: int = 2) -> str:
    return "-" if not changes else f"{round(statistics.fmean(changes), digits) + 0.0:+.{digits}f}"


def first_two_scorers(entry: RowCells, baseline: RowCells) -> str:
    """"−0.78 / +0.72 (3/3)": mean change under scorer 1 / scorer 2, and on how many seeds scorer 1's FD fell."""
    first, second = paired(entry, baseline), paired(entry, baseline, scorer(SECOND))
    return f"{mean_change(first)} / {mean_change(second)} ({sum(c < 0 for c in first)}/{len(first)})"


def replication_table(per_seed: dict[str, dict[str, RowCells]]) -> list[str]:
    """The key changes per model and training seed, under the first two scorers: does the sign hold?"""
    return key_change_table(per_seed, first_two_scorers)


def scorers_better(entry: RowCells, baseline: RowCells) -> tuple[int, int]:
    """How many scorers' mean FD fell from the baseline, and how many scorers could judge the change."""
    judged = [changes for changes in (paired(entry, baseline, scorer(seed)) for seed in PANEL_SEEDS) if changes]
    return sum(statistics.fmean(changes) < 0 for changes in judged), len(judged)


def judged_changes(found: dict[str, RowCells]) -> list[tuple[str, str]]:
    """Every row with its baseline among the cached rows: the key changes first, then the rest in table order."""
    keys = key_changes(found)
    rest = [(name, entry.row.baseline) for name, entry in found.items()
            if entry.row.baseline in found and (name, entry.row.baseline) not in keys]
    return keys + rest


def judges_table(found: dict[str, RowCells], changes: list[tuple[str, str]] | None = None) -> list[str]:
    """Every change (or those given) of one model and training seed under every judge, on the seeds it could score."""
    names = [scorer(seed) for seed in PANEL_SEEDS]
    lines = ["| change | seeds | " + " | ".join(f"ΔFD {name}" for name in names)
             + " | scorers finding it better | Δ patch SWD ×100 | fine / middle / coarse level "
             "| edge energy vs real: row / baseline |",
             "|---|" + "---|" * (len(names) + 5)]
    for row, base in judged_changes(found) if changes is None else changes:
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


def verdict(entry: RowCells, baseline: RowCells) -> str:
    """"4/5 ↓, patches ↑": how many scorers' mean FD fell, and which way the patch judge moved ("-" if unjudged)."""
    better, judged = scorers_better(entry, baseline)
    patch = paired(entry, baseline, "patches")
    patch_text = "" if not patch else f", patches {'↓' if statistics.fmean(patch) < 0 else '↑'}"
    return f"{better}/{judged} ↓{patch_text}"


def verdicts_table(per_seed: dict[str, dict[str, RowCells]]) -> list[str]:
    """Each key change per model and training seed: how many judges find it better (↓: lower distance)."""
    return key_change_table(per_seed, verdict)


def sanity_table(judges: Judges) -> tuple[list[str], bool]:
    """Real images blurred with sigma 0, 0.5, 1, 2 (all channels): every judge's score must grow with the blur."""
    names = [scorer(seed) for seed in PANEL_SEEDS] + ["patches"]
    lines = ["| real images, blur sigma | " + " | ".join(f"FD, {name}" if name != "patches" else "patch SWD ×100"
                                                      for name in names) + " | edge energy vs real |",
             "|---|" + "---|" * (len(names) + 1)]
    means = []
    for sigma in (0.0, 0.5, 1.0, 2.0):
        per_judge = {name: [] for name in [*names, "edge"]}
        for seed in SAMPLING_SEEDS:
            images, _ = sample_set(128, REAL_SEED + seed)
            blurred = gaussian_blur_2d(images, sigma) if sigma else images
            verdicts = judges.verdicts({"seed": seed, "arrays": {"images": blurred.numpy()}})
            for name in per_judge:
                per_judge[name].append(verdicts[name])
        stats = {name: spread(values) for name, values in per_judge.items()}
        means.append([stats[name][0] for name in names])
        lines.append(f"| {sigma:g} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in stats.values()) + " |")
    monotone = all(later[i] > earlier[i] for earlier, later in zip(means, means[1:]) for i in range(len(names)))
    return lines, monotone


PLOT_JUDGES = (PRIMARY, PANEL)
PLOT_SAMPLERS = {"Euler a": CFG, "DPM++ 2M": "DPM++ 2M CFG"}
"""The samplers the frontier plot has panels for, each with the CFG row its changes are taken from."""
PLOT_KINDS = {"CFG": ("o", "tab:blue"), "CFG, more steps": ("s", "tab:cyan"), "CFG + SAG": ("D", "tab:red"),
              "SAG alone": ("^", "tab:orange"), "no guidance": ("x", "black")}


def frontier_plot(per_model: dict[str, dict[str, dict[int, RowCells]]], models: dict[str, ModelSpec],
                  path: Path) -> None:
    """Change from CFG 3 (same seeds) against U-Net passes per image: a panel per judge and sampler (rows) and model.

    Each point is one frontier row (or a sampler row): the mean ± sd of its paired changes over every training
    and sampling seed the model has (for the patch judge, those whose cells keep their images). Paired changes,
    not raw scores, because the seeds' spread is larger than the effects. The y axis is symlog (linear within
    ±1, logarithmic beyond, said on the axis), so strong CFG's large losses fit beside SAG's small gains. The
    primary judge's panels come first; a sampler gets panels only where it has rows.
    """
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samplers = [sampler for sampler in PLOT_SAMPLERS
                if any(entry.row.sampler == sampler for rows in per_model.values() for by_seed in rows.values()
                       for entry in by_seed.values())]
    panels = [(judge, sampler) for judge in PLOT_JUDGES for sampler in samplers]
    figure, axes = plt.subplots(len(panels), len(per_model), figsize=(7.5 * len(per_model), 5.8 * len(panels)),
                                squeeze=False)
    for (judge, sampler), axes_row in zip(panels, axes):
        for axis, (model, rows) in zip(axes_row, per_model.items()):
            frontier_panel(axis, {name: by_seed for name, by_seed in rows.items()
                                  if next(iter(by_seed.values())).row.sampler == sampler},
                           judge, PLOT_SAMPLERS[sampler])
            role = "primary judge" if judge == PRIMARY else "secondary judge"
            axis.set_title(textwrap.fill(f"model '{model}' ({models[model].about}); {sampler}; {role}: {judge}", 70),
                           fontsize=9)
    figure.tight_layout(h_pad=3.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def spaced_offsets(points: list[tuple[float, float]], gap: float = 11.0) -> list[float]:
    """Vertical label offsets (points) that keep labels of points at the same x from sitting on each other:
    the labels of one x are stacked in the order of their y, `gap` points apart, centred on the middle one."""
    offsets = [0.0] * len(points)
    by_x: dict[float, list[int]] = {}
    for index, (x, _) in enumerate(points):
        by_x.setdefault(round(x), []).append(index)
    for indices in by_x.values():
        ordered = sorted(indices, key=lambda i: points[i][1])
        for rank, index in enumerate(ordered):
            offsets[index] = gap * (rank - (len(ordered) - 1) / 2)
    return offsets


def frontier_panel(axis, rows: dict[str, dict[int, RowCells]], judge: str, baseline: str) -> None:
    """One model's rows of one sampler under one judge: each row's paired change from `baseline` against its passes."""
    import matplotlib.ticker
    bases = rows.get(baseline, {})
    points = []
    for name, by_seed in rows.items():
        entries = list(by_seed.values())
        row = entries[0].row
        changes = [change for seed, entry in by_seed.items() if seed in bases
                   for change in paired(entry, bases[seed], judge)]
        if not changes or name == "best CFG":  # the best-CFG row is one of the CFG rows, drawn already
            continue
        kind = ("CFG + SAG" if row.sag is not None and row.cfg_scale > 1 else "SAG alone" if row.sag is not None
                else "CFG, more steps" if row.steps != 20 else "CFG" if row.cfg_scale > 1 else "no guidance")
        shift = 1.2 if kind in ("CFG + SAG", "SAG alone") else -1.2  # rows of equal cost side by side
        passes = statistics.fmean(c["unet_passes_per_image"] for e in entries for c in e.cells.values()) + shift
        label = f"{name} (CFG {row.cfg_scale:g})" if row.name.startswith("best") else name
        points.append((kind, passes, *spread(changes), label))
    offsets = spaced_offsets([(passes, mean) for _, passes, mean, _, _ in points])
    for (kind, passes, mean, sd, label), offset in zip(points, offsets):
        marker, colour = PLOT_KINDS[kind]
        right = kind in ("CFG + SAG", "SAG alone")
        axis.errorbar(passes, mean, yerr=sd, fmt=marker, color=colour, capsize=3,
                      label=kind if kind not in axis.get_legend_handles_labels()[1] else None)
        axis.annotate(label, (passes, mean), textcoords="offset points", fontsize=7,
                      xytext=(8 if right else -8, offset - 3), ha="left" if right else "right")
    axis.axhline(0.0, color="grey", linewidth=0.8)
    axis.set_yscale("symlog", linthresh=1.0)
    axis.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    if points:
        xs = [passes for _, passes, _, _, _ in points]
        axis.set_xlim(min(xs) - 12, max(xs) + 12)
    axis.set_xlabel("U-Net passes per image (rows of U-Net input; CFG at 20 steps = 40)")
    measure = {"patches": "patch SWD ×100", PANEL: f"FD, mean of {len(PANEL_SEEDS)} scorers"}.get(judge, "FD")
    axis.set_ylabel(f"Δ {measure} from {baseline}\n(below 0 = better; symlog axis: linear within ±1)", fontsize=8)
    if axis.get_legend_handles_labels()[1]:
        axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=5, frameon=False)
    axis.grid(alpha=0.3)


def model_tables(lab, models: dict[str, ModelSpec], rows: list[Row], judges: Judges,
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


def write(lab, docs: Path, models: dict[str, ModelSpec] = MODELS, rows: list[Row] | None = None,
          plot_groups: tuple[str, ...] = ("frontier", "samplers")) -> None:
    """Rebuild docs/quality-results.md and docs/quality-frontier.png from the cached cells."""
    judges = Judges.build(lab)
    rows = rows if rows is not None else rows_of(["frontier", "samplers", "ablations"])
    tables, per_seed, per_model = model_tables(lab, models, rows, judges, plot_groups)
    lines = ["# Quality lab: every table", "",
             "Generated by `python tools/quality.py report` from the cell cache (out/quality/cells); do not edit. "
             "What the rows and scores are, and what they say, is in [quality.md](quality.md).", "", *tables]
    lines += ["## Replication: the key changes per model and training seed", "",
              "Each cell: mean ΔFD over the sampling seeds under scorer 1 / scorer 2, and (on how many sampling seeds "
              "scorer 1's FD fell / seeds).", "", *replication_table(per_seed), ""]
    lines += ["## The judges: every change under every judge", "",
              f"Mean change over the sampling seeds under each of the {len(PANEL_SEEDS)} scoring classifiers (seeds "
              f"{', '.join(map(str, PANEL_SEEDS))}; those after the second need the cell's images) and the patch "
              "judge (sliced Wasserstein distance between 7×7 patches of the samples' and the real images' Laplacian "
              "pyramids at 32, 16 and 8 pixels, no classifier; in brackets, on how many seeds it fell). Edge energy: "
              "the mean absolute difference of neighbouring pixels against the real images' (1 = theirs).", ""]
    lines += ["Summary: on how many scorers the change lowered the mean FD (of those that could judge it), and "
              "whether it lowered (↓) or raised (↑) the patch judge's distance.", "", *verdicts_table(per_seed), ""]
    for key, found in per_seed.items():
        lines += [f"### {key}", "", *judges_table(found), ""]
    sanity, monotone = sanity_table(judges)
    lines += ["## Sanity: blurred real images", "", *sanity, "",
              f"Every judge's distance grows with the blur: {'yes' if monotone else 'NO'}.", ""]
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "quality-results.md").write_text("\n".join(lines))
    if per_model:
        frontier_plot(per_model, models, docs / "quality-frontier.png")
    print(f"wrote {docs / 'quality-results.md'} and {docs / 'quality-frontier.png'} "
          f"({sum(len(f) for f in per_seed.values())} rows over {len(per_seed)} trained models)")


FAMILY_PAGE = "quality-family.md"
FAMILY_CHANGES = [  # beyond each row's baseline and equal-cost CFG: one method against another; what a second adds
    ("CFG + PAG", "CFG + SAG"), ("CFG + SEG", "CFG + SAG"), ("CFG + SEG", "CFG + PAG"),
    ("CFG + SAG + PAG", "CFG + SAG"), ("CFG + SAG + PAG", "CFG + PAG"), ("CFG + SAG + SEG", "CFG + SAG"),
    ("CFG + SAG + SEG", "CFG + SEG"), ("CFG + PAG + SEG", "CFG + PAG"), ("CFG + PAG + SEG", "CFG + SEG"),
    ("PAG alone", "SAG alone"), ("SEG alone", "SAG alone"),
    ("CFG + PAG on output 0", "CFG + PAG"), ("CFG + SEG on output 0", "CFG + SEG")]


def passes(entry: RowCells) -> float:
    """The row's U-Net passes per image (rows of U-Net input), over its cells."""
    return statistics.fmean(cell["unet_passes_per_image"] for cell in entry.cells.values())


def equal_cost_changes(found: dict[str, RowCells]) -> list[tuple[str, str]]:
    """Each guided row (SAG, PAG or SEG on) against the plain CFG row of its sampler and CFG scale that costs
    the same U-Net passes in more steps: what the same passes would buy without the method."""
    def cost(row: Row, entry: RowCells) -> tuple:
        return row.sampler, row.cfg_scale, round(passes(entry))
    plain = {cost(e.row, e): name for name, e in found.items() if e.row.sag is None and not e.row.family}
    return [(name, plain[cost(e.row, e)]) for name, e in found.items()
            if (e.row.sag is not None or e.row.family) and cost(e.row, e) in plain]


def page_changes(per_seed: dict[str, dict[str, RowCells]],
                 extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A page's changes, each once: every row against its baseline, against CFG at equal cost, then `extra`."""
    found_changes = [change for found in per_seed.values()
                     for change in (*[(name, entry.row.baseline) for name, entry in found.items()],
                                    *equal_cost_changes(found), *extra)
                     if change[0] in found and change[1] in found]
    return list(dict.fromkeys(found_changes))


def family_verdict(entry: RowCells, baseline: RowCells) -> str:
    """"+0.53 (0/3); −0.78 (3/3); 3/5 ↓": the primary judge's mean change ×100 (seeds it fell), then the
    secondary ones: scorer 1's mean ΔFD (seeds it fell) and how many scorers' mean FD fell."""
    first, patch = paired(entry, baseline), paired(entry, baseline, PRIMARY)
    better, judged = scorers_better(entry, baseline)
    patch_text = "-" if not patch else f"{mean_change(patch)} ({sum(c < 0 for c in patch)}/{len(patch)})"
    return f"{patch_text}; {mean_change(first)} ({sum(c < 0 for c in first)}/{len(first)}); {better}/{judged} ↓"


def cost_table(per_seed: dict[str, dict[str, RowCells]]) -> list[str]:
    """Each row's settings and U-Net passes per image (counted, the same on every trained model)."""
    lines = ["| row | CFG | steps | SAG; PAG, SEG | U-Net passes per image |", "|---|---|---|---|---|"]
    seen: dict[str, RowCells] = {}
    for found in per_seed.values():
        for name, entry in found.items():
            seen.setdefault(name, entry)
    for name, entry in seen.items():
        row = entry.row
        lines.append(f"| {name} | {row.cfg_scale:g} | {row.steps} | {row.describe()} | {passes(entry):.0f} |")
    return lines


MASKS_PAGE = "quality-masks.md"
MASK_CHANGES = [("DPM++ 2M CFG + SAG", "DPM++ 2M random mask, SAG's coverage"),
                ("DPM++ 2M CFG + SAG", "DPM++ 2M inverse mask"), ("DPM++ 2M CFG + SAG", "DPM++ 2M global blur, scale 0.75")]
"""Beyond each row against DPM++ 2M CFG: SAG's saliency mask against each other mask at the same scale."""


def set_page_parts(lab, models: dict[str, ModelSpec], rows: list[Row], extra: list[tuple[str, str]]
                   ) -> tuple[list[str], dict[str, dict[str, RowCells]], list[tuple[str, str]]]:
    """What a row set's own page is made of: the per-model tables, the judged rows by model and training seed,
    and its changes (page_changes with `extra`)."""
    tables, per_seed, _ = model_tables(lab, models, rows, Judges.build(lab))
    return tables, per_seed, page_changes(per_seed, extra)


def write_page(path: Path, lines: list[str], per_seed: dict[str, dict[str, RowCells]]) -> None:
    """Write a row set's page and say how much it covers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path} ({sum(len(f) for f in per_seed.values())} rows over {len(per_seed)} trained models)")


def write_masks(lab, docs: Path, models: dict[str, ModelSpec] = MODELS, rows: list[Row] | None = None) -> None:
    """Write docs/quality-masks.md (the mask ablations with DPM++ 2M) from the `masks` rows' cells alone."""
    tables, per_seed, changes = set_page_parts(lab, models, rows if rows is not None else rows_of(["masks"]),
                                               MASK_CHANGES)
    lines = ["# Quality lab: the mask ablations where SAG paid (DPM++ 2M)", "",
             "Generated by `python tools/quality.py report --sets masks` from the masks rows' cells "
             "(out/quality/cells); do not edit. What the scores are, and why the patch judge is the primary one, is "
             "in [quality.md](quality.md). The rows: DPM++ 2M, 20 steps, CFG 3; SAG at its defaults with its "
             "saliency mask, a random mask of the same coverage, the inverse mask, and a global blur (threshold 0), "
             "all at scale 0.75.", "",
             "## The primary judge, pooled over every trained model", "",
             "Each change's paired differences under the patch judge ×100 over every trained model and sampling "
             f"seed: mean, 95 % percentile bootstrap interval ({BOOTSTRAP_DRAWS} resamples of the pairs), pairs on "
             "which it fell, two-sided exact sign test. Below 0 is better; \"A vs B\" is A minus B.", "",
             *pooled_test_table(per_seed, changes), "",
             "## Summary: every change per model and training seed", "",
             "Primary judge first: the patch judge's mean change ×100 (seeds it fell / seeds); then scorer 1's mean "
             "ΔFD (seeds it fell / seeds) and on how many scorers the mean FD fell (↓; correlated, not votes).", "",
             *key_change_table(per_seed, family_verdict, changes), "", *tables]
    write_page(docs / MASKS_PAGE, lines, per_seed)


def write_family(lab, docs: Path, models: dict[str, ModelSpec] = MODELS, rows: list[Row] | None = None) -> None:
    """Write docs/quality-family.md (PAG and SEG beside SAG and CFG at equal cost) from the family rows' cells alone."""
    tables, per_seed, changes = set_page_parts(lab, models, rows if rows is not None else rows_of(["family"]),
                                               FAMILY_CHANGES)
    lines = ["# Quality lab: PAG and SEG beside SAG", "",
             "Generated by `python tools/quality.py report --sets family` from the family rows' cells "
             "(out/quality/cells); do not edit. What the scores are is in [quality.md](quality.md); what these say "
             "is its section \"PAG and SEG\"; the judges' sanity check (blurred real images) is in "
             "[quality-results.md](quality-results.md).", "",
             "## Cost", "", "Counted rows of U-Net input per image (CFG at 20 steps: cond and uncond = 40). Each "
             "method adds one pass per guided step; the CFG rows at 30 and 40 steps spend the same passes on steps.",
             "", *cost_table(per_seed), "",
             "## The primary judge, pooled over every trained model", "",
             "The patch judge (the lab's primary judge, see quality.md): each change's paired differences ×100 over "
             "every trained model and sampling seed; the mean, a 95 % percentile bootstrap interval of it "
             f"({BOOTSTRAP_DRAWS} resamples of the pairs), on how many pairs it fell, and the two-sided exact sign "
             "test against no change. The pairs of one trained model share its weights, so the interval and the "
             "test are optimistic about how far a result carries to other models.", "",
             *pooled_test_table(per_seed, changes), "",
             "## Summary: every change per model and training seed", "",
             "Each cell, primary judge first: the patch judge's mean change ×100 (on how many seeds it fell / "
             "seeds); then the secondary judges: scorer 1's mean ΔFD over the sampling seeds (on how many seeds it "
             f"fell / seeds) and on how many of the {len(PANEL_SEEDS)} scorers the mean FD fell (↓; the scorers "
             "are one architecture trained on one generator, so they are correlated, not independent votes). Below "
             "0 is better. A change is against the row's baseline, against the CFG row that costs the same passes, "
             "or one method against another.", "",
             *key_change_table(per_seed, family_verdict, changes), "", *tables,
             "## The judges: every change under every judge", ""]
    for key, found in per_seed.items():
        lines += [f"### {key}", "", *judges_table(found, changes), ""]
    write_page(docs / FAMILY_PAGE, lines, per_seed)
