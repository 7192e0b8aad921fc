"""Separable Gaussian blur and the SAG degradation of x0 (blur inside the saliency mask only)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .autocast import autocast_off


def kernel_size_for(sigma: float) -> int:
    """Odd kernel size covering +-3 sigma, so the kernel grows with the blur instead of staying at 9."""
    return 2 * math.ceil(3.0 * sigma) + 1


def gaussian_kernel_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian sampled at `size` integer offsets around 0."""
    half = (size - 1) / 2.0
    offsets = torch.linspace(-half, half, steps=size, dtype=torch.float64)
    pdf = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (pdf / pdf.sum()).to(dtype=dtype, device=device)


def _blur_axis(img: torch.Tensor, size: int, sigma: float, axis: int) -> torch.Tensor:
    """Blur along H (axis=2) or W (axis=3) with reflect padding; the kernel shrinks to fit tiny sides."""
    length = img.shape[axis]
    size = min(size, 2 * (length - 1) + 1)
    if size <= 1:
        return img
    channels = img.shape[1]
    kernel = gaussian_kernel_1d(size, sigma, img.dtype, img.device)
    pad = size // 2
    if axis == 2:
        weight = kernel.view(1, 1, size, 1).expand(channels, 1, size, 1)
        padded = F.pad(img, (0, 0, pad, pad), mode="reflect")
    else:
        weight = kernel.view(1, 1, 1, size).expand(channels, 1, 1, size)
        padded = F.pad(img, (pad, pad, 0, 0), mode="reflect")
    return F.conv2d(padded, weight, groups=channels)


def gaussian_blur_2d(img: torch.Tensor, sigma: float, kernel_size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Gaussian blur of a (B, C, H, W) batch in its own dtype (autocast off), separable, reflect-padded;
    sigma 0 returns the input. `kernel_size` is one size for both axes or (along H, along W)."""
    if sigma <= 0:
        return img
    size = kernel_size or kernel_size_for(sigma)
    size_h, size_w = size if isinstance(size, tuple) else (size, size)
    with autocast_off(img.device):
        return _blur_axis(_blur_axis(img, size_h, sigma, axis=2), size_w, sigma, axis=3)


def degrade_x0(x0: torch.Tensor, mask: torch.Tensor, sigma: float, kernel_size: int | None = None) -> torch.Tensor:
    """x0 blurred where `mask` is 1 and kept where it is 0 (the SAG paper's selective blur)."""
    blurred = gaussian_blur_2d(x0, sigma, kernel_size)
    mask = mask.to(x0.dtype)
    return blurred * mask + x0 * (1 - mask)
