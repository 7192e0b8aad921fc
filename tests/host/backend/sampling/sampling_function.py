"""Follows Forge dfdcbab6 backend/sampling/sampling_function.py: how the conditioning entries are batched
through the model, CFG combined and the patcher's functions called.

`calc_cond_uncond_batch` builds one chunk per entry (B rows, all images), puts them in reverse order
(the uncond entry first) and batches as many as memory allows; here `MAX_CHUNKS` stands in for the
free-memory check (None: all in one call). Left out: areas, masks and timestep ranges of entries
(every entry covers the whole latent), ControlNet's `control`, the low-VRAM warning, cache clearing.
"""

import collections
import math

import torch

MAX_CHUNKS = None

COND = 0
UNCOND = 1

_Chunk = collections.namedtuple("_Chunk", ["input_x", "mult", "conditioning"])


def _chunk(entry, x_in):
    strength = entry.get("strength", 1.0)
    conditioning = {key: value.process_cond(batch_size=x_in.shape[0], device=x_in.device, area=None)
                    for key, value in entry["model_conds"].items()}
    return _Chunk(x_in, torch.ones_like(x_in) * strength, conditioning)


def _can_concat(c1, c2):
    if c1.input_x.shape != c2.input_x.shape or c1.conditioning.keys() != c2.conditioning.keys():
        return False
    return all(c1.conditioning[key].can_concat(c2.conditioning[key]) for key in c1.conditioning)


def calc_cond_uncond_batch(model, cond, uncond, x_in, timestep, model_options):
    out_cond = torch.zeros_like(x_in)
    out_count = torch.ones_like(x_in) * 1e-37
    out_uncond = torch.zeros_like(x_in)
    out_uncond_count = torch.ones_like(x_in) * 1e-37

    to_run = [(_chunk(entry, x_in), COND) for entry in cond]
    if uncond is not None:
        to_run += [(_chunk(entry, x_in), UNCOND) for entry in uncond]

    while to_run:
        first = to_run[0][0]
        to_batch = [i for i in range(len(to_run)) if _can_concat(to_run[i][0], first)]
        to_batch.reverse()
        if MAX_CHUNKS is not None:
            to_batch = to_batch[:MAX_CHUNKS]

        chunks, cond_or_uncond = [], []
        for i in to_batch:
            chunk, kind = to_run.pop(i)
            chunks.append(chunk)
            cond_or_uncond.append(kind)

        input_x = torch.cat([chunk.input_x for chunk in chunks])
        c = {key: chunks[0].conditioning[key].concat([chunk.conditioning[key] for chunk in chunks[1:]])
             for key in chunks[0].conditioning}
        timestep_ = torch.cat([timestep] * len(chunks))

        transformer_options = model_options.get("transformer_options", {}).copy()
        transformer_options["cond_or_uncond"] = cond_or_uncond[:]
        transformer_options["sigmas"] = timestep
        c["transformer_options"] = transformer_options

        if "model_function_wrapper" in model_options:
            output = model_options["model_function_wrapper"](
                model.apply_model, {"input": input_x, "timestep": timestep_, "c": c, "cond_or_uncond": cond_or_uncond})
        else:
            output = model.apply_model(input_x, timestep_, **c)
        for chunk, kind, out in zip(chunks, cond_or_uncond, output.chunk(len(chunks))):
            if kind == COND:
                out_cond += out * chunk.mult
                out_count += chunk.mult
            else:
                out_uncond += out * chunk.mult
                out_uncond_count += chunk.mult

    return out_cond / out_count, out_uncond / out_uncond_count


def sampling_function_inner(model, x, timestep, uncond, cond, cond_scale, model_options={}, seed=None,
                            return_full=False):
    edit_strength = sum(item.get("strength", 1) for item in cond)
    if math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False):
        uncond_ = None
    else:
        uncond_ = uncond

    cond_pred, uncond_pred = calc_cond_uncond_batch(model, cond, uncond_, x, timestep, model_options)

    if not math.isclose(edit_strength, 1.0):
        cfg_result = uncond_pred + (cond_pred - uncond_pred) * cond_scale * edit_strength
    else:
        cfg_result = uncond_pred + (cond_pred - uncond_pred) * cond_scale

    for fn in model_options.get("sampler_post_cfg_function", []):
        args = {"denoised": cfg_result, "cond": cond, "uncond": uncond, "model": model,
                "uncond_denoised": uncond_pred, "cond_denoised": cond_pred, "sigma": timestep,
                "model_options": model_options, "input": x}
        cfg_result = fn(args)

    if return_full:
        return cfg_result, cond_pred, uncond_pred
    return cfg_result
