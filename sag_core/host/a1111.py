"""The AUTOMATIC1111 webui's CFG denoiser (webui 1.6 to 1.10) adapted to a SagRun: rows, conditioning, previews.

modules/sd_samplers_cfg_denoiser.py `CFGDenoiser.forward` hands its callbacks the step's rows as
[prompt rows..., uncond rows...] (the last B rows are the uncond ones, B images), their text
conditionings and the image conditioning; `cfg_denoised` sees the model's output of every row and
`cfg_after_cfg` the combined result. The webui's modules are handed over in `Webui` by scripts/.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..conditioning import Conditioning, rows_of, take_rows
from ..layers import AttentionLayer
from ..methods import PROMPT, UNCOND, RunOptions
from ..params import SagParams
from ..preview import mask_overlay
from ..run import RUN_OPTIONS_ATTR, RowSet, SagRun
from ..spaces import EpsSpace, X0Space
from .jobs import preview_blocker


@dataclass(frozen=True)
class Webui:
    """What the adapter reads of the running webui: the loaded model, and prompt_parser's AND-layout reader."""

    sd_model: Callable[[], Any]
    reconstruct_multicond_batch: Callable[[Any, int], Any]

    def unet(self) -> Any:
        return self.sd_model().model.diffusion_model


def condition_dict(conditioning_key: str, text: Conditioning, image_cond: torch.Tensor) -> dict:
    """The `cond=` dict for an ldm model of `conditioning_key` (as the webui's CFGDenoiser builds it, v1.10.1)."""
    if conditioning_key == "crossattn-adm":
        return {"c_crossattn": [text], "c_adm": image_cond}
    if isinstance(text, dict):
        return {**text, "c_concat": [image_cond]}
    return {"c_crossattn": [text], "c_concat": [image_cond]}


def first_prompt_rows(denoiser: Any, prompt_rows: int, images: int,
                      reconstruct: Callable[[Any, int], Any]) -> list[int] | None:
    """The first prompt row of each image among the step's rows (conds_list[i][0][0] in CFGDenoiser.forward).

    Without AND there is one prompt row per image. With AND the layout comes from the sampler's own
    conditioning, as the denoiser rebuilds it each step (`reconstruct` is prompt_parser's
    reconstruct_multicond_batch); None if that cannot be read.
    """
    if prompt_rows == images:
        return list(range(images))
    try:
        cond = denoiser.sampler.sampler_extra_args["cond"]
        conds_list, _ = reconstruct(cond, denoiser.step)
        rows = [entries[0][0] for entries in conds_list]
    except (AttributeError, KeyError, TypeError, IndexError):
        return None
    return rows if len(rows) == images else None


def run_options(p: Any) -> RunOptions:
    """The job's run options (the lab's ablations), or the defaults."""
    return getattr(p, RUN_OPTIONS_ATTR, None) or RunOptions()


