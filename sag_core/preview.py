"""The mask preview: where SAG acted, drawn over the generated image."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

OVERLAY_COLOR = (255, 48, 32)
OVERLAY_OPACITY = 0.6

Box = tuple[int, int, int, int]
"""(left, top, width, height) of the region an image's latent covers in the final picture."""


def mask_to_pixels(mask: torch.Tensor, width: int, height: int, box: Box | None = None) -> np.ndarray:
    """A (h, w) latent-grid mask in 0..1 as a (height, width) float array, stretched over `box`.

    Without `box` the mask covers the whole picture; with it (inpainting "only masked", where the
    generated crop is pasted back into the original) it covers that region and is 0 elsewhere.
    """
    if mask.dim() != 2:
        raise ValueError(f"mask must be 2-D (h, w); got shape {tuple(mask.shape)}")
    left, top, box_width, box_height = box if box is not None else (0, 0, width, height)
    stretched = F.interpolate(mask.detach().float().cpu()[None, None], size=(box_height, box_width),
                              mode="bilinear", align_corners=False)[0, 0].clamp(0.0, 1.0).numpy()
    pixels = np.zeros((height, width), dtype=np.float32)
    right, bottom = min(left + box_width, width), min(top + box_height, height)
    x0, y0 = max(left, 0), max(top, 0)
    if right > x0 and bottom > y0:
        pixels[y0:bottom, x0:right] = stretched[y0 - top:bottom - top, x0 - left:right - left]
    return pixels


def mask_overlay(image: np.ndarray, mask: torch.Tensor, box: Box | None = None,
                 color: tuple[int, int, int] = OVERLAY_COLOR, opacity: float = OVERLAY_OPACITY) -> np.ndarray:
    """The (H, W, 3) uint8 `image` tinted with `color` in proportion to the mask; unchanged where it is 0."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8; got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    weight = opacity * mask_to_pixels(mask, width, height, box)[..., None]
    tinted = image.astype(np.float32) * (1.0 - weight) + np.asarray(color, dtype=np.float32) * weight
    return np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
