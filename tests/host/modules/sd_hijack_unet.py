"""What the webui changes in ldm's U-Net and attention before sampling (v1.10.1).

`TorchHijackForUnet` follows modules/sd_hijack_unet.py: the U-Net's `th.cat` resizes the upsampled
tensor to its skip connection, which is what makes odd latent sizes work. `sdp_attention_forward`
follows sd_hijack_optimizations.scaled_dot_product_attention_forward: a fused forward assigned to the
CrossAttention class, which exposes no attention probabilities, and which passes the context through
the loaded hypernetworks before `to_k`/`to_v`, as every attention forward of the webui does.

The dtype casts follow the same file's "upcasting" patches (v1.10.1): `apply_model` hands the U-Net x, t
and the conds in `devices.dtype_unet` inside `devices.autocast()` and returns float32 only under
`--upcast-sampling` (in 1.6 to 1.9 it is patched only then; without it x stays float32 and CUDA
autocast casts per op; either way the result is the U-Net's low-precision output). The timestep
embedding is cast to dtype_unet, and with `--upcast-sampling` GroupNorm32 and GEGLU run in float32
(the webui applies those two wherever CUDA is available).
"""

import torch
import torch.nn.functional as F
from ldm.modules import attention
from ldm.modules.diffusionmodules import openaimodel, util

import models
from modules import devices

from modules import shared
from modules.hypernetworks import hypernetwork


class TorchHijackForUnet:
    def __getattr__(self, item):
        if item == "cat":
            return self.cat
        return getattr(torch, item)

    def cat(self, tensors, *args, **kwargs):
        if len(tensors) == 2:
            a, b = tensors
            if a.shape[-2:] != b.shape[-2:]:
                a = F.interpolate(a, b.shape[-2:], mode="nearest")
            tensors = (a, b)
        return torch.cat(tensors, *args, **kwargs)


def sdp_attention_forward(self, x, context=None, mask=None, **kwargs):
    context = x if context is None else context
    batch, tokens, _ = x.shape
    context_k, context_v = hypernetwork.apply_hypernetworks(shared.loaded_hypernetworks, context)
    q, k, v = self.to_q(x), self.to_k(context_k), self.to_v(context_v)
    q, k, v = (t.reshape(batch, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    out = out.transpose(1, 2).reshape(batch, tokens, -1)
    return self.to_out(out)


def cast_apply_model(orig_func):
    def apply_model(self, x_noisy, t, cond, **kwargs):
        if isinstance(cond, dict):
            cond = {key: [c.to(devices.dtype_unet) if isinstance(c, torch.Tensor) else c for c in value]
                    if isinstance(value, list) else
                    value.to(devices.dtype_unet) if isinstance(value, torch.Tensor) else value
                    for key, value in cond.items()}
        with devices.autocast():
            result = orig_func(self, x_noisy.to(devices.dtype_unet), t.to(devices.dtype_unet), cond, **kwargs)
            return result.float() if devices.unet_needs_upcast else result
    apply_model.orig_func = orig_func
    return apply_model


def cast_timestep_embedding(orig_func):
    def timestep_embedding(timesteps, *args, **kwargs):
        upcast = devices.unet_needs_upcast and timesteps.dtype == torch.int64
        return orig_func(timesteps, *args, **kwargs).to(torch.float32 if upcast else devices.dtype_unet)
    timestep_embedding.orig_func = orig_func
    return timestep_embedding


def when_upcast(orig_func, upcast_forward):
    def forward(self, *args):
        return upcast_forward(orig_func, self, *args) if devices.unet_needs_upcast else orig_func(self, *args)
    forward.orig_func = orig_func
    return forward


def _patch(owner, name, wrapper, *extra):
    """Wrap owner.name once (apply_optimizations may run once per test module)."""
    current = getattr(owner, name)
    setattr(owner, name, wrapper(getattr(current, "orig_func", current), *extra))


def apply_optimizations():
    openaimodel.th = TorchHijackForUnet()
    attention.CrossAttention.forward = sdp_attention_forward
    _patch(models.TinyLatentDiffusion, "apply_model", cast_apply_model)
    _patch(openaimodel, "timestep_embedding", cast_timestep_embedding)
    _patch(util.GroupNorm32, "forward", when_upcast, lambda orig, self, x: orig(self.float(), x))
    _patch(attention.GEGLU, "forward", when_upcast,
           lambda orig, self, x: orig(self.float(), x.float()).to(devices.dtype_unet))
