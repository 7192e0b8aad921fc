"""The lab's trained networks, cached on disk: the diffusion models it compares and the scorers.

A cached file is named by what made it: the network's configuration, its training seed, a hash of
the code that defines and trains it (tools/quality/models.py, tools/quality/data.py and the ldm
U-Net and attention sources) and the torch version. A change to any of them trains afresh; stale
weights are never reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from ldm.modules import attention as ldm_attention
from ldm.modules.diffusionmodules import openaimodel

from . import data, models
from .host import sd_alphas_cumprod
from .models import ClassifierConfig, DiffusionPair, ShapeClassifier, TrainConfig, UNetConfig


@dataclass(frozen=True)
class ModelSpec:
    """One diffusion model the lab compares: a U-Net shape and a training recipe (its seed set per training)."""

    name: str
    unet: UNetConfig
    train: TrainConfig
    about: str


# Two models that differ in training length: SAG's effect is reported per model and per training seed.
MODELS = {
    "base": ModelSpec("base", UNetConfig(), TrainConfig(steps=1500), "1500 training steps (final loss about 0.016)"),
    "short": ModelSpec("short", UNetConfig(), TrainConfig(steps=500), "the same U-Net after 500 steps: undertrained"),
}
TRAINING_SEEDS = (0, 1, 2)
SCORER_SEEDS = (1, 2)  # their features are stored in every cell
PANEL_SEEDS = (1, 2, 3, 4, 5)  # the report judges every cell that keeps its images with each of these


def code_paths() -> list[Path]:
    """The sources that define and train the networks: ours, and the ldm U-Net and attention they are built of."""
    return [Path(module.__file__) for module in (models, data, openaimodel, ldm_attention)]


def code_fingerprint() -> str:
    """A short hash of the model and data code and of the torch version: part of every weight file's name."""
    digest = hashlib.sha1(torch.__version__.encode())
    for path in code_paths():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def config_key(*parts: object) -> str:
    """A short hash of dataclass configurations."""
    text = json.dumps([asdict(part) for part in parts], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def diffusion_path(cache: Path, spec: ModelSpec, seed: int) -> Path:
    train = replace(spec.train, seed=seed)
    return cache / f"diffusion-{spec.name}-seed{seed}-{config_key(spec.unet, train)}-{code_fingerprint()}.pt"


def classifier_path(cache: Path, config: ClassifierConfig) -> Path:
    return cache / f"classifier-seed{config.seed}-{config_key(config)}-{code_fingerprint()}.pt"


def diffusion_model(cache: Path, spec: ModelSpec, seed: int, retrain: bool = False) -> tuple[DiffusionPair, dict]:
    """Model `spec` trained with `seed` (EMA weights), from the cache or trained now and cached."""
    path = diffusion_path(cache, spec, seed)
    train = replace(spec.train, seed=seed)
    if path.exists() and not retrain:
        saved = torch.load(path)
        model = DiffusionPair(spec.unet, seed)
        model.load_state_dict(saved["state"])
        return model.eval().requires_grad_(False), saved["log"]
    print(f"training diffusion model {spec.name}, seed {seed} ({train.steps} steps) ...", flush=True)
    model, log = models.train_diffusion(train, spec.unet, sd_alphas_cumprod(), log_every=max(1, train.steps // 15))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "log": log}, path)
    return model, log


def scoring_classifier(cache: Path, config: ClassifierConfig, retrain: bool = False) -> tuple[ShapeClassifier, dict]:
    """The shape classifier trained with `config`, from the cache or trained now and cached."""
    path = classifier_path(cache, config)
    if path.exists() and not retrain:
        saved = torch.load(path)
        model = ShapeClassifier()
        model.load_state_dict(saved["state"])
        return model.eval().requires_grad_(False), saved["log"]
    print(f"training the scoring classifier, seed {config.seed} ({config.steps} steps) ...", flush=True)
    model, log = models.train_classifier(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "log": log}, path)
    return model, log
