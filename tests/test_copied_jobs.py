"""A shallow copy of a job made after SAG's `process` (`copy(p)`, as extensions make) samples itself.

SAG guards `p.sample` with a per-job subclass of `p`'s class whose `sample` guards only `p`: the copy
shares the class but samples with its own settings, unguarded (it has no SAG generation of its own),
while `p` stays guided (or, with a refused setting, still fails). The class and any `p.sample` another
extension set are given back after the job, also when sampling raised.
"""

import dataclasses
from copy import copy

import pytest
import torch

import harness
from modules import processing, scripts, shared
from sag_core.params import SagParamError

ON = (True, 0.75, 2.0, 1.0)
COPY_SETTINGS = {"steps": 3, "seed": 5}

pytestmark = pytest.mark.usefixtures("sd1_host")


class CopySampler(scripts.Script):
    """Samples a copy of the job, with other steps and seed, from `process_batch` (after SAG's `process`)."""

    def __init__(self):
        self.samples = []

    def title(self):
        return "copy sampler (test)"

    def process_batch(self, p, *args, **kwargs):
        job_copy = copy(p)
        for name, value in COPY_SETTINGS.items():
            setattr(job_copy, name, value)
        self.samples.append(job_copy.sample(conditioning=p.cond, unconditional_conditioning=p.uncond, seeds=[],
                                            subseeds=[], subseed_strength=0.0, prompts=[]))


class SampleWrapper(scripts.Script):
    """Sets an instance `p.sample` wrapping the one `p` had, as some extensions do, from `process`."""

    def __init__(self):
        self.calls = 0
        self.wrapper = None

    def title(self):
        return "sample wrapper (test)"

    def process(self, p, *args):
        wrapped = p.sample

        def sample(*args, **kwargs):
            self.calls += 1
            return wrapped(*args, **kwargs)

        self.wrapper = p.sample = sample


def runner_with(ext, before=(), after=()):
    runner = copy(ext.txt2img)
    for script in (*before, *after):
        script.args_from = script.args_to = 0
    runner.alwayson_scripts = [*before, *ext.txt2img.alwayson_scripts, *after]
    return runner


def job(runner, sag, **fields):
    cond, uncond = harness.conds(1)
    p = processing.StableDiffusionProcessing(cond=cond, uncond=uncond, **fields)
    p.scripts = runner
    p.script_args = tuple(harness.sag_args(runner, *sag))
    return p


def assert_restored(p):
    assert type(p) is processing.StableDiffusionProcessing and "sample" not in vars(p)


def test_a_copy_made_after_process_samples_itself_unguarded_and_the_job_stays_guided(ext):
    copier = CopySampler()
    p = job(runner_with(ext, after=[copier]), ON, steps=6)
    guided = processing.process_images(p)

    fresh_off = harness.run_job(ext.txt2img, (False,), **COPY_SETTINGS)
    assert len(copier.samples) == 1 and torch.equal(copier.samples[0], fresh_off.samples)
    assert torch.equal(guided.samples, harness.run_job(ext.txt2img, ON, steps=6).samples)
    assert_restored(p)


def test_a_job_with_a_refused_setting_still_fails_while_its_copy_samples(ext):
    copier = CopySampler()
    p = job(runner_with(ext, after=[copier]), (True, 9.0))
    with pytest.raises(SagParamError, match="scale"):
        processing.process_images(p)
    assert torch.equal(copier.samples[0], harness.run_job(ext.txt2img, (False,), **COPY_SETTINGS).samples)
    assert_restored(p)


def test_the_guarded_class_keeps_the_jobs_names_and_fields_and_is_given_back_after_an_exception(ext):
    seen = []
    p = job(ext.txt2img, ON)
    unet = shared.sd_model.model.diffusion_model

    def look_then_fail(module, args):
        seen.append(type(p))
        raise RuntimeError("out of memory (simulated)")

    handle = unet.register_forward_pre_hook(look_then_fail)
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            processing.process_images(p)
    finally:
        handle.remove()
    guarded, base = seen[0], processing.StableDiffusionProcessing
    assert guarded is not base and issubclass(guarded, base)
    assert (guarded.__name__, guarded.__qualname__, guarded.__module__) == (base.__name__, base.__qualname__,
                                                                             base.__module__)
    assert dataclasses.fields(guarded) == dataclasses.fields(base)
    assert_restored(p)
    assert ext.module.active.get() is None and ext.module.RUN_ATTR not in vars(p)


@pytest.mark.parametrize("place", ["before", "after"])
def test_a_sample_wrapper_set_by_another_extension_still_runs_with_sag_active_around_sampling(ext, place):
    wrapper = SampleWrapper()
    p = job(runner_with(ext, **{place: [wrapper]}), ON, n_iter=2)
    processed = processing.process_images(p)

    assert wrapper.calls == 2
    assert torch.equal(processed.samples, harness.run_job(ext.txt2img, ON, n_iter=2).samples)
    assert type(p) is processing.StableDiffusionProcessing and vars(p)["sample"] is wrapper.wrapper


def test_a_copy_made_before_process_gets_its_own_guard_and_the_original_none(ext):
    """X/Y/Z cells: each copy runs SAG's `process` itself; the plot's `p` is never guarded."""
    p = job(ext.txt2img, (False,), steps=4)
    cells = ext.xyz.sweep(p, next(o for o in ext.xyz.axis_options if o.label == "[SAG] Scale"), ["0.5"])
    assert cells[0].infotexts == ["SAG scale: 0.5"]
    assert_restored(p)
