"""The two networks of the quality lab and how each is trained: the diffusion U-Net and the scoring classifier.

The diffusion model is the ldm `UNetModel` the webui runs (spatial transformers, self-attention in
the middle block), trained with SD's eps objective on SD's 1000-step scaled-linear schedule, so the
test host's k-diffusion wrapper samples it exactly as it samples SD. Its conditioning is one
learned context token per class, plus a null class for classifier-free guidance.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from ldm.modules.diffusionmodules.openaimodel import UNetModel
from torch import nn

from .data import CHANNELS, CLASSES, random_batch

NULL_CLASS = len(CLASSES)


@dataclass(frozen=True)
class UNetConfig:
    """U-Net shape: 32x32 input, two downsamples, so the middle block attends over an 8x8 grid as SD's does at 512."""

    model_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 1, 2)
    attention_resolutions: tuple[int, ...] = (4,)
    num_heads: int = 4
    context_dim: int = 64


@dataclass(frozen=True)
class TrainConfig:
    """Diffusion training: steps of fresh generator batches, AdamW with warm-up, EMA weights kept."""

    steps: int = 1500
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 100
    ema: float = 0.999
    drop_class: float = 0.15  # share of training images shown the null class (CFG's unconditional model)
    seed: int = 0


@dataclass(frozen=True)
class ClassifierConfig:
    """Classifier training on colour-jittered, lightly noised generator batches: it judges shapes and edges, not palette."""

    steps: int = 800
    batch: int = 128
    lr: float = 4e-3
    max_noise: float = 0.2
    colour_jitter: float = 0.6
    seed: int = 1


class ClassContext(nn.Module):
    """One learned context token per class and for the null class: what SD's text encoder output stands for here."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(NULL_CLASS + 1, dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table(labels).unsqueeze(1)  # (B, 1 token, dim)


def build_unet(config: UNetConfig, seed: int) -> UNetModel:
    """A freshly initialised ldm UNetModel of this shape (ldm's own init, zeroed output layers)."""
    torch.manual_seed(seed)
    return UNetModel(
        image_size=32, in_channels=CHANNELS, out_channels=CHANNELS, model_channels=config.model_channels,
        num_res_blocks=1, attention_resolutions=list(config.attention_resolutions),
        channel_mult=config.channel_mult, num_heads=config.num_heads, use_spatial_transformer=True,
        transformer_depth=1, context_dim=config.context_dim, legacy=False)


class DiffusionPair(nn.Module):
    """The U-Net and its class context, trained and saved together."""

    def __init__(self, config: UNetConfig, seed: int) -> None:
        super().__init__()
        self.unet = build_unet(config, seed)
        self.context = ClassContext(config.context_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, context=self.context(labels))


def warmup_lr(step: int, config: TrainConfig) -> float:
    return config.lr * min(1.0, (step + 1) / config.warmup)


def train_diffusion(config: TrainConfig, unet_config: UNetConfig, alphas_cumprod: torch.Tensor,
                    log_every: int = 100) -> tuple[DiffusionPair, dict]:
    """Train with the eps objective on uniformly drawn timesteps; returns the EMA model and a log."""
    model = DiffusionPair(unet_config, config.seed).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    losses, started = [], time.perf_counter()
    for step in range(config.steps):
        x0, labels = random_batch(config.batch, generator)
        labels = torch.where(torch.rand(config.batch, generator=generator) < config.drop_class, NULL_CLASS, labels)
        t = torch.randint(len(alphas_cumprod), (config.batch,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        alpha = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise
        loss = F.mse_loss(model(xt, t, labels), noise)
        for group in optimiser.param_groups:
            group["lr"] = warmup_lr(step, config)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        decay = min(config.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for kept, live in zip(ema.parameters(), model.parameters()):
                kept.lerp_(live, 1 - decay)
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            recent = sum(losses[-log_every:]) / log_every
            print(f"  diffusion step {step + 1}/{config.steps}: loss {recent:.4f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    seconds = time.perf_counter() - started
    tail = losses[-min(len(losses), 100):]
    return ema, {"seconds": seconds, "final_loss": sum(tail) / len(tail), **asdict(config)}


class ShapeClassifier(nn.Module):
    """A small CNN: three conv stages, global average pool, a 32-d feature layer, then the class logits."""

    FEATURES = 32

    def __init__(self) -> None:
        super().__init__()
        def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.GELU())
        self.body = nn.Sequential(stage(CHANNELS, 32, 1), stage(32, 32, 2), stage(32, 64, 1), stage(64, 64, 2),
                                  stage(64, 64, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature = nn.Sequential(nn.Linear(64, self.FEATURES), nn.GELU())
        self.head = nn.Linear(self.FEATURES, len(CLASSES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate activations the Fréchet distance is computed on."""
        return self.feature(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(config: ClassifierConfig) -> tuple[ShapeClassifier, dict]:
    """Cross-entropy on fresh generator batches, each image with Gaussian noise of a random std up to max_noise."""
    torch.manual_seed(config.seed)
    model = ShapeClassifier().train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.steps)
    generator = torch.Generator().manual_seed(config.seed)
    started = time.perf_counter()
    for _ in range(config.steps):
        x, labels = random_batch(config.batch, generator, config.colour_jitter)
        noise_std = config.max_noise * torch.rand(config.batch, 1, 1, 1, generator=generator)
        x = x + noise_std * torch.randn(x.shape, generator=generator)
        loss = F.cross_entropy(model(x), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval().requires_grad_(False), {"seconds": time.perf_counter() - started, **asdict(config)}
