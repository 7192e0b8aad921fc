"""A step whose SAG guidance raises (the extra U-Net pass out of memory) fails alone, visibly, and unguided.

The webui calls `on_cfg_denoised` through `script_callbacks.cfg_denoised_callback`, which reports and
swallows any Exception (modules/script_callbacks.py, v1.10.1; tests/host/modules/script_callbacks.py):
SAG catches it itself, counts the step in `SAG failed steps` and says so once per job in the console.
"""

import pytest
import torch

import harness
from modules import script_callbacks, sd_samplers_common, shared

ON = (True, 0.75, 2.0, 1.0)
EXTRA_PASS_ROWS = 1  # batch 1: the step's call has cond + uncond rows (2); SAG's own pass has the uncond row only

pytestmark = pytest.mark.usefixtures("sd1_host")


class ExtraPassRaises:
    """A U-Net pre-hook raising `error` on SAG's extra pass (the only call with one row), on the steps listed."""

    def __init__(self, error: BaseException, steps=None):
        self.error, self.steps, self.extra_passes, self.rows = error, steps, 0, []

    def __enter__(self):
        self.handle = shared.sd_model.model.diffusion_model.register_forward_pre_hook(self.look)
        return self

    def look(self, module, args):
        self.rows.append(args[0].shape[0])
        if args[0].shape[0] == EXTRA_PASS_ROWS:
            self.extra_passes += 1
            if self.steps is None or self.extra_passes in self.steps:
                raise self.error

    def __exit__(self, *exc):
        self.handle.remove()


def test_every_extra_pass_failing_gives_the_sag_off_image_and_says_so_once(ext, capsys):
    off = harness.run_job(ext.txt2img, steps=4)
    capsys.readouterr()
    with ExtraPassRaises(RuntimeError("CUDA out of memory (simulated)")):
        failed = harness.run_job(ext.txt2img, ON, steps=4)

    assert torch.equal(failed.samples, off.samples)
    assert failed.infotexts == ["SAG scale: 0.75, SAG failed steps: 4"]
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["[Self-Attention Guidance] the extra U-Net pass failed on 4 step(s): "
                     "RuntimeError: CUDA out of memory (simulated); those steps are not guided"]
    assert not script_callbacks.reported  # nothing reached the webui's callback wrapper


def test_failed_steps_are_counted_per_batch_and_reported_once_per_job(ext, capsys):
    guided = harness.run_job(ext.txt2img, ON, steps=4, n_iter=2)
    capsys.readouterr()
    with ExtraPassRaises(MemoryError("first"), steps={2, 3}) as raising:
        failed = harness.run_job(ext.txt2img, ON, steps=4, n_iter=2)

    assert raising.extra_passes == 8
    assert failed.infotexts == ["SAG scale: 0.75, SAG failed steps: 2", "SAG scale: 0.75"]
    assert torch.equal(failed.samples[1], guided.samples[1])  # the second batch guided on every step
    assert (failed.samples[0] - guided.samples[0]).abs().max() > 1e-4
    console = capsys.readouterr().err
    assert console.count("[Self-Attention Guidance]") == 1 and "failed on 2 step(s): MemoryError: first" in console


def test_an_interrupt_raised_in_the_extra_pass_still_ends_sampling(ext, capsys):
    with ExtraPassRaises(sd_samplers_common.InterruptedException(), steps={3}) as raising:
        interrupted = harness.run_job(ext.txt2img, ON, steps=6)

    assert raising.rows == [2, 1] * 3  # the sampler stopped at the third step's extra pass
    assert interrupted.infotexts == ["SAG scale: 0.75"]
    assert "[Self-Attention Guidance]" not in capsys.readouterr().err


def test_pasting_drops_the_failed_steps_key_with_the_other_sag_keys_when_a_value_is_bad(ext):
    pasted = {"SAG scale": "lots", "SAG failed steps": "3", "Steps": "20"}
    ext.module.on_infotext_pasted("", pasted)
    assert pasted == {"Steps": "20"}
