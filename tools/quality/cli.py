"""The quality lab's command line: sample the rows into the cache, rebuild the report from it, or the smoke test.

    python -m tools.quality run [--models base,short] [--training-seeds 0,1,2] [--seeds 1,2,3,4,5]
                                [--sets frontier,samplers,ablations]
    python -m tools.quality report            # docs/quality-results.md and docs/quality-frontier.png
    python -m tools.quality report --sets family   # docs/quality-family.md alone (PAG and SEG beside SAG)
    python -m tools.quality report --sets masks    # docs/quality-masks.md alone (the mask ablations, DPM++ 2M)
    python -m tools.quality quick --out DIR   # the smoke test: tiny trainings, four rows, two seeds
    python -m tools.quality quick --sets family --out DIR   # the same for the family rows and page

Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from . import ROOT, report
from .lab import OUT, SAMPLING_SEEDS, Lab
from .quick import quick
from .rows import ROW_SETS, Row, rows_of
from .runner import run
from .weights import MODELS, TRAINING_SEEDS


def chosen_rows(sets: str, names: str) -> list[Row]:
    """The rows of the comma-separated sets, only those named in `names` if it names any."""
    rows = rows_of(sets.split(","))
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {row.name for row in rows})
    if unknown:
        raise SystemExit(f"--rows: no row named {', '.join(unknown)} in the sets {sets}")
    return [row for row in rows if not wanted or row.name in wanted]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the command."""
    parser = argparse.ArgumentParser(prog="python -m tools.quality", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "report", "quick"))
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--training-seeds", default=",".join(map(str, TRAINING_SEEDS)))
    parser.add_argument("--seeds", default=",".join(map(str, SAMPLING_SEEDS)), help="sampling seeds")
    parser.add_argument("--sets", default=",".join(ROW_SETS), help="row sets: " + ", ".join(ROW_SETS) + "; "
                        "report: the family page if family is among them, every other table if another set is; "
                        "quick: family for the family rows and page")
    parser.add_argument("--out", type=Path, default=OUT, help="caches, samples and results")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where report writes its page and plot")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default="", help="run: only the rows of these names (comma-separated)")
    parser.add_argument("--images", action="store_true",
                        help="run: also sample again the cached cells that keep no images (checked by digest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.command == "quick":
        print(json.dumps(quick(args.out, family=args.sets == "family"), indent=1))
    elif args.command == "run":
        specs = [MODELS[name] for name in args.models.split(",")]
        run(Lab(out=args.out), specs, [int(s) for s in args.training_seeds.split(",")],
            tuple(int(s) for s in args.seeds.split(",")), chosen_rows(args.sets, args.rows), args.images)
    else:
        sets = set(args.sets.split(","))
        if sets - {"family", "masks"}:
            report.write(Lab(out=args.out), args.docs)
        if "family" in sets:
            report.write_family(Lab(out=args.out), args.docs)
        if "masks" in sets:
            report.write_masks(Lab(out=args.out), args.docs)
    print(f"{args.command}: {time.perf_counter() - started:.0f} s, torch {torch.__version__}")
