"""Tiny SD-shaped models on the real ldm U-Net, for CPU tests.

`DiffusionWrapper` and `TinyLatentDiffusion.apply_model` follow ldm.models.diffusion.ddpm (which
cannot be imported without pytorch_lightning): conds arrive as `c_crossattn` / `c_concat` lists,
"hybrid" models (inpainting) concatenate `c_concat` to x on channels.
"""

import math

import torch
from einops import rearrange
from ldm.modules.diffusionmodules.openaimodel import UNetModel
from torch import nn


def sd_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    """The SD1/SD2 "scaled linear" schedule (linear_start 0.00085, linear_end 0.012)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


def attention_probs(attention: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ldm CrossAttention's own self-attention probabilities ((b h), n, n), as its original forward computes them."""
    q = rearrange(attention.to_q(x), "b n (h d) -> (b h) n d", h=attention.heads)
    k = rearrange(attention.to_k(x), "b n (h d) -> (b h) n d", h=attention.heads)
    return (torch.einsum("b i d, b j d -> b i j", q, k) * attention.scale).softmax(-1)


def rerandomise(module: nn.Module, seed: int) -> nn.Module:
    """Fresh ldm U-Nets output zeros (zero-initialised output layers); give every weight a value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.dim() > 1:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))
            elif "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return module


def tiny_unet(*, heads: int = 8, in_channels: int = 4, context_dim: int = 32, seed: int = 0) -> UNetModel:
    """An SD-shaped U-Net: three downsamples (middle grid = latent / 8), attention in the deep levels.

    The middle block has 128 channels for 8 heads (SD1-like) and 160 for 20 heads (SD2-like), so that
    its width suits both the head count and GroupNorm's 32 groups.
    """
    model_channels = 32
    middle_mult = 5 if heads % 5 == 0 else 4
    unet = UNetModel(
        image_size=32, in_channels=in_channels, out_channels=4, model_channels=model_channels,
        num_res_blocks=1, attention_resolutions=[4, 8], channel_mult=(1, 2, 2, middle_mult), num_heads=heads,
        use_spatial_transformer=True, transformer_depth=1, context_dim=context_dim, legacy=False,
    )
    return rerandomise(unet, seed).eval()


class DiffusionWrapper(nn.Module):
    def __init__(self, diffusion_model: nn.Module, conditioning_key: str) -> None:
        super().__init__()
        self.diffusion_model = diffusion_model
        self.conditioning_key = conditioning_key

    def forward(self, x, t, c_concat=None, c_crossattn=None, c_adm=None):
        context = torch.cat(c_crossattn, 1)
        if self.conditioning_key == "hybrid":
            x = torch.cat([x] + c_concat, dim=1)
        return self.diffusion_model(x, t, context=context)


class TinyLatentDiffusion(nn.Module):
    """What the webui's samplers need of `shared.sd_model`: apply_model, alphas_cumprod, parameterization."""

    def __init__(self, unet: nn.Module, *, conditioning_key: str = "crossattn", parameterization: str = "eps"):
        super().__init__()
        self.model = DiffusionWrapper(unet, conditioning_key)
        self.register_buffer("alphas_cumprod", sd_alphas_cumprod())
        context_dim = unet.middle_block[1].transformer_blocks[0].attn2.to_k.in_features
        generator = torch.Generator().manual_seed(77)
        # what the webui encodes "" to once per model (sd_models.py), whose chunks pad_cond_uncond appends
        self.register_buffer("cond_stage_model_empty_prompt", torch.randn(1, 77, context_dim, generator=generator))
        self.parameterization = parameterization
        self.cond_stage_key = "txt"

    def apply_model(self, x, t, cond):
        if not isinstance(cond, dict):
            cond = {"c_crossattn": [cond]}
        return self.model(x, t, **cond)
