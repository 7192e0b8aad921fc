"""The report's plot, docs/quality-frontier.png: each row's change from CFG against its U-Net passes."""

from __future__ import annotations

import statistics
from pathlib import Path

from ..rows import CFG
from ..weights import PANEL_SEEDS, ModelSpec
from .judges import PANEL, PRIMARY, RowCells, paired
from .stats import spread

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
