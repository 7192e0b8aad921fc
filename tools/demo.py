"""Show SAG at work on a trained model, without the webui: the same seeds with CFG and with CFG + SAG.

Loads the quality lab's trained model (tools/demo-model/, rebuilt by `python -m tools.demo --export`
from the lab's weight cache) and samples 128 images, 16 of each of 8 shape classes, through the test
host's webui path (webui v1.10.1's CFG denoiser, Euler a, 20 steps, CFG 3) with the extension's own
script, once without and once with SAG at its defaults. Writes out/demo/sag_demo.png: one image of
each class with CFG, the same seeds with CFG + SAG, where SAG blurred (the mask averaged over the
guided steps) and |SAG - CFG|; prints each run's scores (the lab's Fréchet distance to 2048 real
images and the recognised share) and where the picture is.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from tests import host

host.use()

import harness  # noqa: E402
from models import TinyLatentDiffusion  # noqa: E402
from modules import script_callbacks, sd_hijack_unet, shared  # noqa: E402

from .quality import ROOT  # noqa: E402
from .quality.cells import MaskLog, Sampling, sample_cell  # noqa: E402
from .quality.data import CLASSES, sample_set  # noqa: E402
from .quality.lab import REFERENCE_IMAGES, REFERENCE_SEED  # noqa: E402
from .quality.models import ClassifierConfig, DiffusionPair, ShapeClassifier  # noqa: E402
from .quality.rows import Row  # noqa: E402
from .quality.scores import classify, frechet_distance, recognised  # noqa: E402
from .quality.weights import MODELS, classifier_path, code_fingerprint, diffusion_path  # noqa: E402

MODEL_FILE = ROOT / "tools" / "demo-model" / "sag-lab-base-seed0.safetensors"
DEMO_MODEL, DEMO_TRAINING_SEED, DEMO_SCORER_SEED = "base", 0, 1
CFG_ROW, SAG_ROW = Row("demo", "CFG"), Row("demo", "CFG + SAG", sag={})  # Euler a, 20 steps, CFG 3; SAG defaults


def export(weights: Path, target: Path = MODEL_FILE) -> None:
    """Write the lab's cached base model (training seed 0) and first scorer as one float16 safetensors file."""
    from safetensors.torch import save_file
    spec = MODELS[DEMO_MODEL]
    diffusion = torch.load(diffusion_path(weights, spec, DEMO_TRAINING_SEED))
    scorer = torch.load(classifier_path(weights, ClassifierConfig(seed=DEMO_SCORER_SEED)))
    tensors = {f"diffusion.{k}": v.half().contiguous() for k, v in diffusion["state"].items()}
    tensors |= {f"scorer.{k}": v.half().contiguous() for k, v in scorer["state"].items()}
    metadata = {"model": DEMO_MODEL, "training_seed": str(DEMO_TRAINING_SEED), "code": code_fingerprint(),
                "torch": torch.__version__, "diffusion_training": json.dumps(diffusion["log"]),
                "scorer_training": json.dumps(scorer["log"])}
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata=metadata)
    print(f"wrote {target} ({target.stat().st_size / 2**20:.2f} MiB)")


