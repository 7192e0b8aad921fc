"""Sampling the lab's rows: every missing cell sampled through the test host and cached, model by model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .cells import compute_cell
from .host import TinyLatentDiffusion, find_middle_self_attention, harness, sd_hijack_unet, shared
from .lab import Lab, best_cfg_scale, model_key, resolve
from .rows import Row
from .scores import frechet_distance
from .weights import SCORER_SEEDS, ModelSpec, diffusion_model


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
