"""A random-weight SD1.5 ControlNet model for the e2e test webuis' ControlNet tests (fixed seed).

Built with the network class of the ControlNet extension itself (its scripts/cldm.py), with SD1.5's layout, the one
ControlNet 1.1.4xx infers from an SD1.5 model's keys. Zero-initialised convolutions get random values so the
control acts.
Usage: make_controlnet.py --webui WEBUI_DIR --controlnet EXT_DIR --out OUT.safetensors  (the test webuis' venv)
"""
import argparse
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--webui", type=Path, required=True)
parser.add_argument("--controlnet", type=Path, required=True)
parser.add_argument("--out", type=Path, required=True)
args = parser.parse_args()

# scripts/cldm.py imports only modules.devices from the webui (for dtype_unet): a stand-in module is enough here
devices = types.ModuleType("modules.devices")
devices.dtype_unet = torch.float32
modules = types.ModuleType("modules")
modules.devices = devices
sys.modules.update({"modules": modules, "modules.devices": devices})
# ...and its layers come from the webui's ldm (repositories/stable-diffusion-stability-ai)
sys.path[:0] = [str(args.controlnet), str(args.webui / "repositories" / "stable-diffusion-stability-ai")]
from scripts.cldm import ControlNet  # noqa: E402

torch.manual_seed(20261124)
control = ControlNet(in_channels=4, model_channels=320, num_res_blocks=2, attention_resolutions=[1, 2, 4],
                     transformer_depth=[1, 1, 1, 0], channel_mult=[1, 2, 4, 4], transformer_depth_middle=1,
                     use_linear_in_transformer=False, context_dim=768, num_heads=8, global_average_pooling=False,
                     hint_channels=3, use_fp16=False)
with torch.no_grad():
    for param in control.parameters():
        if param.dim() > 1 and param.abs().sum() == 0:
            param.copy_(torch.randn_like(param) / param[0].numel() ** 0.5)
state = {k: v.half().contiguous() for k, v in control.state_dict().items()}
args.out.parent.mkdir(parents=True, exist_ok=True)
save_file(state, str(args.out))
print(f"   {args.out}: {sum(v.numel() for v in state.values()) / 1e6:.1f}M values")
