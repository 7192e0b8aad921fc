"""Measure what SAG does to sample quality, on CPU: a trained miniature of the SAG paper's tables.

Trains (or loads from the cache) a small class-conditional diffusion model on the ldm U-Net the
webui runs, on a procedural set of shapes (tools/quality_data.py), and a small classifier on the
same generator. Then samples every row (CFG, SAG, their ablations) through the test host's webui
path with our real script, and scores each row per sampling seed: a Fréchet distance on the
classifier's features against a fixed real reference set, and the share of samples whose shape
the classifier recognises with p >= 0.9. Writes results.json, table.md and sample grids to --out.

Run: python tools/quality.py [--quick] [--retrain] [--out DIR]   (see docs/quality.md)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "tools", ROOT / "tests" / "host", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import harness  # noqa: E402
from models import TinyLatentDiffusion, sd_alphas_cumprod  # noqa: E402
from modules import processing, sd_hijack_unet, shared  # noqa: E402
from modules.prompt_parser import MulticondBatch  # noqa: E402
from quality_data import balanced_labels, sample_set  # noqa: E402
from quality_models import (NULL_CLASS, ClassifierConfig, DiffusionPair, ShapeClassifier, TrainConfig,  # noqa: E402
                            UNetConfig, train_classifier, train_diffusion)
from quality_scores import classify, frechet_distance, recognised  # noqa: E402
from sag_core.attention_hook import find_middle_self_attention  # noqa: E402

REFERENCE_SEED = 777_000
REAL_SEED = 888_000
SAG_DEFAULTS = {"scale": 0.75, "blur_sigma": 2.0, "threshold": 1.0}  # the extension's own defaults


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on; the two trainings' parts also key the weight cache."""

    unet: UNetConfig = UNetConfig()
    train: TrainConfig = TrainConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    images: int = 128          # samples per row and seed
    batch: int = 32            # images per txt2img job
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    steps: int = 20
    sampler: str = "Euler a"
    cfg_scale: float = 3.0
    reference: int = 2048      # real images the Fréchet distance compares against


FULL = Settings()
QUICK = Settings(train=TrainConfig(steps=8, batch=8, warmup=4), classifier=ClassifierConfig(steps=8, batch=16),
                 images=8, batch=8, seeds=(1, 2), steps=3, reference=64)


@dataclass(frozen=True)
class Row:
    """One table row: a job setting sampled once per seed. `sag` holds the script's UI values after `enabled`."""

    group: str
    name: str
    cfg_scale: float
    sag: dict | None = None
    conditional: bool = True
    baseline: str | None = None  # the row this one is compared with, seed by seed (same noise, same labels)

    def script_values(self) -> tuple:
        """The SAG script's inputs in UI order: enabled, scale, blur sigma, threshold, start, end."""
        if self.sag is None:
            return (False,)
        values = {**SAG_DEFAULTS, "start": 0.0, "end": 1.0, **self.sag}
        return (True, values["scale"], values["blur_sigma"], values["threshold"], values["start"], values["end"])

    def describe_sag(self) -> str:
        if self.sag is None:
            return "off"
        _, scale, sigma, threshold, start, end = self.script_values()
        return f"{scale:g} / {sigma:g} / {threshold:g} / {start:g}-{end:g}"


def table_rows(cfg: float) -> list[Row]:
    """The paper's comparisons in miniature: guidance kinds, then SAG's scale, blur, mask and window on top of CFG."""
    no_guidance, with_cfg, null_class = "no guidance", "CFG", "null class, no guidance"
    return [
        Row("guidance", no_guidance, 1.0),
        Row("guidance", with_cfg, cfg, baseline=no_guidance),
        Row("guidance", "SAG alone", 1.0, {}, baseline=no_guidance),
        Row("guidance", "CFG + SAG", cfg, {}, baseline=with_cfg),
        Row("unconditional", null_class, 1.0, conditional=False),
        Row("unconditional", "null class, SAG", 1.0, {}, conditional=False, baseline=null_class),
        Row("scale", "CFG + SAG scale 0.3", cfg, {"scale": 0.3}, baseline=with_cfg),
        Row("scale", "CFG + SAG scale 1.0", cfg, {"scale": 1.0}, baseline=with_cfg),
        Row("blur sigma", "CFG + SAG sigma 1", cfg, {"blur_sigma": 1.0}, baseline=with_cfg),
        Row("blur sigma", "CFG + SAG sigma 3", cfg, {"blur_sigma": 3.0}, baseline=with_cfg),
        Row("blur sigma", "CFG + SAG sigma 9", cfg, {"blur_sigma": 9.0}, baseline=with_cfg),
        Row("mask", "CFG + SAG threshold 0 (blur everywhere)", cfg, {"threshold": 0.0}, baseline=with_cfg),
        Row("mask", "CFG + SAG sigma 0 (nothing blurred)", cfg, {"blur_sigma": 0.0}, baseline=with_cfg),
        Row("window", "CFG + SAG 0-0.5", cfg, {"start": 0.0, "end": 0.5}, baseline=with_cfg),
        Row("window", "CFG + SAG 0.25-0.75", cfg, {"start": 0.25, "end": 0.75}, baseline=with_cfg),
        Row("window", "CFG + SAG 0.5-1", cfg, {"start": 0.5, "end": 1.0}, baseline=with_cfg),
    ]


