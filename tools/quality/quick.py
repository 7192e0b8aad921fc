"""The lab's smoke test: tiny trainings, a few rows at a few steps, two seeds, and the report's page of them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from . import report
from .cells import Sampling
from .lab import Lab, model_key
from .models import ClassifierConfig, TrainConfig
from .rows import family_rows, quick_rows
from .runner import run
from .scores import frechet_distance
from .weights import MODELS, SCORER_SEEDS, ModelSpec, diffusion_model

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
    if family:
        report.write_family(lab, out / "docs", {QUICK_MODEL.name: QUICK_MODEL}, rows)
    else:
        report.write(lab, out / "docs", {QUICK_MODEL.name: QUICK_MODEL}, rows, plot_groups=("quick",))
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
