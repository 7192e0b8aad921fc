"""The report's main page, docs/quality-results.md: every table of the frontier, samplers and ablations rows.

Beside it the frontier plot (plots.py), the key changes per model and training seed, every change under
every judge, and the judges' sanity check on blurred real images.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..data import sample_set
from ..host import gaussian_blur_2d
from ..lab import REAL_SEED, SAMPLING_SEEDS, Lab
from ..rows import CFG, NO_GUIDANCE, Row, cfg_name, rows_of
from ..weights import MODELS, PANEL_SEEDS, ModelSpec
from .judges import SECOND, Judges, RowCells, paired, scorer, scorers_better
from .plots import frontier_plot
from .stats import mean_change, spread
from .tables import judges_table, key_change_table, model_tables

KEY_CHANGES = [  # (row, baseline): the comparisons a user's question turns on
    ("CFG + SAG", CFG), (f"{cfg_name(3.0, 30)}", CFG), ("best CFG + SAG", "best CFG"), ("CFG + SAG 0.5-1", CFG),
    (f"{cfg_name(3.0, 25)}", CFG), (cfg_name(2.0), CFG), (cfg_name(5.0), CFG),
    ("SAG alone", NO_GUIDANCE), ("DPM++ 2M CFG + SAG", "DPM++ 2M CFG"), ("DPM++ 2M CFG, 30 steps", "DPM++ 2M CFG"),
    ("DDIM CFG + SAG", "DDIM CFG"), ("DDIM CFG, 30 steps", "DDIM CFG"),
    ("DDIM CFG++ 7.5 + SAG", "DDIM CFG++ 7.5")]


def key_changes(found: dict[str, RowCells]) -> list[tuple[str, str]]:
    return [(row, base) for row, base in KEY_CHANGES if row in found and base in found]


def judged_changes(found: dict[str, RowCells]) -> list[tuple[str, str]]:
    """Every row with its baseline among the cached rows: the key changes first, then the rest in table order."""
    keys = key_changes(found)
    rest = [(name, entry.row.baseline) for name, entry in found.items()
            if entry.row.baseline in found and (name, entry.row.baseline) not in keys]
    return keys + rest


def first_two_scorers(entry: RowCells, baseline: RowCells) -> str:
    """"−0.78 / +0.72 (3/3)": mean change under scorer 1 / scorer 2, and on how many seeds scorer 1's FD fell."""
    first, second = paired(entry, baseline), paired(entry, baseline, scorer(SECOND))
    return f"{mean_change(first)} / {mean_change(second)} ({sum(c < 0 for c in first)}/{len(first)})"


def replication_table(per_seed: dict[str, dict[str, RowCells]]) -> list[str]:
    """The key changes per model and training seed, under the first two scorers: does the sign hold?"""
    return key_change_table(per_seed, first_two_scorers, KEY_CHANGES)


def verdict(entry: RowCells, baseline: RowCells) -> str:
    """"4/5 ↓, patches ↑": how many scorers' mean FD fell, and which way the patch judge moved ("-" if unjudged)."""
    better, judged = scorers_better(entry, baseline)
    patch = paired(entry, baseline, "patches")
    patch_text = "" if not patch else f", patches {'↓' if statistics.fmean(patch) < 0 else '↑'}"
    return f"{better}/{judged} ↓{patch_text}"


def verdicts_table(per_seed: dict[str, dict[str, RowCells]]) -> list[str]:
    """Each key change per model and training seed: how many judges find it better (↓: lower distance)."""
    return key_change_table(per_seed, verdict, KEY_CHANGES)


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


def write(lab: Lab, docs: Path, models: dict[str, ModelSpec] = MODELS, rows: list[Row] | None = None,
          plot_groups: tuple[str, ...] = ("frontier", "samplers")) -> None:
    """Rebuild docs/quality-results.md and docs/quality-frontier.png from the cached cells."""
    judges = Judges.build(lab)
    rows = rows if rows is not None else rows_of(["frontier", "samplers", "ablations"])
    tables, per_seed, per_model = model_tables(lab, models, rows, judges, plot_groups)
    lines = ["# Quality lab: every table", "",
             "Generated by `python -m tools.quality report` from the cell cache (out/quality/cells); do not edit. "
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
        lines += [f"### {key}", "", *judges_table(found, judged_changes(found)), ""]
    sanity, monotone = sanity_table(judges)
    lines += ["## Sanity: blurred real images", "", *sanity, "",
              f"Every judge's distance grows with the blur: {'yes' if monotone else 'NO'}.", ""]
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "quality-results.md").write_text("\n".join(lines))
    if per_model:
        frontier_plot(per_model, models, docs / "quality-frontier.png")
    print(f"wrote {docs / 'quality-results.md'} and {docs / 'quality-frontier.png'} "
          f"({sum(len(f) for f in per_seed.values())} rows over {len(per_seed)} trained models)")
