"""Follows modules/prompt_parser.py (v1.10.1) without prompt-editing schedules.

The webui's cond is a MulticondLearnedConditioning; here it is already the pair the CFG denoiser
reconstructs from it: `conds_list[i]` lists (row in `tensor`, weight) for image i (AND gives several).
"""

from dataclasses import dataclass

import torch


@dataclass
class MulticondBatch:
    conds_list: list
    tensor: torch.Tensor

    @property
    def shape(self):
        return self.tensor.shape


def reconstruct_multicond_batch(c, current_step):
    return c.conds_list, c.tensor


def reconstruct_cond_batch(c, current_step):
    return c
