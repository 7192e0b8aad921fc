"""Latent tiling the way Tiled Diffusion's MultiDiffusion runs it (pkuliyi2015/multidiffusion-upscaler-for-automatic1111
22798f6: tile_methods/multidiffusion.py `hook`, `kdiff_forward`, `ddim_forward`, `sample_one_step`, `repeat_tensor`,
`repeat_cond_dict`; tile_utils/utils.py `split_bboxes`, `BBox`).

The forward of the CFG denoiser's inner model (k-diffusion's CompVisDenoiser, or the timesteps denoiser for DDIM)
is replaced: the latent is split into overlapping tiles, the tiles are batched, `tile_bs` to a call, each tile
bringing all N rows of that model call (`cat([x_in[bbox.slicer] for bbox in bboxes])`, tile-major), sigma and the
conditioning are repeated per tile (an image conditioning of the latent's size is cut like x), and the outputs are
summed into a buffer and divided by the number of tiles over each cell. A latent of another size than the one the
tiler was set up for (a hires pass) goes through untiled. Mixture of Diffusers (`MixtureOfDiffusers`) tiles the
model's `apply_model` instead. The real extension hooks each sampler when it is created (it wraps
`sd_samplers.create_sampler`); here `process_before_every_sampling` hooks `p.sampler` (or the model).
Not reproduced: custom regions, noise inversion, ControlNet tile switching.
"""

import math

import torch

from modules import scripts, shared


class BBox:
    def __init__(self, x: int, y: int, w: int, h: int) -> None:
        self.x, self.y, self.w, self.h = x, y, w, h
        self.slicer = slice(None), slice(None), slice(y, y + h), slice(x, x + w)


def split_bboxes(w: int, h: int, tile_w: int, tile_h: int, overlap: int):
    cols = math.ceil((w - overlap) / (tile_w - overlap))
    rows = math.ceil((h - overlap) / (tile_h - overlap))
    dx = (w - tile_w) / (cols - 1) if cols > 1 else 0
    dy = (h - tile_h) / (rows - 1) if rows > 1 else 0
    bboxes, weights = [], torch.zeros((1, 1, h, w))
    for row in range(rows):
        y = min(int(row * dy), h - tile_h)
        for col in range(cols):
            x = min(int(col * dx), w - tile_w)
            bbox = BBox(x, y, tile_w, tile_h)
            bboxes.append(bbox)
            weights[bbox.slicer] += 1.0
    return bboxes, weights


def repeat_tensor(x: torch.Tensor, n: int) -> torch.Tensor:
    if n == 1:
        return x
    if x.shape[0] == 1:
        return x.expand([n] + [-1] * (x.dim() - 1))
    return x.repeat([n] + [1] * (x.dim() - 1))


class MultiDiffusion:
    def __init__(self, sampler, h: int, w: int, tile: int, overlap: int, tile_bs: int, distort=None) -> None:
        self.sampler, self.h, self.w = sampler, h, w
        self.tile_w, self.tile_h = min(tile, w), min(tile, h)
        bboxes, self.weights = split_bboxes(w, h, self.tile_w, self.tile_h, overlap)
        batches = math.ceil(len(bboxes) / tile_bs)
        size = math.ceil(len(bboxes) / batches)
        self.batched_bboxes = [bboxes[i * size:(i + 1) * size] for i in range(batches)]
        self.distort = distort  # test-only: alters each tile batch, so that it no longer is a cut of the latent
        self.calls: list[list[BBox]] = []  # the tiles of each tiled model call, in order

    def hook(self) -> None:
        inner = self.sampler.model_wrap_cfg.inner_model
        self.sampler_forward = inner.forward
        inner.forward = self.tiled_forward

    def unhook(self) -> None:
        pass  # the sampler goes with the job


    def repeat_cond_dict(self, cond: dict, bboxes: list) -> dict:
        n = len(bboxes)
        out = dict(cond)
        out["c_crossattn"] = [repeat_tensor(cond["c_crossattn"][0], n)]
        image_cond = cond["c_concat"][0]
        if tuple(image_cond.shape[2:]) == (self.h, self.w):
            out["c_concat"] = [torch.cat([image_cond[bbox.slicer] for bbox in bboxes], dim=0)]
        else:
            out["c_concat"] = [repeat_tensor(image_cond, n)]
        return out

    def tiled_forward(self, x_in: torch.Tensor, sigma_in: torch.Tensor, cond: dict) -> torch.Tensor:
        n = x_in.shape[0]
        if tuple(x_in.shape[-2:]) != (self.h, self.w):
            return self.sampler_forward(x_in, sigma_in, cond=cond)
        buffer = torch.zeros_like(x_in)
        for bboxes in self.batched_bboxes:
            x_tile = torch.cat([x_in[bbox.slicer] for bbox in bboxes], dim=0)
            if self.distort is not None:
                x_tile = self.distort(x_tile)
            self.calls.append(bboxes)
            out = self.sampler_forward(x_tile, repeat_tensor(sigma_in, len(bboxes)),
                                       cond=self.repeat_cond_dict(cond, bboxes))
            for i, bbox in enumerate(bboxes):
                buffer[bbox.slicer] += out[i * n:(i + 1) * n]
        return torch.where(self.weights > 1, buffer / self.weights, buffer)


class MixtureOfDiffusers(MultiDiffusion):
    """tile_methods/mixtureofdiffusers.py `hook`/`apply_model_hijack`: the model's `apply_model` is tiled
    instead, so the U-Net gets tiles of the latent already scaled by c_in (uniform tile weights here)."""

    def hook(self) -> None:
        model = shared.sd_model
        self.sampler_forward = model.apply_model
        model.apply_model = self.tiled_forward

    def unhook(self) -> None:
        vars(shared.sd_model).pop("apply_model", None)


class TiledDiffusionScript(scripts.Script):
    def __init__(self, tile: int = 32, overlap: int = 16, tile_bs: int = 2, distort=None,
                 method: type = MultiDiffusion) -> None:
        self.tile, self.overlap, self.tile_bs, self.distort, self.method = tile, overlap, tile_bs, distort, method
        self.delegates: list[MultiDiffusion] = []

    def title(self):
        return "Tiled Diffusion (stand-in)"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process_before_every_sampling(self, p, *args, **kwargs):
        if p.is_hr_pass:
            return
        delegate = self.method(p.sampler, p.height // 8, p.width // 8, self.tile, self.overlap, self.tile_bs,
                               self.distort)
        delegate.hook()
        self.delegates.append(delegate)

    def postprocess(self, p, processed, *args):
        for delegate in self.delegates:
            delegate.unhook()