def load(path: Path = MODEL_FILE) -> tuple[DiffusionPair, ShapeClassifier, dict]:
    """The shipped model and scorer in float32, and the file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    model = DiffusionPair(MODELS[DEMO_MODEL].unet, DEMO_TRAINING_SEED)
    model.load_state_dict({k[len("diffusion."):]: v.float() for k, v in tensors.items() if k.startswith("diffusion.")})
    scorer = ShapeClassifier()
    scorer.load_state_dict({k[len("scorer."):]: v.float() for k, v in tensors.items() if k.startswith("scorer.")})
    return model.eval().requires_grad_(False), scorer.eval().requires_grad_(False), metadata


class MaskKeeper:
    """The latest mean mask of each SAG generation, in the order the jobs ran (one per job of the run)."""

    def __init__(self, ext: harness.Extension) -> None:
        self.ext = ext
        self.masks: dict[int, torch.Tensor] = {}

    def __call__(self, params) -> None:
        generation = self.ext.module.active.get()
        if generation is not None and generation.run.mean_mask() is not None:
            self.masks[id(generation)] = generation.run.mean_mask().clone()

    def all(self) -> torch.Tensor:
        return torch.cat(list(self.masks.values()))


def to_pixels(images: torch.Tensor) -> np.ndarray:
    return ((images[:, :3].clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def heat(values: torch.Tensor) -> np.ndarray:
    """Maps of 0..1 (n, h, w) as black-to-yellow RGB images."""
    v = values.clamp(0, 1)
    return (torch.stack([v, v ** 0.5 * 0.85, v ** 3 * 0.2], dim=-1) * 255).byte().numpy()


def picture(rows: list[tuple[str, np.ndarray]], scale: int = 4) -> Image.Image:
    """Labelled rows of equally sized tiles, each tile magnified `scale` times (nearest)."""
    label_width, gap = 150, 2
    tile = rows[0][1].shape[1] * scale
    columns = rows[0][1].shape[0]
    canvas = Image.new("RGB", (label_width + columns * (tile + gap), len(rows) * (tile + gap) + 18), "white")
    draw = ImageDraw.Draw(canvas)
    for index, name in enumerate(CLASSES[:columns]):
        draw.text((label_width + index * (tile + gap) + 4, 2), name, fill="black")
    for r, (label, tiles) in enumerate(rows):
        top = 18 + r * (tile + gap)
        draw.text((4, top + tile // 2 - 6), label, fill="black")
        for c, image in enumerate(tiles):
            canvas.paste(Image.fromarray(image).resize((tile, tile), Image.NEAREST), (label_width + c * (tile + gap), top))
    return canvas


DEFAULT_OUT = ROOT / "out" / "demo" / "sag_demo.png"
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def picture_path(out: Path) -> Path:
    """The file the picture is written to: `out` itself if it names a picture file, else sag_demo.png inside it.

    Checked before sampling, so that a bad --out fails at once rather than after the whole run.
    """
    if out.suffix.lower() in PICTURE_SUFFIXES:
        return out
    if out.suffix and not out.is_dir():
        raise ValueError(f"--out {out}: give a {', '.join(PICTURE_SUFFIXES)} file or a folder")
    return out / DEFAULT_OUT.name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1,
                        help="sampling seed: the same seed gives both runs the same noise (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where the picture goes: a .png or .jpg file, or a folder to write sag_demo.png in "
                             f"(default {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--export", type=Path, metavar="WEIGHTS_DIR",
                        help="rebuild tools/demo-model/ from the lab's weight cache (e.g. out/quality/weights)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.export:
        export(args.export)
        return
    try:
        args.out = picture_path(args.out)
    except ValueError as error:
        parser.error(str(error))
    started = time.perf_counter()
    model, scorer, metadata = load()
    if metadata.get("code") != code_fingerprint():
        print(f"note: {MODEL_FILE.name} was trained by other model code or torch ({metadata.get('code')}, torch "
              f"{metadata.get('torch')}); rebuild it with python -m tools.quality run and python -m tools.demo --export")
    sd_hijack_unet.apply_optimizations()
    shared.sd_model = TinyLatentDiffusion(model.unet)
    ext = harness.load_extension()
    keeper = MaskKeeper(ext)
    script_callbacks.on_cfg_after_cfg(keeper)
    sampling = Sampling()
    cfg, sag = (sample_cell(ext, model, row, args.seed, sampling, MaskLog("saliency", args.seed))
                for row in (CFG_ROW, SAG_ROW))
    masks = keeper.all()[:, 0]

    reference = classify(scorer, sample_set(REFERENCE_IMAGES, REFERENCE_SEED)[0])[0]
    labels = torch.arange(sampling.images) % len(CLASSES)
    scores = {}
    for name, images in (("CFG", cfg), ("CFG + SAG", sag)):
        features, probs = classify(scorer, images)
        scores[name] = (frechet_distance(features, reference), recognised(probs, labels.numpy()))

    shown = list(range(len(CLASSES)))  # the first image of each class
    difference = (sag - cfg)[shown].abs().mean(dim=1)
    rows = [("CFG 3", to_pixels(cfg[shown])), ("CFG 3 + SAG", to_pixels(sag[shown])),
            ("where SAG blurred", heat(masks[shown])),
            ("|SAG - CFG| (x4)", heat(difference * 4 / 2))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture(rows).save(args.out)

    print(f"model: the quality lab's '{DEMO_MODEL}' (training seed {DEMO_TRAINING_SEED}, {MODEL_FILE.name}); "
          f"{sampling.images} images, Euler a, 20 steps, CFG 3, seed {args.seed}; SAG scale 0.75, blur sigma 2, "
          "threshold 1")
    for name, (fd, share) in scores.items():
        print(f"  {name:10s} FD {fd:6.2f} (lower is better), recognised {share:.1%}")
    print(f"  SAG changed FD by {scores['CFG + SAG'][0] - scores['CFG'][0]:+.2f}; it blurred {masks.mean():.0%} "
          f"of the latent on average; mean |SAG - CFG| {(sag - cfg).abs().mean():.4f} (image range -1..1)")
    print(f"wrote {args.out} (rows: CFG, CFG + SAG, where SAG blurred, |SAG - CFG|) in "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
