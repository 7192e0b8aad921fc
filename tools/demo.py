"""Show SAG at work without the webui: the real ldm U-Net and k-diffusion sampling, fixed seed.

Runs one txt2img job through the test host twice (CFG only, then with SAG) and writes
out/demo/sag_demo.png: the CFG result, the SAG result, |SAG - CFG|, and where SAG blurred
(the saliency mask averaged over the guided steps). The model has random weights, so the pictures
are latents, not art: what matters is where and how much SAG changes them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "host"), str(ROOT)]

import harness  # noqa: E402
from models import TinyLatentDiffusion, tiny_unet  # noqa: E402
from modules import script_callbacks, sd_hijack_unet, shared  # noqa: E402


def to_rgb(latent: torch.Tensor) -> np.ndarray:
    """First three latent channels, each stretched to 0..255."""
    channels = latent[:3]
    low = channels.amin(dim=(1, 2), keepdim=True)
    high = channels.amax(dim=(1, 2), keepdim=True)
    return ((channels - low) / (high - low + 1e-8) * 255).permute(1, 2, 0).byte().numpy()


def heat(values: torch.Tensor) -> np.ndarray:
    """A 0..1 map as a black-to-yellow heat image."""
    v = (values / (values.max() + 1e-8)).clamp(0, 1)
    return (torch.stack([v, v ** 0.5 * 0.85, v ** 3 * 0.2], dim=-1) * 255).byte().numpy()


def panel(images: list[np.ndarray], scale: int) -> Image.Image:
    strip = np.concatenate([np.pad(image, ((2, 2), (2, 2), (0, 0)), constant_values=255) for image in images], axis=1)
    return Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320, help="image size in pixels (latent = size / 8)")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--scale", type=float, default=0.75)
    parser.add_argument("--blur-sigma", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo" / "sag_demo.png")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    sd_hijack_unet.apply_optimizations()
    shared.sd_model = TinyLatentDiffusion(tiny_unet(seed=args.seed))
    extension = harness.load_extension()

    masks = []

    def keep_mask(params) -> None:
        generation = extension.module.active.get()
        if generation is not None and generation.run.mean_mask() is not None:
            masks.append(generation.run.mean_mask().clone())

    job = dict(steps=args.steps, width=args.size, height=args.size, seed=args.seed, sampler_name="Euler a")
    cfg = harness.run_job(extension.txt2img, (False,), **job)
    script_callbacks.on_cfg_after_cfg(keep_mask)
    sag = harness.run_job(extension.txt2img, (True, args.scale, args.blur_sigma, 1.0), **job)

    difference = (sag.samples - cfg.samples)[0].abs().mean(dim=0)
    mask = masks[-1][0, 0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    panel([to_rgb(cfg.samples[0]), to_rgb(sag.samples[0]), heat(difference), heat(mask)], scale=4).save(args.out)

    print(f"latent {tuple(sag.samples.shape[-2:])}, {args.steps} steps, Euler a, seed {args.seed}")
    print(f"infotext with SAG: {sag.infotexts[0]!r}")
    print(f"mean |SAG - CFG| over the latent: {difference.mean():.4f} (CFG latent std {cfg.samples.std():.4f})")
    print(f"share of the latent SAG blurred, averaged over steps: {mask.mean():.3f}")
    print(f"mean |SAG - CFG| inside vs outside the final mask: "
          f"{difference[mask > 0.5].mean():.4f} vs {difference[mask <= 0.5].mean():.4f}")
    print(f"wrote {args.out} (panels: CFG, SAG, |SAG - CFG|, saliency mask)")


if __name__ == "__main__":
    main()