class GenerationSag:
    """Binds one SagRun to one generation: finds its denoiser, output space and U-Net each step.

    `layer` is the guided layer already resolved on `unet` when the job was checked, so that it is
    not looked up again while the U-Net stays the same.
    """

    def __init__(self, p: Any, params: SagParams, webui: Webui, unet: Any = None,
                 layer: AttentionLayer | None = None) -> None:
        self.run = SagRun(params, run_options(p), float(getattr(p, "cfg_scale", 7.0)))
        self.webui = webui
        self._p = weakref.ref(p)
        self._layer = (unet, layer)
        self._denoiser: Any = None
        self.batch_masks: list = []
        self.previews: list[tuple[int, Image.Image]] = []

    @property
    def p(self) -> Any:
        """The job this generation belongs to (None once it is gone)."""
        return self._p()

    def owns(self, params: Any) -> bool:
        """Whether this denoiser call samples our job; False for a job nested in our sampling (webui 1.8+ tells)."""
        owner = getattr(getattr(params, "denoiser", None), "p", None)
        return owner is None or owner is self.p

    def _find_denoiser(self, params: Any) -> Any:
        denoiser = getattr(params, "denoiser", None)  # webui 1.8+
        if denoiser is None:
            denoiser = self.p.sampler.model_wrap_cfg
        return denoiser

    def begin_step(self, params: Any) -> None:
        self._denoiser = denoiser = self._find_denoiser(params)
        total = getattr(denoiser, "total_steps", None)
        progress = denoiser.step / total if total else 0.0
        if not self.run.in_window(progress):
            self.run.begin_step(params.x, params.sigma, {}, progress)
            return
        row_sets = {kind: self._row_set(kind, params) for kind in sorted(self.run.kinds_needed, reverse=True)}
        if any(row_set is None for row_set in row_sets.values()):
            self.run.skip_step()
            return
        self.run.begin_step(params.x, params.sigma, row_sets, progress)
        model = getattr(denoiser, "inner_model", None)
        unet = self.webui.unet()
        known_unet, layer = self._layer
        try:
            self.run.attach(unet, model if isinstance(model, torch.nn.Module) else None,
                            layer if known_unet is unet else None)
        except LookupError:
            self.run.detach()

    def _row_set(self, kind: str, params: Any) -> RowSet | None:
        """The step's rows of `kind`, one per image, with their conditioning as this callback sees it.

        UNCOND: the last B rows. PROMPT: the first prompt row of each image; None when the prompt rows
        of the images cannot be told apart (AND prompts whose layout is unknown).
        """
        key = self.webui.sd_model().model.conditioning_key
        images = rows_of(params.text_uncond)
        if kind == UNCOND:
            first = params.x.shape[0] - images
            return RowSet(list(range(first, first + images)),
                          condition_dict(key, params.text_uncond, params.image_cond[first:]))
        rows = first_prompt_rows(self._denoiser, rows_of(params.text_cond), images,
                                 self.webui.reconstruct_multicond_batch)
        if rows is None:
            return None
        return RowSet(rows, condition_dict(key, take_rows(params.text_cond, rows), params.image_cond[rows]))

    def guide(self, params: Any) -> None:
        alphas = getattr(self._denoiser, "alphas", None)  # only CFGDenoiserTimesteps predicts eps
        space = X0Space() if alphas is None else EpsSpace(alphas)
        inner_model = params.inner_model

        def predict(x, sigma, cond):
            return inner_model(x, sigma, cond=cond)

        self.run.guide(params.x, space, predict)

    def apply(self, denoised: Any) -> Any:
        """The CFG result plus the methods' term; under CFG++ the term also joins the noise the sampler re-noises with.

        DDIM CFG++ (webui 1.10 sd_samplers_timesteps_impl.ddim_cfgpp) steps with the guided eps for x0
        but re-noises with `denoiser.last_noise_uncond`, the uncond eps. SAG's term belongs to that
        branch, so it is added there too: SAG then moves each step exactly as it does under DDIM.
        """
        term = self.run.take_term(self.keep())
        if term is None:
            return denoised
        denoiser = self._denoiser
        noise = getattr(denoiser, "last_noise_uncond", None)
        if getattr(denoiser, "need_last_noise_uncond", False) and noise is not None and noise.shape == term.shape:
            denoiser.last_noise_uncond = noise + term.to(noise.dtype)
        return denoised + term.to(denoised.dtype)

    def keep(self) -> Any:
        """The inpainting `nmask` of the current pass (1 where the image is regenerated), or None."""
        if self._denoiser is None or getattr(self._denoiser, "mask", None) is None:
            return None
        return self._denoiser.nmask

    def detach(self) -> None:
        self.run.detach()

    def end(self) -> None:
        """Undo what this generation left on the host's model, at the end of its job (or its failure)."""
        self.run.detach()

    def begin_batch(self) -> None:
        self.run.reset_batch()
        self.batch_masks = []

    def end_batch(self) -> None:
        """Keep the batch's masks for the previews, when they are asked for."""
        if self.run.params.preview:
            self.batch_masks = self.run.where_acted(self.keep())

    def add_preview(self, image: Image.Image, number: int, index_in_batch: int, box: Any) -> None:
        """Draw this batch image's mask over `image` (the picture the user gets) and keep it for the end.

        `number` is the image's place among the job's generated images, as its infotext is indexed;
        `box` is where the generated crop lies in `image` (see `host.preview.pasted_crop_box`), None when it fills it.
        """
        if index_in_batch >= len(self.batch_masks):
            return
        mask = self.batch_masks[index_in_batch]
        overlay = mask_overlay(np.asarray(image.convert("RGB")), mask, box)
        self.previews.append((number, Image.fromarray(overlay)))

    def append_previews(self, processed: Any) -> None:
        """Add the previews after the job's images, each with its image's infotext (as ControlNet adds maps),
        unless `preview_blocker` (host/jobs.py) says a script reads the job's images by position."""
        previews, self.previews = self.previews, []
        if preview_blocker(self.p) is not None:
            return
        image_infotexts = processed.infotexts[processed.index_of_first_image:]
        for number, preview in previews:
            processed.images.append(preview)
            processed.infotexts.append(image_infotexts[number] if number < len(image_infotexts) else "")


__all__ = ["GenerationSag", "PROMPT", "UNCOND", "Webui", "condition_dict", "first_prompt_rows", "run_options"]
