"""What the webui changes in ldm's U-Net and attention before sampling (v1.10.1).

`TorchHijackForUnet` follows modules/sd_hijack_unet.py: the U-Net's `th.cat` resizes the upsampled
tensor to its skip connection, which is what makes odd latent sizes work. `sdp_attention_forward`
follows sd_hijack_optimizations.scaled_dot_product_attention_forward: a fused forward assigned to the
CrossAttention class, which exposes no attention probabilities, and which passes the context through
the loaded hypernetworks before `to_k`/`to_v`, as every attention forward of the webui does.
"""

import torch
import torch.nn.functional as F
from ldm.modules import attention
from ldm.modules.diffusionmodules import openaimodel

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


def apply_optimizations():
    openaimodel.th = TorchHijackForUnet()
    attention.CrossAttention.forward = sdp_attention_forward
