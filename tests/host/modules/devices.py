"""Follows modules/devices.py (v1.10.1; the fp8 parts as added in v1.8.0): the U-Net's dtypes and the casting
context that processing.py and apply_model run the U-Net in.

The defaults are the `--no-half` values, under which every context below is a no-op, so tests that
never call `configure` run exactly as before. `configure` sets what shared_init.initialize_rest and
sd_models.load_model_weights set for one set-up of command-line flags (see `PRECISIONS`).

The webui's `torch.autocast("cuda")` is stood in for by `cuda_autocast`: CPU autocast in the same
dtype, plus the one rule of CUDA autocast that CPU autocast lacks and the U-Net needs: group_norm and
layer_norm run in float32 (both are on CUDA autocast's float32 list; on the CPU an fp16 GroupNorm fed
ldm's `x.float()` raises "mixed dtype"). Like CUDA autocast on a GPU, it lowers every matmul/conv run
inside the sampling, SAG's own included.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

cpu = torch.device("cpu")
device: torch.device = cpu  # the webui's device; the host's tensors stay on the CPU whatever it says
fp8 = False
dtype = torch.float32
dtype_unet = torch.float32
dtype_inference = torch.float32
unet_needs_upcast = False


@dataclass(frozen=True)
class Precision:
    """One set-up of the webui's precision flags, and what they make of devices' globals."""

    name: str
    flags: str
    dtype: torch.dtype
    dtype_unet: torch.dtype
    dtype_inference: torch.dtype
    upcast_sampling: bool = False
    fp8: bool = False
    on_cpu: bool = False


FP32 = Precision("fp32", "--no-half", torch.float32, torch.float32, torch.float32)
PRECISIONS = {p.name: p for p in (
    FP32,
    Precision("fp16", "(default on a GPU)", torch.float16, torch.float16, torch.float16),
    Precision("fp16-upcast", "--upcast-sampling", torch.float16, torch.float16, torch.float16, upcast_sampling=True),
    # Not a flag of webui 1.10.1 (it casts U-Nets to float16 or float32 only): a bf16 U-Net through the same casts.
    Precision("bf16", "(dtype bfloat16)", torch.bfloat16, torch.bfloat16, torch.bfloat16),
    Precision("fp8", "fp8_storage=Enable", torch.float16, torch.float16, torch.float16, fp8=True),
    Precision("fp8-full", "fp8_storage=Enable --precision full", torch.float16, torch.float16, torch.float32,
              fp8=True),
    Precision("fp8-cpu", "fp8_storage=Enable --no-half --use-cpu all", torch.float32, torch.float32,
              torch.float32, fp8=True, on_cpu=True),
)}


def configure(precision: Precision) -> None:
    """Set the globals as shared_init.initialize_rest (dtype, dtype_inference) and load_model_weights
    (dtype_unet, fp8, unet_needs_upcast) do for these flags."""
    global device, fp8, dtype, dtype_unet, dtype_inference, unet_needs_upcast
    device = cpu if precision.on_cpu else torch.device("cuda")
    dtype, dtype_unet, dtype_inference = precision.dtype, precision.dtype_unet, precision.dtype_inference
    fp8 = precision.fp8
    unet_needs_upcast = precision.upcast_sampling and dtype == torch.float16 and dtype_unet == torch.float16


def reset() -> None:
    configure(FP32)
    global device
    device = cpu


def _float32_norm(norm):
    def forward(self, x):
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return norm(x.float(), self, weight, bias)
    return forward


_FLOAT32_NORMS = {
    torch.nn.GroupNorm: _float32_norm(lambda x, m, w, b: F.group_norm(x, m.num_groups, w, b, m.eps)),
    torch.nn.LayerNorm: _float32_norm(lambda x, m, w, b: F.layer_norm(x, m.normalized_shape, w, b, m.eps)),
}


@contextlib.contextmanager
def _patched_forwards(forwards: dict) -> None:
    """Replace module classes' forward for the duration, as manual_cast does (nested uses are no-ops)."""
    applied = [cls for cls in forwards if not hasattr(cls, "org_forward")]
    for cls in applied:
        cls.org_forward = cls.forward
        cls.forward = forwards[cls]
    try:
        yield
    finally:
        for cls in applied:
            cls.forward = cls.org_forward
            del cls.org_forward


@contextlib.contextmanager
def cuda_autocast():
    """Stand-in for `torch.autocast("cuda")` (float16) on CPU tensors; the bf16 set-up uses its own dtype."""
    with torch.autocast("cpu", dtype=dtype), _patched_forwards(_FLOAT32_NORMS):
        yield


def manual_cast_forward(target_dtype: torch.dtype):
    """Follows manual_cast_forward: tensor args and the module's weights in `target_dtype` for the call,
    the result in dtype_inference."""
    def forward(self, *args, **kwargs):
        if any(isinstance(arg, torch.Tensor) and arg.dtype != target_dtype for arg in args):
            args = [arg.to(target_dtype) if isinstance(arg, torch.Tensor) else arg for arg in args]
        stored = next((param.dtype for param in self.parameters() if param.dtype != target_dtype), target_dtype)
        if stored != target_dtype:
            self.to(target_dtype)
        result = self.org_forward(*args, **kwargs)
        if stored != target_dtype:
            self.to(stored)
        if target_dtype != dtype_inference and isinstance(result, torch.Tensor):
            result = result.to(dtype_inference)
        return result
    return forward


def manual_cast(target_dtype: torch.dtype):
    modules = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)
    return _patched_forwards({cls: manual_cast_forward(target_dtype) for cls in modules})


def autocast(disable: bool = False):
    """Follows devices.autocast: the same choices in the same order (MPS, XPU and GTX 16xx left out)."""
    if disable:
        return contextlib.nullcontext()
    if fp8 and device == cpu:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=True)
    if fp8 and dtype_inference == torch.float32:
        return manual_cast(dtype)
    if dtype == torch.float32 or dtype_inference == torch.float32:
        return contextlib.nullcontext()
    return cuda_autocast()


def without_autocast(disable: bool = False):
    """Follows devices.without_autocast: autocast switched off inside an autocast region."""
    if torch.is_autocast_enabled("cpu") and not disable:
        return torch.autocast("cpu", enabled=False)
    return contextlib.nullcontext()
