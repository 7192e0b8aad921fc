"""A random-weight hypernetwork in the webui's .pt format, for tests/e2e/test_webui_options.py (fixed seed).

Why: SAG must keep guiding when a hypernetwork rewrites the cross-attention keys and values; the e2e test needs one
the webui loads. The file holds what webui v1.10.1 modules/hypernetworks/hypernetwork.py `Hypernetwork.load` reads
(1.6.0 reads the same): for each context size (an int key) a pair of module state dicts, for k and for v, plus
`layer_structure`, `activation_func`, `is_layer_norm`, `dropout_structure`, `activate_output`, `name`, `step`. Each
module is x + Linear(Linear(x)) with a ReLU between (layer_structure [1, 2, 1]: Sequential indices 0 and 2), its
weights drawn at the scale of a Linear's fan-in so that the change to the context is as large as the context itself.
Saved in torch's legacy (non-zip) format: the webui's safe unpickler (modules/safe.py, `check_zip_filenames`)
refuses the `.format_version` and `.storage_alignment` entries newer torch writes into zip archives.
Usage: make_hypernetwork.py --out OUT.pt [--size 768] [--seed N]   (768: the tiny SD1 checkpoint's context_dim)
"""
import argparse
from pathlib import Path

import torch

LAYER_STRUCTURE = [1, 2, 1]


def random_module(size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One HypernetworkModule's state dict: Linear(size, 2*size) at index 0, ReLU at 1, Linear(2*size, size) at 2."""
    hidden = size * LAYER_STRUCTURE[1]

    def normal(*shape: int, fan_in: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) / fan_in ** 0.5

    return {"linear.0.weight": normal(hidden, size, fan_in=size), "linear.0.bias": torch.zeros(hidden),
            "linear.2.weight": normal(size, hidden, fan_in=hidden), "linear.2.bias": torch.zeros(size)}


def hypernetwork(name: str, size: int, seed: int) -> dict:
    """The dict Hypernetwork.save writes, with random k and v modules for one context size."""
    generator = torch.Generator().manual_seed(seed)
    return {size: (random_module(size, generator), random_module(size, generator)),
            "step": 0, "name": name, "layer_structure": LAYER_STRUCTURE, "activation_func": "relu",
            "is_layer_norm": False, "weight_initialization": "Normal", "sd_checkpoint": None,
            "sd_checkpoint_name": None, "activate_output": False, "use_dropout": False,
            "dropout_structure": [0] * len(LAYER_STRUCTURE), "last_layer_dropout": False, "optional_info": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=768, help="the checkpoint's cross-attention context dim")
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(hypernetwork(args.out.stem, args.size, args.seed), args.out, _use_new_zipfile_serialization=False)
    print(f"   {args.out}: hypernetwork for context size {args.size}")


if __name__ == "__main__":
    main()
