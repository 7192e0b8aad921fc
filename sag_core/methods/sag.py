"""Self-Attention Guidance (SAG): blur the uncond x0 where self-attention is concentrated, predict again, push away.

Hong et al., "Improving Sample Quality of Diffusion Models Using Self-Attention Guidance", ICCV 2023 (arXiv 2210.00939).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..blur import degrade_x0
from ..fields import Field
from ..saliency import saliency_mask
from .base import PROMPT, UNCOND, Extra, MaskFunction, Method, OutputSpace, RunOptions, Step


def sag_guidance(target: torch.Tensor, degraded_prediction: torch.Tensor, scale: float) -> torch.Tensor:
    """SAG's guidance term: scale * (target - prediction on the degraded input) (paper Eq. 11)."""
    return (target - degraded_prediction) * scale


@dataclass(frozen=True)
class DegradedInput:
    """SAG's extra pass before it runs: the degraded input, what its prediction is compared with, the mask."""

    x: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor


def degraded_input(x: torch.Tensor, sigma: torch.Tensor, uncond_out: torch.Tensor, saliency: torch.Tensor,
                   grid: tuple[int, int], *, blur_sigma: float, threshold: float, space: OutputSpace,
                   mask_function: MaskFunction | None = None) -> DegradedInput:
    """The rows `x` (model output `uncond_out`) with x0 blurred where saliency exceeds `threshold`, re-noised.

    `mask_function` replaces `saliency_mask` (the lab's mask ablations).
    """
    x0 = space.to_x0(x, uncond_out, sigma)
    mask = (mask_function or saliency_mask)(saliency, grid, x.shape[-2:], threshold)
    degraded_x0 = degrade_x0(x0, mask, blur_sigma)
    degraded_x = space.renoise(degraded_x0, x, uncond_out, sigma)
    return DegradedInput(degraded_x, space.target(degraded_x0, uncond_out), mask)


class SelfAttentionGuidance(Method):
    """SAG degrades its rows' input; its accordion is the outer one and holds the shared settings too."""

    name = "sag"
    records_saliency = True
    branch_key = "SAG branch"
    fields = (
        Field("enabled", "Self-Attention Guidance", "SAG enabled", False,
              hint="Switch Self-Attention Guidance on: one extra uncond U-Net pass per guided step."),
        Field("scale", "SAG scale", "SAG scale", 0.75, -2.0, 5.0, 0.05,
              hint="How hard SAG pushes away from the blurred prediction. 0 switches the effect off; 0.5 to 1 is "
                   "typical, with every sampler (DDIM CFG++ too). At CFG scale 1 and below SAG sharpens the "
                   "prompt's prediction."),
        Field("blur_sigma", "SAG blur sigma", "SAG blur sigma", 2.0, 0.0, 10.0, 0.1,
              hint="Gaussian blur strength (in latent pixels) applied where self-attention is concentrated. "
                   "1 to 3 is typical."),
        Field("threshold", "SAG mask threshold", "SAG threshold", 1.0, 0.0, 4.0, 0.05,
              hint="Tokens receiving more than this multiple of the average self-attention are blurred. "
                   "1 means above average."),
        Field("smooth_mask", "SAG smooth mask", "SAG smooth mask", False,
              hint="Upsample SAG's attention map to the latent bilinearly before the threshold, so the blurred "
                   "region follows smooth outlines instead of the paper's nearest-neighbour token squares."),
    )
    layout = (("scale", "blur_sigma", "threshold"), ("start", "end", "preview"), ("layer", "smooth_mask"))

    def rows(self, cfg_scale: float, options: RunOptions) -> str:
        """The uncond rows; at CFG scale 1 and below, where the uncond prediction does not steer the image,
        the prompt's, as diffusers' SAG pipeline does (unless the options pin the uncond rows)."""
        return PROMPT if options.sag_branch == "auto" and cfg_scale <= 1.0 else UNCOND

    def extra(self, step: Step) -> Extra:
        """The degraded rows; where the degradation leaves the input bit for bit as it was (blur sigma 0, nothing
        above the threshold), the host's own prediction of the step is the answer, so no pass is asked for:
        a call of other rows would round differently on CPU kernels that block by batch size."""
        settings = step.settings
        degraded = degraded_input(step.x, step.sigma, step.out, step.saliency, step.size,
                                  blur_sigma=settings.blur_sigma, threshold=settings.threshold, space=step.space,
                                  mask_function=step.options.mask)
        known = step.out if torch.equal(degraded.x, step.x) else None
        return Extra(degraded.x, step.sigma, step.cond, prediction=known, target=degraded.target, mask=degraded.mask)

    def term(self, step: Step, extra: Extra | None, prediction: torch.Tensor | None) -> torch.Tensor:
        return sag_guidance(extra.target, prediction, step.settings.scale)


SAG = SelfAttentionGuidance()
