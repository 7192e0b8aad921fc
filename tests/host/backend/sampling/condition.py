"""Follows Forge dfdcbab6 backend/sampling/condition.py: conditioning entries and how they reach a batch.

Left out: ConditionConstant, the `guidance` key (Flux).
"""

import math

import torch


def repeat_to_batch_size(tensor, batch_size):
    if tensor.shape[0] > batch_size:
        return tensor[:batch_size]
    if tensor.shape[0] < batch_size:
        return tensor.repeat([math.ceil(batch_size / tensor.shape[0])] + [1] * (tensor.dim() - 1))[:batch_size]
    return tensor


class Condition:
    def __init__(self, cond):
        self.cond = cond

    def _copy_with(self, cond):
        return self.__class__(cond)

    def process_cond(self, batch_size, device, **kwargs):
        return self._copy_with(repeat_to_batch_size(self.cond, batch_size).to(device))

    def can_concat(self, other):
        return self.cond.shape == other.cond.shape

    def concat(self, others):
        return torch.cat([self.cond] + [other.cond for other in others])


class ConditionCrossAttn(Condition):
    """Token counts may differ: they are repeated up to their least common multiple (at most 4 times)."""

    def can_concat(self, other):
        s1, s2 = self.cond.shape, other.cond.shape
        if s1 != s2:
            if s1[0] != s2[0] or s1[2] != s2[2]:
                return False
            if math.lcm(s1[1], s2[1]) // min(s1[1], s2[1]) > 4:
                return False
        return True

    def concat(self, others):
        conds = [self.cond] + [other.cond for other in others]
        longest = math.lcm(*(c.shape[1] for c in conds))
        return torch.cat([c.repeat(1, longest // c.shape[1], 1) if c.shape[1] < longest else c for c in conds])


def compile_conditions(cond):
    """One entry for a text conditioning (SD1's tensor or SDXL's {'crossattn', 'vector'} dict)."""
    if cond is None:
        return None
    if isinstance(cond, torch.Tensor):
        return [dict(cross_attn=cond, model_conds=dict(c_crossattn=ConditionCrossAttn(cond)))]
    return [dict(cross_attn=cond["crossattn"], pooled_output=cond["vector"],
                 model_conds=dict(c_crossattn=ConditionCrossAttn(cond["crossattn"]), y=Condition(cond["vector"])))]


def compile_weighted_conditions(cond, weights):
    """One entry per AND part: the part's row of every image, with the part's weight as its strength."""
    results = []
    for part in map(list, zip(*weights)):
        indices = [index for index, _ in part]
        feed = cond[indices] if isinstance(cond, torch.Tensor) else {k: v[indices] for k, v in cond.items()}
        entries = compile_conditions(feed)
        entries[0]["strength"] = part[-1][1]
        results += entries
    return results
