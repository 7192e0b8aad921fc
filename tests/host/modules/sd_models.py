"""Follows modules/sd_models.py `load_model_weights` (v1.10.1; fp8 since v1.8.0): how the loaded model is cast.

`--no-half` keeps it float32; otherwise `model.half()` with alphas_cumprod kept float32 (the
samplers read it). With fp8 storage every Conv2d and Linear is then moved to float8_e4m3fn, while
norms, biases of other modules and the schedule keep their dtype; compute happens in the dtype that
`devices.autocast()` picks. Left out: the VAE (the host has none), the depth model and the fp16
weight cache for LoRA.
"""

import torch
from torch import nn

from modules import devices


def apply_precision(model: nn.Module, precision: devices.Precision) -> nn.Module:
    """Cast `model` as load_model_weights does for `precision`'s flags, and set devices' globals to match."""
    devices.configure(precision)
    if precision.dtype_unet == torch.float32:
        model.float()
    else:
        alphas_cumprod = model.alphas_cumprod
        model.alphas_cumprod = None
        model.to(precision.dtype_unet)
        model.alphas_cumprod = alphas_cumprod
    if precision.fp8:
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.to(torch.float8_e4m3fn)
    return model
