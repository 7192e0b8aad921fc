"""SAG inside a job that runs another job, as ADetailer does (tests/host/extensions/detailer.py).

The outer job's SAG acts on the outer sampling only; a nested job gets SAG only if its own script
list includes SAG, and then its own state; the outer job's next batch is guided as before.
"""

import dataclasses
from copy import copy

import pytest
import torch

import harness
from extensions.detailer import DetailerScript
from modules import processing, script_callbacks, scripts, shared
from sag_core.attention_hook import find_middle_self_attention

ON = (True, 0.75, 2.0, 1.0)
ON_WITH_PREVIEW = (True, 0.75, 2.0, 1.0, 0.0, 1.0, True)
SAG_FILE_STEM = "self_attention_guidance"

pytestmark = pytest.mark.usefixtures("sd1_host")


def with_detailer(ext, **options):
    """The txt2img runner with the detailer first among the always-on scripts ("!adetailer" loads first)."""
    detailer = DetailerScript(lambda: harness.conds(1, seed=11), **options)
    detailer.filename, detailer.args_from, detailer.args_to = "adetailer/scripts/!adetailer.py", 0, 0
    runner = copy(ext.txt2img)
    runner.alwayson_scripts = [detailer, *ext.txt2img.alwayson_scripts]
    return runner, detailer


def rerun_alone(inner, runner) -> processing.Processed:
    """The same inner job (same picture, mask, seed, conds) run as a top-level job with `runner`'s scripts."""
    again = dataclasses.replace(inner, extra_generation_params={}, sampler=None, iteration=0, batch_index=0)
    again.scripts = runner
    return processing.process_images(again)


class HooksWhileInnerSamples:
    """Whether SAG's hook was on the U-Net at each denoiser step of a nested job."""

    def __init__(self):
        self.hooked = []

    def __enter__(self):
        _, attention = find_middle_self_attention(shared.sd_model.model.diffusion_model)

        def look(params):
            if getattr(params.denoiser.p, "_ad_inner", False):
                self.hooked.append(bool(attention._forward_pre_hooks))

        self.look = look
        script_callbacks.on_cfg_denoiser(look)
        return self

    def __exit__(self, *exc):
        script_callbacks.remove_callbacks_for_function(self.look)


@pytest.mark.parametrize("rearm", [True, False], ids=["adetailer-flow", "plain-nested-job"])
def test_a_nested_job_without_sag_is_never_guided_by_the_outer_one(ext, rearm):
    runner, detailer = with_detailer(ext, rearm=rearm)
    with HooksWhileInnerSamples() as watch:
        outer = harness.run_job(runner, ON, n_iter=2)
    plain = harness.run_job(ext.txt2img, ON, n_iter=2)

    assert len(detailer.inner_jobs) == 2
    assert watch.hooked and not any(watch.hooked)
    for inner, processed in detailer.inner_jobs:
        # (its infotext still has "SAG scale": ADetailer copies the outer job's extra_generation_params)
        assert torch.equal(processed.samples, rerun_alone(inner, scripts.ScriptRunner()).samples)
    assert torch.equal(outer.samples, plain.samples)  # both batches guided, as without the nested jobs
    assert outer.infotexts == ["SAG scale: 0.75"] * 2


def test_a_nested_job_with_sag_gets_its_own_and_the_outer_sag_resumes_after_it(ext):
    runner, detailer = with_detailer(ext, script_names={SAG_FILE_STEM})
    with HooksWhileInnerSamples() as watch:
        outer = harness.run_job(runner, ON, batch=2, n_iter=2)
    plain = harness.run_job(ext.txt2img, ON, batch=2, n_iter=2)

    assert len(detailer.inner_jobs) == 4
    assert watch.hooked and all(watch.hooked)
    for inner, processed in detailer.inner_jobs:
        alone_with_sag = rerun_alone(inner, inner.scripts)
        alone_without = rerun_alone(inner, scripts.ScriptRunner())
        assert torch.equal(processed.samples, alone_with_sag.samples)
        assert (processed.samples - alone_without.samples).abs().max() > 1e-3
        assert processed.infotexts == ["SAG scale: 0.75"]
    assert torch.equal(outer.samples, plain.samples)
    assert outer.infotexts == ["SAG scale: 0.75"] * 4


def test_previews_and_skipped_step_counts_stay_with_the_job_that_made_them(ext, monkeypatch):
    drawn = []
    add_preview = ext.module.GenerationSag.add_preview

    def recording(generation, image, number, index_in_batch, paste_to):
        drawn.append((generation.p, generation.batch_masks[index_in_batch].clone()))
        return add_preview(generation, image, number, index_in_batch, paste_to)

    monkeypatch.setattr(ext.module.GenerationSag, "add_preview", recording)
    plain = harness.run_job(ext.txt2img, ON_WITH_PREVIEW, n_iter=2)
    plain_masks = [mask for _, mask in drawn]
    drawn.clear()
    runner, detailer = with_detailer(ext, script_names={SAG_FILE_STEM}, s_min_uncond=100.0)
    outer = harness.run_job(runner, ON_WITH_PREVIEW, n_iter=2)

    assert len(plain.images) == len(outer.images) == 4  # two images, then their two previews
    assert outer.infotexts == ["SAG scale: 0.75"] * 4  # no skipped steps: those were the inner jobs'
    inner_ps = [inner for inner, _ in detailer.inner_jobs]
    outer_masks = [mask for p, mask in drawn if all(p is not inner for inner in inner_ps)]
    assert len(outer_masks) == 2 and all(torch.equal(a, b) for a, b in zip(outer_masks, plain_masks))
    for inner, processed in detailer.inner_jobs:
        skipped = sum(1 for p, _ in drawn if p is inner)
        assert skipped == 1 and len(processed.images) == 2  # the inner image and its own preview
        assert processed.infotexts[0].startswith("SAG scale: 0.75, SAG skipped steps: ")
        assert int(processed.infotexts[0].rsplit(": ", 1)[1]) > 0