def cache_key(part: object) -> str:
    """A short hash of a training configuration, naming its cached weights."""
    return hashlib.sha1(json.dumps(asdict(part), sort_keys=True).encode()).hexdigest()[:10]


def diffusion_model(settings: Settings, cache: Path, retrain: bool) -> tuple[DiffusionPair, dict]:
    """The trained diffusion model (EMA weights) from the cache, or trained now and cached."""
    path = cache / f"diffusion-{cache_key(settings.unet)}-{cache_key(settings.train)}.pt"
    model = DiffusionPair(settings.unet, settings.train.seed)
    if path.exists() and not retrain:
        saved = torch.load(path)
        model.load_state_dict(saved["state"])
        return model.eval().requires_grad_(False), saved["log"]
    print(f"training the diffusion model ({settings.train.steps} steps) ...", flush=True)
    model, log = train_diffusion(settings.train, settings.unet, sd_alphas_cumprod(),
                                 log_every=max(1, settings.train.steps // 15))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "log": log}, path)
    return model, log


def scoring_classifier(settings: Settings, cache: Path, retrain: bool) -> tuple[ShapeClassifier, dict]:
    """The trained shape classifier from the cache, or trained now and cached."""
    path = cache / f"classifier-{cache_key(settings.classifier)}.pt"
    if path.exists() and not retrain:
        saved = torch.load(path)
        model = ShapeClassifier()
        model.load_state_dict(saved["state"])
        return model.eval().requires_grad_(False), saved["log"]
    print(f"training the classifier ({settings.classifier.steps} steps) ...", flush=True)
    model, log = train_classifier(settings.classifier)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "log": log}, path)
    return model, log


class UNetRows:
    """Counts the rows (images) the U-Net is run on, through a forward pre-hook: the cost of a row."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.count = 0
        self._handle = unet.register_forward_pre_hook(self._see)

    def _see(self, module: torch.nn.Module, args: tuple) -> None:
        self.count += args[0].shape[0]

    def remove(self) -> None:
        self._handle.remove()


def job_chunks(settings: Settings) -> Iterator[tuple[int, torch.Tensor]]:
    """(chunk index, class labels) of each txt2img job making up one seed's images."""
    labels = balanced_labels(settings.images)
    for index, first in enumerate(range(0, settings.images, settings.batch)):
        yield index, labels[first:first + settings.batch]


@torch.no_grad()
def sample_row(ext: harness.Extension, model: DiffusionPair, row: Row, seed: int,
               settings: Settings) -> torch.Tensor:
    """One seed's images of a row, each job run through the host's process_images with the SAG script."""
    samples = []
    for chunk, labels in job_chunks(settings):
        requested = labels if row.conditional else torch.full_like(labels, NULL_CLASS)
        cond = model.context(requested)
        uncond = model.context(torch.full_like(labels, NULL_CLASS))
        p = processing.StableDiffusionProcessing(
            cond=MulticondBatch([[(i, 1.0)] for i in range(len(labels))], cond), uncond=uncond,
            batch_size=len(labels), steps=settings.steps, cfg_scale=row.cfg_scale, width=256, height=256,
            seed=seed * 10_000 + chunk, sampler_name=settings.sampler)
        p.scripts = ext.txt2img
        p.script_args = tuple(harness.sag_args(ext.txt2img, *row.script_values()))
        samples.append(processing.process_images(p).samples)
    if ext.txt2img.errors:
        raise RuntimeError(f"the SAG script failed: {ext.txt2img.errors}")
    return torch.cat(samples)


def score(classifier: ShapeClassifier, images: torch.Tensor, labels: torch.Tensor | None,
          reference: np.ndarray) -> dict:
    """Fréchet distance to the reference features and the recognised share of one image set."""
    features, probs = classify(classifier, images)
    return {"fd": frechet_distance(features, reference),
            "recognised": recognised(probs, None if labels is None else labels.numpy())}


