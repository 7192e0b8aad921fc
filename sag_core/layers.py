"""The U-Net's self-attention layers by name: "middle", "input N", "output N" (ldm's and sgm's blocks).

SAG reads its saliency from the first self-attention of the named block; PAG and SEG perturb every
self-attention of it (diffusers' "mid" likewise takes every transformer block of the middle block).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

MIDDLE = "middle"


class LayerError(LookupError):
    """A layer name the loaded U-Net does not have; the message lists the names it has."""


@dataclass(frozen=True)
class AttentionLayer:
    """One named block's spatial transformer (whose input gives the token grid) and its self-attentions."""

    name: str
    transformer: nn.Module
    attentions: tuple[nn.Module, ...]


def _transformer_of(block: nn.Module) -> nn.Module | None:
    """The block's first spatial transformer with at least one transformer block, or None."""
    for module in block:
        transformer_blocks = getattr(module, "transformer_blocks", None)
        if transformer_blocks is not None and len(transformer_blocks) > 0:
            return module
    return None


def _named_blocks(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    blocks = [(f"input {n}", block) for n, block in enumerate(getattr(unet, "input_blocks", ()))]
    middle = getattr(unet, "middle_block", None)
    blocks += [(MIDDLE, middle)] if middle is not None else []
    return blocks + [(f"output {n}", block) for n, block in enumerate(getattr(unet, "output_blocks", ()))]


def attention_layers(unet: nn.Module) -> dict[str, AttentionLayer]:
    """Every block of `unet` that has self-attention, by name, in the order the U-Net runs them."""
    layers = {}
    for name, block in _named_blocks(unet):
        transformer = _transformer_of(block)
        if transformer is not None:
            attentions = tuple(tb.attn1 for tb in transformer.transformer_blocks)
            layers[name] = AttentionLayer(name, transformer, attentions)
    return layers


def find_layer(unet: nn.Module, name: str) -> AttentionLayer:
    """The named layer of `unet`, or LayerError naming the layers this U-Net has."""
    layers = attention_layers(unet)
    if name in layers:
        return layers[name]
    if name == MIDDLE:
        raise LayerError(
            "this U-Net has no self-attention in its middle block (for example SSD-1B or an MMDiT model); "
            f"choose another guided attention layer: {', '.join(layers) or 'it has none'}")
    raise LayerError(f"the loaded model has no self-attention layer {name!r}; "
                     f"its layers are {', '.join(layers) or 'none'}")
