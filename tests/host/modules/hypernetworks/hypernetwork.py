"""Follows modules/hypernetworks/hypernetwork.py (v1.10.1): how a loaded hypernetwork changes attention.

A hypernetwork holds, per context width, a pair of residual MLPs (`HypernetworkModule`: x + mlp(x) *
multiplier); every attention forward of the webui passes its context through the pair for its width
(`apply_hypernetworks`, called from each forward in sd_hijack_optimizations.py) and feeds the results
to `to_k` and `to_v`. Self-attention's context is x itself, so the keys of attn1 change too.
Left out: loading from file, layer structures other than one hidden layer, dropout, layer norm.
"""

import torch
from torch import nn


class HypernetworkModule(nn.Module):
    multiplier = 1.0

    def __init__(self, dim: int, hidden: int = 2) -> None:
        super().__init__()
        self.linear = nn.Sequential(nn.Linear(dim, dim * hidden), nn.ReLU(), nn.Linear(dim * hidden, dim))

    def forward(self, x):
        return x + self.linear(x) * HypernetworkModule.multiplier


class Hypernetwork:
    def __init__(self, name: str, sizes: list[int], seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.name = name
        self.layers = {size: (HypernetworkModule(size).eval(), HypernetworkModule(size).eval()) for size in sizes}


def apply_single_hypernetwork(hypernetwork, context_k, context_v):
    layers = hypernetwork.layers.get(context_k.shape[2])
    if layers is None:
        return context_k, context_v
    return layers[0](context_k), layers[1](context_v)


def apply_hypernetworks(hypernetworks, context):
    context_k = context_v = context
    for hypernetwork in hypernetworks:
        context_k, context_v = apply_single_hypernetwork(hypernetwork, context_k, context_v)
    return context_k, context_v
