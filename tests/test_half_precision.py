"""SAG under the webui's half-precision set-ups, driven through the test host with the real script.

Each set-up (tests/host/modules/devices.py `PRECISIONS`) casts the tiny U-Net as sd_models.load_model_weights
does and samples inside devices.autocast() with apply_model's casts (sd_hijack_unet.py, webui v1.10.1):
float16 (the GPU default, CUDA autocast stood in for by CPU autocast), --upcast-sampling, a bfloat16 U-Net,
fp8 storage under autocast, under manual_cast (--precision full) and on a CPU device (autocast bfloat16).
"""

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pytest
import torch

import harness
import sag_core.methods.sag as guidance
from models import TinyLatentDiffusion, tiny_unet
from modules import devices, processing, script_callbacks, scripts, sd_models, shared
from sag_core.attention_hook import find_middle_self_attention
from sag_core.blur import gaussian_blur_2d
from sag_core.params import SagParams
from sag_core.saliency import saliency_from_qk

ON = SagParams(enabled=True).as_args()
PREVIEW = SagParams(enabled=True, preview=True).as_args()
OFF = SagParams(enabled=False, scale=1.0).as_args()
# Euler a (k-diffusion) for the first pass, DDIM (timesteps) for the hires pass.
JOB = {"width": 128, "height": 128, "steps": 2, "sampler_name": "Euler a", "hr_sampler_name": "DDIM",
       "enable_hr": True, "hr_scale": 2.0}
HALF = ["fp16", "fp16-upcast", "bf16", "fp8", "fp8-full", "fp8-cpu"]
COMPUTE_DTYPE = {"fp16": torch.float16, "fp16-upcast": torch.float16, "bf16": torch.bfloat16,
                 "fp8": torch.float16, "fp8-full": torch.float32, "fp8-cpu": torch.bfloat16}
"""The dtype of the middle attention's to_q output (what SAG's hook meets) in each set-up."""

# Step 0 of the same seeds (4 images of 256 px, 16 middle tokens each; the sampler's float32 input is the
# same), saliency compared with float32's. Measured: fp16 and fp16-upcast agree on all 64 tokens, max
# |saliency difference| 0.00076; bf16 all 64, 0.0094; fp8 and fp8-full 63 of 64, 0.040; fp8-cpu all 64,
# 0.051 (fp8 rounds the weights themselves). Tolerances: about twice the difference, 3 of 64 tokens for fp8.
MASK_TOLERANCE = {"fp16": (1.0, 0.002), "fp16-upcast": (1.0, 0.002), "bf16": (1.0, 0.02),
                  "fp8": (0.95, 0.1), "fp8-full": (0.95, 0.1), "fp8-cpu": (0.95, 0.1)}


def host_model(name: str) -> TinyLatentDiffusion:
    return sd_models.apply_precision(TinyLatentDiffusion(tiny_unet()), devices.PRECISIONS[name])


@contextmanager
def half_model(ext, name: str) -> Iterator[None]:
    """A fresh host with the tiny model cast for set-up `name`; afterwards no hook and no swallowed error."""
    harness.reset_host_state()
    shared.sd_model = host_model(name)
    for runner in (ext.txt2img, ext.img2img):
        runner.errors.clear()
    script_callbacks.reported.clear()
    try:
        yield
    finally:
        devices.reset()
    harness.assert_unhooked()
    assert not ext.txt2img.errors and not ext.img2img.errors and not script_callbacks.reported


@dataclass
class Jobs:
    precision: str
    absent: processing.Processed
    disabled: processing.Processed
    on: processing.Processed
    q_dtypes: set


def job_without_extension() -> processing.Processed:
    saved = {name: list(entries) for name, entries in script_callbacks.callback_map.items()}
    script_callbacks.clear_callbacks()
    try:
        return harness.run_job(scripts.ScriptRunner(), **JOB)
    finally:
        for name, entries in saved.items():
            script_callbacks.callback_map[name][:] = entries


