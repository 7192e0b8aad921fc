"""The real script on a Forge-family host: process, process_before_every_sampling, the guarded sample, postprocess.

The script module is loaded as on A1111 and then told it runs on Forge (its FORK and FORGE, as it sets
them where `modules_forge` exists). A job here samples one step of `forge_denoiser.ForgeCFGDenoiser`
inside its `sample`, as Forge's processing.py calls `process_before_every_sampling` and then samples
(modules/processing.py at dfdcbab6, `StableDiffusionProcessingTxt2Img.sample`).
"""

from types import SimpleNamespace

import pytest
import torch

import forge_denoiser
from backend.modules.k_model import KModel
from backend.patcher.base import ModelPatcher
from backend.sampling import sampling_function
from harness import conds
from models import sd_alphas_cumprod
from modules import shared
from sag_core.host.forge import NOT_GUIDED, Forge
from sag_core.params import SagParams

pytestmark = pytest.mark.usefixtures("sd1_host")

SIGMA_INDEX = 600


class ForgeModel:
    """`shared.sd_model` on Forge: `forge_objects.unet` (the pass's patcher) and the legacy-model test."""

    def __init__(self, unet, legacy=True):
        self.model = SimpleNamespace(diffusion_model=unet)
        self.forge_objects = SimpleNamespace(unet=ModelPatcher(KModel(unet, sd_alphas_cumprod())))
        self.legacy = legacy

    def is_webui_legacy_model(self):
        return self.legacy


class ForgeJob:
    """The parts of Forge's StableDiffusionProcessing the script and the denoiser read."""

    def __init__(self, sd_model, cfg_scale=5.0, scripts=None, script_args=()):
        self.sd_model, self.cfg_scale, self.seeds = sd_model, cfg_scale, [1]
        self.extra_generation_params, self.scripts, self.script_args = {}, scripts, script_args
        self.batch_size, self.iteration = 2, 0

    def sample(self):
        self.scripts_hook(self)  # processing.py: process_before_every_sampling, then the sampler
        generator = torch.Generator().manual_seed(3)
        denoiser = forge_denoiser.ForgeCFGDenoiser(self, 10)
        sigma = self.sd_model.forge_objects.unet.model.predictor.sigmas[SIGMA_INDEX].repeat(2)
        x = torch.randn(2, 4, 32, 32, generator=generator) * (sigma[0] ** 2 + 1) ** 0.5
        cond, uncond = conds(2)
        return denoiser(x, sigma, uncond, cond, self.cfg_scale, 0.0, torch.zeros(2, 5, 1, 1))


@pytest.fixture
def forge_host(ext, monkeypatch):
    """The script told it runs on Forge; the loaded model a Forge model around the test host's U-Net."""
    monkeypatch.setattr(ext.module, "FORK", "Forge")
    monkeypatch.setattr(ext.module, "FORGE", Forge(sampling_function.calc_cond_uncond_batch))
    model = ForgeModel(shared.sd_model.model.diffusion_model)
    monkeypatch.setattr(shared, "sd_model", model)
    return ext.module.SelfAttentionGuidanceScript()


def run(script, job, settings):
    """One job through the script's hooks as Forge calls them; the sampled output."""
    args = SagParams(**settings).as_args() if settings is not None else SagParams().as_args()
    job.scripts_hook = lambda p: script.process_before_every_sampling(p, *args)
    script.process(job, *args)
    try:
        return job.sample()
    finally:
        script.postprocess(job, SimpleNamespace(images=[], infotexts=[], index_of_first_image=0), *args)


def test_a_guided_job_on_forge_differs_from_off_and_leaves_the_models_patcher_as_it_was(forge_host):
    model = shared.sd_model
    own_patcher = model.forge_objects.unet
    off = run(forge_host, ForgeJob(model), None)
    absent = ForgeJob(model)
    absent.scripts_hook = lambda p: None
    assert torch.equal(off, absent.sample())  # off: bit for bit the extension absent
    job = ForgeJob(model)
    on = run(forge_host, job, {"enabled": True, "scale": 0.75, "pag_enabled": True})
    assert (on - off).abs().max() > 1e-2
    assert job.extra_generation_params["SAG scale"] == 0.75 and job.extra_generation_params["PAG scale"] == 3.0
    assert model.forge_objects.unet is own_patcher and own_patcher.model_options == {"transformer_options": {}}


def test_an_exception_in_sampling_still_restores_the_models_patcher(forge_host):
    model = shared.sd_model
    own_patcher = model.forge_objects.unet
    job = ForgeJob(model)
    args = SagParams(enabled=True).as_args()

    def failing_hook(p):
        forge_host.process_before_every_sampling(p, *args)
        assert p.sd_model.forge_objects.unet is not own_patcher  # ours, on a clone
        raise RuntimeError("out of memory")

    job.scripts_hook = failing_hook
    forge_host.process(job, *args)
    with pytest.raises(RuntimeError, match="out of memory"):
        job.sample()
    assert model.forge_objects.unet is own_patcher


def test_a_model_without_a_unet_is_told_not_guided_and_sampled_as_off(forge_host, monkeypatch, capsys):
    model = shared.sd_model
    model.legacy = False  # Flux, SD3: Forge's is_webui_legacy_model() is False
    off = run(forge_host, ForgeJob(model), None)
    job = ForgeJob(model)
    on = run(forge_host, job, {"enabled": True})
    assert torch.equal(on, off)
    assert not any(key.startswith("SAG") for key in job.extra_generation_params)
    assert f"[Self-Attention Guidance] {NOT_GUIDED}." in capsys.readouterr().err.splitlines()


def test_ticked_beside_forges_built_in_sag_a_line_names_both(forge_host, capsys):
    built_in = SimpleNamespace(title=lambda: "SelfAttentionGuidance Integrated (SD 1.x, SD 2.x, SDXL)", args_from=0)
    job = ForgeJob(shared.sd_model, scripts=SimpleNamespace(alwayson_scripts=[built_in]),
                   script_args=(True, 0.5, 2.0, 1.0))
    run(forge_host, job, {"enabled": True})
    lines = [line for line in capsys.readouterr().err.splitlines() if "built-in" in line]
    assert lines == ["[Self-Attention Guidance] ticked together with Forge's built-in 'SelfAttentionGuidance "
                     "Integrated (SD 1.x, SD 2.x, SDXL)': it hides the middle block's self-attention, so ours leaves "
                     "its steps on layer 'middle' unguided (counted in the infotext); tick one of them."]