def save_grid(images: torch.Tensor, path: Path, columns: int = 8) -> None:
    """The RGB channels of up to 2 rows of `columns` images as one picture."""
    shown = ((images[:2 * columns, :3].clamp(-1, 1) + 1) * 127.5).byte().permute(0, 2, 3, 1).numpy()
    rows = [np.concatenate(list(shown[i:i + columns]), axis=1) for i in range(0, len(shown), columns)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).resize((columns * 96, len(rows) * 96), Image.NEAREST).save(path)


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def evaluate(settings: Settings, out: Path, retrain: bool) -> dict:
    """Train or load, sample every row for every seed, score; the whole result as a dict."""
    started = time.perf_counter()
    cache = out / "weights"
    model, diffusion_log = diffusion_model(settings, cache, retrain)
    classifier, classifier_log = scoring_classifier(settings, cache, retrain)

    harness.reset_host_state()
    sd_hijack_unet.apply_optimizations()
    shared.sd_model = TinyLatentDiffusion(model.unet)
    find_middle_self_attention(model.unet)  # the hook's target exists, or this raises
    ext = harness.load_extension()
    reference, _ = classify(classifier, sample_set(settings.reference, REFERENCE_SEED)[0])

    results = {"real images (floor)": {"group": "reference", "cfg_scale": None, "sag": "-", "baseline": None,
                                       "seeds": {}}}
    for seed in settings.seeds:
        images, labels = sample_set(settings.images, REAL_SEED + seed)
        results["real images (floor)"]["seeds"][seed] = score(classifier, images, labels, reference)

    counter = UNetRows(model.unet)
    try:
        for row in table_rows(settings.cfg_scale):
            entry = results[row.name] = {"group": row.group, "cfg_scale": row.cfg_scale, "sag": row.describe_sag(),
                                         "baseline": row.baseline, "seeds": {}}
            counter.count, row_started = 0, time.perf_counter()
            for seed in settings.seeds:
                images = sample_row(ext, model, row, seed, settings)
                labels = balanced_labels(settings.images) if row.conditional else None
                entry["seeds"][seed] = score(classifier, images, labels, reference)
                if seed == settings.seeds[0]:
                    save_grid(images, out / "samples" / f"{len(results) - 1:02d}.png")
            entry["seconds"] = time.perf_counter() - row_started
            entry["unet_passes_per_image"] = counter.count / (settings.images * len(settings.seeds))
            print(f"  {row.name}: {summary_cells(entry)} ({entry['seconds']:.0f} s)", flush=True)
    finally:
        counter.remove()
    cfg_passes = results["CFG"]["unet_passes_per_image"]
    for entry in results.values():
        if "unet_passes_per_image" in entry:
            entry["cost_vs_cfg"] = entry["unet_passes_per_image"] / cfg_passes
    return {"settings": asdict(settings), "diffusion_training": diffusion_log, "classifier_training": classifier_log,
            "seconds": time.perf_counter() - started, "rows": results}


def summary_cells(entry: dict) -> str:
    fd = spread([s["fd"] for s in entry["seeds"].values()])
    share = spread([s["recognised"] for s in entry["seeds"].values()])
    return f"FD {fd[0]:.2f} ± {fd[1]:.2f}, recognised {share[0]:.1%} ± {share[1]:.1%}"


def paired_change(result: dict, name: str, metric: str) -> str:
    """A row's change in `metric` from its baseline row, seed by seed: mean ± std, and on how many seeds it is better or worse."""
    entry = result["rows"][name]
    if entry["baseline"] is None:
        return "-"
    base = result["rows"][entry["baseline"]]["seeds"]
    unit = 100 if metric == "recognised" else 1
    changes = [unit * (scores[metric] - base[seed][metric]) for seed, scores in entry["seeds"].items()]
    shown = [round(change, 2) for change in changes]  # a change below the printed precision is a tie
    mean, std = spread(changes)
    sign = -1 if metric == "fd" else 1
    better, worse = sum(sign * change > 0 for change in shown), sum(sign * change < 0 for change in shown)
    return f"{round(mean, 2) + 0.0:+.2f} ± {std:.2f} ({better} better, {worse} worse of {len(changes)})"


def markdown_table(result: dict) -> str:
    """The rows as a markdown table: scores as mean ± std over seeds, changes from the baseline row, cost."""
    lines = ["| group | row | CFG scale | SAG scale / sigma / threshold / window | FD ↓ | recognised % ↑ "
             "| vs | ΔFD, same seeds | Δrecognised, same seeds | U-Net passes per image | cost vs CFG |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in result["rows"].items():
        fd = spread([s["fd"] for s in entry["seeds"].values()])
        share = spread([100 * s["recognised"] for s in entry["seeds"].values()])
        cfg = "-" if entry["cfg_scale"] is None else f"{entry['cfg_scale']:g}"
        passes = entry.get("unet_passes_per_image")
        cost = "-" if passes is None else f"{passes:.0f}"
        ratio = "-" if passes is None else f"{entry['cost_vs_cfg']:.2f}"
        lines.append(f"| {entry['group']} | {name} | {cfg} | {entry['sag']} | {fd[0]:.2f} ± {fd[1]:.2f} "
                     f"| {share[0]:.1f} ± {share[1]:.1f} | {entry['baseline'] or '-'} "
                     f"| {paired_change(result, name, 'fd')} | {paired_change(result, name, 'recognised')} "
                     f"| {cost} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny trainings and sample counts: checks the pipeline")
    parser.add_argument("--retrain", action="store_true", help="train again even if cached weights exist")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "quality", help="results, samples, weight cache")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    result = evaluate(settings, args.out, args.retrain)
    table = markdown_table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    (args.out / "table.md").write_text(table)
    print(table)
    print(f"this run: {result['seconds']:.0f} s; diffusion training {result['diffusion_training']['seconds']:.0f} s "
          f"and classifier training {result['classifier_training']['seconds']:.0f} s (when they ran; "
          f"both are cached in {args.out / 'weights'}); wrote {args.out / 'results.json'}")
    return result


if __name__ == "__main__":
    main()
