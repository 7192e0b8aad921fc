"""Follows scripts/sd_upscale.py (v1.10.1): a Script-dropdown img2img script that tiles the picture and
reads `processed.images` by position.

`run` splits `p.init_images[0]` into overlapping tiles of the job's size as `images.split_grid` places
them (enough columns and rows to share at least `overlap` pixels, spread evenly), runs the img2img job
on them `p.batch_size` at a time through `process_images` on the same `p`, collects
`work_results += processed.images`, gives tile i the i-th result, and puts the tiles back together.
Left out: the upscaler (the picture is tiled at its own size), the seed per upscale count, saving;
`combine_grid`'s feathered blend of the overlaps is replaced by pasting the tiles in order.
"""

import math

import gradio as gr
import torch
from PIL import Image

from modules import processing, scripts


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side begin (split_grid's `cols`/`dx`, or `rows`/`dy`)."""
    count = max(1, math.ceil((length - overlap) / (tile - overlap)))
    step = (length - tile) / (count - 1) if count > 1 else 0
    return [int(index * step) for index in range(count)]


class Script(scripts.Script):
    def __init__(self):
        self.batches: list = []  # the last run's Processed per batch of tiles, for the tests

    def title(self):
        return "SD upscale"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        return [gr.Slider(minimum=0, maximum=256, step=16, label="Tile overlap", value=64,
                          elem_id=self.elem_id("overlap"))]

    def run(self, p, overlap):
        source = p.init_images[0]
        corners = [(x, y) for y in tile_starts(source.height, p.height, int(overlap))
                   for x in tile_starts(source.width, p.width, int(overlap))]
        tiles = [source.crop((x, y, x + p.width, y + p.height)) for x, y in corners]
        self.batches, work_results, batch_size = [], [], p.batch_size
        for start in range(0, len(tiles), batch_size):
            batch = tiles[start:start + batch_size]
            p.batch_size = len(batch)
            p.init_latent = torch.cat([processing.encode_image(tile) for tile in batch])
            processed = processing.process_images(p)
            self.batches.append(processed)
            work_results += processed.images
        combined = Image.new("RGB", source.size)
        for index, corner in enumerate(corners):
            missing = Image.new("RGB", (p.width, p.height))
            combined.paste(work_results[index] if index < len(work_results) else missing, corner)
        samples = torch.cat([batch.samples for batch in self.batches])
        return processing.Processed([combined], processed.infotexts[:1], samples)
