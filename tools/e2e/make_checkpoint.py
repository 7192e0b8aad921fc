"""A random-weight SD1 checkpoint for the e2e test webuis, built with the webui's own ldm code (fixed seed).

Presets change the webui's configs/v1-inference.yaml:
  tiny  U-Net model_channels 32, 1 res block per level; VAE ch 32, 1 res block (fast on CPU; the main suite)
  sd1   SD1.5's U-Net widths (model_channels 320, 2 res blocks), the same small VAE: ControlNet 1.1.4xx builds its
        network with SD1.5's fixed widths, so its tests need a checkpoint whose U-Net matches them
The CLIP-L text encoder has its real shape, random weights. The yaml is written beside the checkpoint, where the webui
looks for a checkpoint's config. Weights are stored in fp16 (the test webuis run --no-half, in float32).
Usage: make_checkpoint.py --webui WEBUI_DIR --preset tiny|sd1 --out OUT.safetensors  (HF_HOME = the offline cache)
"""
import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

PRESETS = {
    "tiny": {"unet": {"model_channels": 32, "num_res_blocks": 1}, "vae": {"ch": 32, "num_res_blocks": 1},
             "seed": 20261123},
    "sd1": {"unet": {"model_channels": 320, "num_res_blocks": 2}, "vae": {"ch": 32, "num_res_blocks": 1},
            "seed": 20261124},
}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--webui", type=Path, required=True)
parser.add_argument("--preset", choices=PRESETS, required=True)
parser.add_argument("--out", type=Path, required=True)
args = parser.parse_args()
preset = PRESETS[args.preset]

config = OmegaConf.load(args.webui / "configs" / "v1-inference.yaml")
unet = config.model.params.unet_config.params
unet.update(preset["unet"])
unet.use_checkpoint = False
config.model.params.first_stage_config.params.ddconfig.update(preset["vae"])
args.out.parent.mkdir(parents=True, exist_ok=True)
yaml = args.out.with_suffix(".yaml")
OmegaConf.save(config, yaml)

sys.path.insert(0, str(args.webui / "repositories" / "stable-diffusion-stability-ai"))
import transformers  # noqa: E402

# FrozenCLIPEmbedder loads pretrained weights; build the model from the (offline) config instead.
transformers.CLIPTextModel.from_pretrained = classmethod(
    lambda cls, name, **kw: cls(transformers.CLIPTextConfig.from_pretrained(name)))
from ldm.util import instantiate_from_config  # noqa: E402

torch.manual_seed(preset["seed"])
model = instantiate_from_config(config.model)
with torch.no_grad():  # ldm zero-initialises output layers: give every weight a value so the U-Net's output varies
    for param in model.model.parameters():
        if param.dim() > 1 and param.abs().sum() == 0:
            param.copy_(torch.randn_like(param) / param[0].numel() ** 0.5)
    # A fresh final LayerNorm (weight 1, bias 0) gives every token a mean of exactly 0, and the webui's default
    # emphasis ("Original", modules/sd_emphasis.py) rescales by old mean / new mean: 0 / 0 = NaN for some prompts.
    final_norm = model.cond_stage_model.transformer.text_model.final_layer_norm
    final_norm.bias.copy_(0.5 + 0.1 * torch.randn_like(final_norm.bias))
state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
save_file(state, str(args.out))
print(f"   {args.out}: {sum(v.numel() for v in state.values()) / 1e6:.1f}M values, config {yaml.name}")
