"""The quality lab: is SAG worth its extra U-Net passes, against spending them on CFG? Measured on CPU.

Trains (or loads from the cache) small class-conditional diffusion models on the ldm U-Net the
webui runs (tools/quality_weights.py), on a procedural set of shapes (tools/quality_data.py), and
two small scoring classifiers. Samples every row (tools/quality_rows.py) through the test host's
webui path with our real script, one cell per model, training seed, row and sampling seed, each
cached as soon as it is done (tools/quality_cells.py), so a stopped run resumes where it stopped.
The report (tools/quality_report.py) is rebuilt from the cache alone.

    python tools/quality.py run [--models base,short] [--training-seeds 0,1,2] [--seeds 1,2,3,4,5]
                                [--sets frontier,samplers,ablations]
    python tools/quality.py report            # docs/quality-results.md and docs/quality-frontier.png
    python tools/quality.py report --sets family   # docs/quality-family.md alone (PAG and SEG beside SAG)
    python tools/quality.py report --sets masks    # docs/quality-masks.md alone (the mask ablations, DPM++ 2M)
    python tools/quality.py quick --out DIR   # the smoke test: tiny trainings, four rows, two seeds
    python tools/quality.py quick --sets family --out DIR   # the same for the family rows and page
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "tools", ROOT / "tests" / "host", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import harness  # noqa: E402
from models import TinyLatentDiffusion  # noqa: E402
from modules import sd_hijack_unet, shared  # noqa: E402
from quality_cells import CellCache, Sampling, compute_cell  # noqa: E402
from quality_data import sample_set  # noqa: E402
from quality_models import ClassifierConfig, ShapeClassifier, TrainConfig  # noqa: E402
from quality_rows import CFG_SCALES, ROW_SETS, Row, cfg_name, family_rows, quick_rows, rows_of  # noqa: E402
from quality_scores import classify, frechet_distance  # noqa: E402
from quality_weights import (MODELS, SCORER_SEEDS, TRAINING_SEEDS, ModelSpec, diffusion_model,  # noqa: E402
                             scoring_classifier)
from sag_core.attention_hook import find_middle_self_attention  # noqa: E402

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
    cells = {scale: {seed: lab.cells.load(key, Row("frontier", cfg_name(scale), scale), seed) for seed in BEST_CFG_SEEDS}
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


def install_model(unet: torch.nn.Module) -> None:
    shared.sd_model = TinyLatentDiffusion(unet)
    find_middle_self_attention(unet)  # the hook's target exists, or this raises


def save_grid(images: torch.Tensor, path: Path, columns: int = 8) -> None:
    """The RGB channels of up to 2 rows of `columns` images as one picture."""
    shown = ((images[:2 * columns, :3].clamp(-1, 1) + 1) * 127.5).byte().permute(0, 2, 3, 1).numpy()
    rows = [np.concatenate(list(shown[i:i + columns]), axis=1) for i in range(0, len(shown), columns)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).resize((columns * 96, len(rows) * 96), Image.NEAREST).save(path)


def run(lab: Lab, specs: list[ModelSpec], training_seeds: list[int], seeds: tuple[int, ...], rows: list[Row],
        refill_images: bool = False) -> None:
    """Sample and cache every missing cell, model by model; prints each cell as it is done.

    With `refill_images`, a cached cell without its images (made before cells kept them) is sampled again
    and replaced, only if the new images are bit for bit the cached ones (the same digest).
    """
    scorers = lab.scorers()
    reference = lab.reference(scorers)[SCORER_SEEDS[0]]
    harness.reset_host_state()
    sd_hijack_unet.apply_optimizations()
    ext = harness.load_extension()
    for spec in specs:
        for training_seed in training_seeds:
            model, _ = diffusion_model(lab.weights, spec, training_seed)
            install_model(model.unet)
            key = model_key(spec, training_seed)
            for planned in rows:
                best = best_cfg_scale(lab, key, reference) if planned.best_cfg else None
                row = resolve(planned, best)
                if row is None:
                    print(f"{key}: {planned.name} skipped: its CFG scale needs the CFG rows first", flush=True)
                    continue
                for seed in seeds:
                    cached = lab.cells.meta(key, row, seed)
                    if cached is not None and (not refill_images or lab.cells.has_images(key, row, seed)):
                        continue
                    cell, images = compute_cell(ext, model, scorers, row, seed, lab.sampling)
                    if cached is not None and cell["digest"] != cached["digest"]:
                        raise SystemExit(f"{key} {row.name} seed {seed}: sampled again, the images differ from the "
                                         "cached cell's (another CPU or torch?); the cell is kept as it was")
                    lab.cells.save(key, row, seed, cell)
                    if seed == seeds[0]:
                        save_grid(images, lab.out / "samples" / key / f"{row.key()}.png")
                    fd = frechet_distance(cell["arrays"][f"features_{SCORER_SEEDS[0]}"], reference)
                    print(f"{key} {row.name} (CFG {row.cfg_scale:g}) seed {seed}: FD {fd:.2f}, "
                          f"{cell['unet_passes_per_image']:.0f} passes, {cell['seconds']:.0f} s", flush=True)


QUICK_MODEL = ModelSpec("quick", MODELS["base"].unet, TrainConfig(steps=8, batch=8, warmup=4), "smoke test only")
QUICK_LAB = {"classifier": ClassifierConfig(steps=8, batch=16), "sampling": Sampling(images=8, batch=8),
             "reference_images": 64}


def quick(out: Path, family: bool = False) -> dict:
    """Tiny trainings, the four quick rows at 3 steps, two seeds: each row's image digests and first-scorer FDs.

    With `family`, the family rows at a tenth of their steps (so 30 and 40 steps stay the equal-cost rows)
    and the family page alone, as `report --sets family` writes it from a cache holding only their cells.
    """
    lab = Lab(out=out, **QUICK_LAB)
    rows = ([replace(row, steps=row.steps // 10) for row in family_rows()] if family
            else [replace(row, steps=3) for row in quick_rows()])
    run(lab, [QUICK_MODEL], [0], (1, 2), rows)
    reference = lab.reference(lab.scorers())[SCORER_SEEDS[0]]
    result = {}
    for row in rows:
        cells = [lab.cells.load(model_key(QUICK_MODEL, 0), row, seed) for seed in (1, 2)]
        result[row.name] = {"digests": [cell["digest"] for cell in cells],
                            "fd": [frechet_distance(cell["arrays"][f"features_{SCORER_SEEDS[0]}"], reference)
                                   for cell in cells],
                            "unet_passes_per_image": cells[0]["unet_passes_per_image"],
                            "mask_coverage": cells[0]["mask_coverage"]}
    import quality_report
    if family:
        quality_report.write_family(lab, out / "docs", {QUICK_MODEL.name: QUICK_MODEL}, rows)
    else:
        quality_report.write(lab, out / "docs", {QUICK_MODEL.name: QUICK_MODEL}, rows, plot_groups=("quick",))
    summary = {"rows": result, "batch_invariant": batch_invariant(lab)}
    (out / "quick.json").write_text(json.dumps(summary, indent=1))
    return summary


@torch.no_grad()
def batch_invariant(lab: Lab) -> bool:
    """Whether this machine's U-Net gives the uncond rows of a CFG batch bit for bit when run on them alone.

    Only then can the sigma-0 row (whose extra pass runs the uncond rows alone on exactly their own
    input) equal the CFG row bit for bit; CPU kernels may pick other blockings for other batch sizes.
    """
    model, _ = diffusion_model(lab.weights, QUICK_MODEL, 0)
    rows = lab.sampling.batch
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2 * rows, 4, 32, 32, generator=generator)
    t = torch.full((2 * rows,), 500)
    context = model.context(torch.arange(2 * rows) % 9)
    both = model.unet(x, t, context=context)
    return torch.equal(both[rows:], model.unet(x[rows:], t[rows:], context=context[rows:]))


def chosen_rows(sets: str, names: str) -> list[Row]:
    """The rows of the comma-separated sets, only those named in `names` if it names any."""
    rows = rows_of(sets.split(","))
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {row.name for row in rows})
    if unknown:
        raise SystemExit(f"--rows: no row named {', '.join(unknown)} in the sets {sets}")
    return [row for row in rows if not wanted or row.name in wanted]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        import quality_report
        sets = set(args.sets.split(","))
        if sets - {"family", "masks"}:
            quality_report.write(Lab(out=args.out), args.docs)
        if "family" in sets:
            quality_report.write_family(Lab(out=args.out), args.docs)
        if "masks" in sets:
            quality_report.write_masks(Lab(out=args.out), args.docs)
    print(f"{args.command}: {time.perf_counter() - started:.0f} s, torch {torch.__version__}")


if __name__ == "__main__":
    main()