@pytest.fixture(scope="module", params=HALF)
def jobs(ext, request) -> Jobs:
    """One set-up's hires jobs (Euler a, then DDIM): without the extension, SAG off, SAG on with the preview."""
    with half_model(ext, request.param):
        absent = job_without_extension()
        disabled = harness.run_job(ext.txt2img, OFF, **JOB)
        _, attention = find_middle_self_attention(shared.sd_model.model.diffusion_model)
        q_dtypes = set()
        handle = attention.to_q.register_forward_hook(lambda module, args, out: q_dtypes.add(out.dtype))
        try:
            on = harness.run_job(ext.txt2img, PREVIEW, **JOB)
        finally:
            handle.remove()
    return Jobs(request.param, absent, disabled, on, q_dtypes)


def test_the_unet_really_computes_in_the_set_ups_dtype(jobs):
    assert jobs.q_dtypes == {COMPUTE_DTYPE[jobs.precision]}


def test_sag_changes_the_result_in_every_precision(jobs):
    assert torch.isfinite(jobs.on.samples).all() and jobs.on.samples.dtype == torch.float32
    assert (jobs.on.samples - jobs.absent.samples).abs().max() > 1e-2
    assert jobs.on.infotexts[0] == "SAG scale: 0.75"


def test_sag_off_is_bit_identical_to_no_extension_in_every_precision(jobs):
    assert torch.equal(jobs.disabled.samples, jobs.absent.samples)


def test_hires_fix_and_mask_preview_run_in_every_precision(jobs):
    image, preview = jobs.on.images
    assert preview.size == image.size == (256, 256)
    assert (np.asarray(preview) != np.asarray(image)).any()
    assert jobs.on.infotexts == ["SAG scale: 0.75"] * 2


def first_step_saliency(ext, monkeypatch) -> torch.Tensor:
    """The saliency SAG thresholded at the first step of a 4-image job (every set-up sees the same input)."""
    seen = []

    def spy(saliency, *args):
        seen.append(saliency.float().clone())
        return mask_of(saliency, *args)

    mask_of = guidance.saliency_mask
    monkeypatch.setattr(guidance, "saliency_mask", spy)
    harness.run_job(ext.txt2img, ON, batch=4, steps=1, width=256, height=256)
    monkeypatch.setattr(guidance, "saliency_mask", mask_of)
    return seen[0]


@pytest.fixture(scope="module")
def float32_saliency(ext) -> torch.Tensor:
    with half_model(ext, "fp32"), pytest.MonkeyPatch.context() as monkeypatch:
        return first_step_saliency(ext, monkeypatch)


@pytest.mark.parametrize("precision", HALF)
def test_saliency_mask_agrees_with_float32(ext, float32_saliency, precision, monkeypatch):
    with half_model(ext, precision):
        half = first_step_saliency(ext, monkeypatch)
    threshold = SagParams().threshold
    agreement = ((half > threshold) == (float32_saliency > threshold)).float().mean().item()
    least_agreement, most_difference = MASK_TOLERANCE[precision]
    assert agreement >= least_agreement
    assert (half - float32_saliency).abs().max().item() <= most_difference


def test_saliency_scores_stay_float32_inside_the_webuis_autocast():
    generator = torch.Generator().manual_seed(3)
    q, k = (torch.randn(1, 4, 64, 16, generator=generator) * 3 for _ in range(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = saliency_from_qk(q, k, 0.25)
    assert torch.equal(inside, saliency_from_qk(q, k, 0.25))


def test_blur_stays_in_the_latents_dtype_inside_the_webuis_autocast():
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = gaussian_blur_2d(latent, 2.0)
    assert inside.dtype == torch.float32
    assert torch.equal(inside, gaussian_blur_2d(latent, 2.0))


@pytest.mark.parametrize("precision", HALF)
def test_pag_and_seg_beside_sag_guide_in_every_precision(ext, precision):
    family = SagParams(enabled=True, pag_enabled=True, seg_enabled=True, seg_blur_sigma=1.0).as_args()
    with half_model(ext, precision):
        plain = harness.run_job(ext.txt2img, OFF, **JOB)
        guided = harness.run_job(ext.txt2img, family, **JOB)
    assert torch.isfinite(guided.samples).all() and (guided.samples - plain.samples).abs().max() > 1e-2
    assert guided.infotexts == ["SAG scale: 0.75, PAG scale: 3.0, SEG scale: 3.0, SEG blur sigma: 1.0"]
