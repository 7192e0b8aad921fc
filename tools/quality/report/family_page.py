"""The family page, docs/quality-family.md (PAG and SEG beside SAG), and the builders of a row set's own page.

A row set's page is written alone from its rows' cells, which a partial cache may hold; the masks page
(masks_page.py) is built with the same builders.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..lab import Lab
from ..rows import Row, rows_of
from ..weights import MODELS, PANEL_SEEDS, ModelSpec
from .judges import PRIMARY, Judges, RowCells, paired, scorers_better
from .stats import BOOTSTRAP_DRAWS, mean_change
from .tables import judges_table, key_change_table, model_tables, pooled_test_table

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


def set_page_parts(lab: Lab, models: dict[str, ModelSpec], rows: list[Row], extra: list[tuple[str, str]]
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


def write_family(lab: Lab, docs: Path, models: dict[str, ModelSpec] = MODELS, rows: list[Row] | None = None) -> None:
    """Write docs/quality-family.md (PAG and SEG beside SAG and CFG at equal cost) from the family rows' cells alone."""
    tables, per_seed, changes = set_page_parts(lab, models, rows if rows is not None else rows_of(["family"]),
                                               FAMILY_CHANGES)
    lines = ["# Quality lab: PAG and SEG beside SAG", "",
             "Generated by `python -m tools.quality report --sets family` from the family rows' cells "
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
