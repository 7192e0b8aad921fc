"""Keeps SAG's own maths out of the webui's autocast, which would lower them to float16 or bfloat16."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def autocast_off(device: torch.device) -> ContextManager:
    """Autocast switched off for `device`'s type, so matmuls and convs run in their inputs' dtype.

    The webui samples inside `torch.autocast` (devices.autocast, v1.6 to 1.10), and SAG's callbacks
    run within it. A device type without autocast has nothing to switch off.
    """
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()
