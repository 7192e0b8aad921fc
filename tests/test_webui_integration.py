"""The extension's real script file, driven through the test host's copy of the webui protocol.

The host (tests/host, see its README) follows webui v1.10.1's sd_samplers_cfg_denoiser.py,
processing.py and scripts.py; the model is the real ldm U-Net, the samplers are k-diffusion's.
"""

import pytest
import torch

import harness
from models import TinyLatentDiffusion, tiny_unet
from modules import prompt_parser, processing, script_callbacks, scripts, shared
from sag_core.attention_hook import find_middle_self_attention
from sag_core.conditioning import rows_of
from sag_core.host.a1111 import condition_dict
from sag_core.params import SagParamError

ON = (True, 0.75, 2.0, 1.0)


pytestmark = pytest.mark.usefixtures("sd1_host")


class UnetCalls:
    """Counts U-Net calls and their batch sizes (a test-side hook on the diffusion model)."""

    def __init__(self):
        self.rows = []
        self.handle = shared.sd_model.model.diffusion_model.register_forward_pre_hook(
            lambda module, args: self.rows.append(args[0].shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def run(runner, sag=(False,), **kwargs):
    with UnetCalls() as calls:
        processed = harness.run_job(runner, sag, **kwargs)
    return processed, calls.rows


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DDIM"])
def test_sag_guides_every_step_with_one_extra_uncond_call(ext, sampler):
    off, off_rows = run(ext.txt2img, sampler_name=sampler)
    on, on_rows = run(ext.txt2img, ON, sampler_name=sampler)
    assert on_rows == [row for rows in zip(off_rows, [1] * len(off_rows)) for row in rows]
    assert (on.samples - off.samples).abs().max() > 1e-3
    assert on.infotexts == ["SAG scale: 0.75"]
    assert off.infotexts == [""]


def test_disabled_is_bit_identical_to_the_webui_without_the_extension(ext):
    saved = {name: list(entries) for name, entries in script_callbacks.callback_map.items()}
    script_callbacks.clear_callbacks()
    bare = scripts.ScriptRunner()
    try:
        absent, absent_rows = run(bare)
    finally:
        for name, entries in saved.items():
            script_callbacks.callback_map[name][:] = entries
    _, attention = find_middle_self_attention(shared.sd_model.model.diffusion_model)
    hooks_seen = []
    attention.register_forward_pre_hook(lambda m, a: hooks_seen.append(len(m._forward_pre_hooks)))
    disabled, disabled_rows = run(ext.txt2img, (False, 1.0, 2.0, 1.0))
    attention._forward_pre_hooks.clear()
    assert torch.equal(disabled.samples, absent.samples)
    assert disabled_rows == absent_rows
    assert set(hooks_seen) == {1}


def test_scale_zero_is_cfg_only_and_says_so(ext):
    off, off_rows = run(ext.txt2img)
    zero, zero_rows = run(ext.txt2img, (True, 0.0))
    assert torch.equal(zero.samples, off.samples) and zero_rows == off_rows
    assert zero.infotexts == ["SAG scale: 0.0"]


def test_batch_of_two_in_one_call_equals_b_row_slices(ext):
    together, rows = run(ext.txt2img, ON, batch=2)
    assert rows[:2] == [4, 2]
    shared.opts.batch_cond_uncond = False
    sliced, sliced_rows = run(ext.txt2img, ON, batch=2)
    assert sliced_rows[:3] == [2, 2, 2]
    torch.testing.assert_close(sliced.samples, together.samples, atol=1e-4, rtol=1e-4)


def test_and_prompt_with_slices_that_mix_cond_and_uncond_rows(ext, monkeypatch):
    cond, uncond = harness.conds(2, and_prompts=2)
    uneven = prompt_parser.MulticondBatch([[(0, 0.5), (1, 0.5)], [(2, 1.0)]], cond.tensor[:3])
    monkeypatch.setattr(harness, "conds", lambda batch, **kw: (uneven, uncond))
    together, rows = run(ext.txt2img, ON, batch=2)
    assert rows[:2] == [5, 2]
    shared.opts.batch_cond_uncond = False
    sliced, sliced_rows = run(ext.txt2img, ON, batch=2)
    assert sliced_rows[:4] == [2, 2, 1, 2]
    torch.testing.assert_close(sliced.samples, together.samples, atol=1e-4, rtol=1e-4)
    off, _ = run(ext.txt2img, batch=2)
    assert (together.samples - off.samples).abs().max() > 1e-3


def test_unequal_prompt_lengths_use_the_separate_uncond_call(ext):
    lengths = {"tokens": 154, "uncond_tokens": 77}
    on, rows = run(ext.txt2img, ON, cond_kwargs=lengths)
    off, _ = run(ext.txt2img, cond_kwargs=lengths)
    assert rows[:3] == [1, 1, 1]
    assert on.infotexts == ["SAG scale: 0.75"]
    assert (on.samples - off.samples).abs().max() > 1e-3


def test_steps_whose_uncond_the_webui_skips_are_skipped_and_reported(ext):
    shared.opts.skip_early_cond = 0.5
    on, rows = run(ext.txt2img, ON, steps=8)
    off, _ = run(ext.txt2img, steps=8)
    assert rows == [1] * 5 + [2, 1] * 3
    assert on.infotexts == ["SAG scale: 0.75, SAG skipped steps: 5"]
    assert (on.samples - off.samples).abs().max() > 1e-3


def test_odd_non_square_size_is_guided(ext):
    on, rows = run(ext.txt2img, ON, width=264, height=200)
    off, _ = run(ext.txt2img, width=264, height=200)
    assert on.samples.shape == (1, 4, 25, 33)
    assert rows == [2, 1] * 8
    assert (on.samples - off.samples).abs().max() > 1e-3


@pytest.mark.parametrize("sampler", ["Euler a", "DDIM"])
def test_v_prediction_model_is_guided(ext, sampler):
    shared.sd_model = TinyLatentDiffusion(tiny_unet(seed=3), parameterization="v")
    on, rows = run(ext.txt2img, ON, sampler_name=sampler)
    off, _ = run(ext.txt2img, sampler_name=sampler)
    assert rows[:2] == [2, 1]
    assert on.infotexts == ["SAG scale: 0.75"]
    assert (on.samples - off.samples).abs().max() > 1e-3


def test_sd2_style_twenty_head_attention_is_guided(ext):
    shared.sd_model = TinyLatentDiffusion(tiny_unet(heads=20, seed=5))
    assert find_middle_self_attention(shared.sd_model.model.diffusion_model)[1].heads == 20
    on, rows = run(ext.txt2img, ON)
    off, _ = run(ext.txt2img)
    assert rows == [2, 1] * 8 and on.infotexts == ["SAG scale: 0.75"]
    assert (on.samples - off.samples).abs().max() > 1e-3


def test_hires_second_pass_at_another_size_and_sampler_family_is_guided(ext):
    hires = dict(enable_hr=True, hr_scale=1.5, hr_sampler_name="DDIM", denoising_strength=0.6, steps=6)
    on, rows = run(ext.txt2img, ON, **hires)
    off, off_rows = run(ext.txt2img, **hires)
    assert on.samples.shape == (1, 4, 48, 48)
    assert len(rows) == 2 * len(off_rows)
    assert (on.samples - off.samples).abs().max() > 1e-3


def inpainting_job(runner, sag):
    """An inpainting model (hybrid, 9 input channels) regenerating the left half of a 32x32 latent."""
    shared.sd_model = TinyLatentDiffusion(tiny_unet(in_channels=9, seed=9), conditioning_key="hybrid")
    init = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    keep = torch.zeros(4, 32, 32)
    keep[:, :, 16:] = 1
    image_conditioning = torch.cat([1 - keep[:1, None].expand(1, 1, 32, 32), init], dim=1)
    denoised = []
    script_callbacks.on_cfg_after_cfg(lambda params: denoised.append(params.x.clone()))
    try:
        processed = harness.run_job(runner, sag, sampler_name="Euler a", init_latent=init, mask=keep,
                                    nmask=1 - keep, image_conditioning=image_conditioning, denoising_strength=0.75)
    finally:
        script_callbacks.callback_map["cfg_after_cfg"].pop()
    return processed, denoised, init, keep.bool()


def test_inpainting_guidance_never_touches_the_kept_region(ext):
    on, on_steps, init, keep = inpainting_job(ext.img2img, ON)
    off, off_steps, _, _ = inpainting_job(ext.img2img, (False,))
    assert len(on_steps) == len(off_steps) == 7
    for step in on_steps:
        assert torch.equal(step[0][keep], init[0][keep])
    assert (on.samples - off.samples)[0][~keep].abs().max() > 1e-3


def test_an_exception_mid_sampling_leaves_no_hook_and_the_next_job_works(ext):
    unet = shared.sd_model.model.diffusion_model
    calls = []

    def fail_on_third_call(module, args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory (simulated)")

    handle = unet.output_blocks[0].register_forward_pre_hook(fail_on_third_call)
    with pytest.raises(RuntimeError, match="simulated"):
        harness.run_job(ext.txt2img, ON)
    handle.remove()
    harness.assert_unhooked()
    on, rows = run(ext.txt2img, ON)
    assert rows == [2, 1] * 8


def test_an_interrupt_ends_sampling_early_and_unhooks(ext):
    def interrupt_at_step_three(params):
        if params.denoiser.step == 3:
            shared.state.interrupted = True

    script_callbacks.on_cfg_denoiser(interrupt_at_step_three)
    try:
        processed, rows = run(ext.txt2img, ON)
    finally:
        script_callbacks.remove_callbacks_for_function(interrupt_at_step_three)
    assert rows == [2, 1] * 4
    assert processed.infotexts == ["SAG scale: 0.75"]


def test_a_job_abandoned_after_process_hooks_nothing_and_guides_no_later_job(ext):
    """SAG is active only inside its own job's `p.sample`: a job that never samples leaves no trace."""
    abandoned = processing.StableDiffusionProcessing()
    ext.script.process(abandoned, *ON)
    assert ext.module.active.get() is None
    harness.assert_unhooked()
    off, rows = run(ext.txt2img)
    assert rows == [2] * 8
    assert ext.module.active.get() is None


def test_invalid_settings_fail_the_job_with_a_message_naming_the_field(ext):
    with pytest.raises(SagParamError, match=r"scale \(SAG scale\) must be a number from -2 to 5; got 9"):
        harness.run_job(ext.txt2img, (True, 9.0))


def test_a_model_without_middle_attention_fails_the_job_clearly(ext):
    unet = shared.sd_model.model.diffusion_model
    middle = unet.middle_block[1]
    del unet.middle_block[1]
    try:
        with pytest.raises(SagParamError, match="no self-attention in its middle block") as refused:
            harness.run_job(ext.txt2img, ON)
        assert refused.value.field == "layer" and "choose another guided attention layer: input 5" in str(refused.value)
    finally:
        unet.middle_block.insert(1, middle)


def test_sag_keys_do_not_leak_into_a_later_job_sharing_extra_generation_params(ext):
    """X/Y/Z shallow-copies p, so every cell shares one extra_generation_params dict."""
    shared_params = {}
    on = harness.run_job(ext.txt2img, ON, extra_generation_params=shared_params)
    off = harness.run_job(ext.txt2img, (False,), extra_generation_params=shared_params)
    assert on.infotexts == ["SAG scale: 0.75"] and off.infotexts == [""]


def test_callbacks_are_registered_once_however_many_jobs_run(ext):
    for _ in range(2):
        harness.run_job(ext.txt2img, ON, steps=2)
    for category in ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg"):
        ours = [e for e in script_callbacks.callback_map[category] if e.callback.__module__ == ext.module.__name__]
        assert len(ours) == 1


def test_ui_controls_follow_the_field_table_with_stable_per_tab_ids(ext):
    from sag_core.params import FIELDS
    for runner, tab in ((ext.txt2img, "txt2img"), (ext.img2img, "img2img")):
        script = runner.alwayson_scripts[0]
        controls = runner.inputs[script.args_from:script.args_to]
        controls, spare = controls[:-1], controls[-1]
        assert spare.value is None and type(spare).__name__ == "State"
        assert [c.label for c in controls] == [f.label for f in FIELDS]
        assert [c.value for c in controls] == [f.default for f in FIELDS]
        assert controls[0].accordion.elem_id == f"script_{tab}_selfattention_guidance_enabled"
        accordions = {"enabled", "pag_enabled", "seg_enabled"}
        assert [c.accordion.elem_id for c, f in zip(controls, FIELDS) if f.attr in accordions] == [
            f"script_{tab}_selfattention_guidance_{attr}" for attr in ("enabled", "pag_enabled", "seg_enabled")]
        assert [c.elem_id for c, f in zip(controls, FIELDS) if f.attr not in accordions] == [
            f"script_{tab}_selfattention_guidance_{f.attr}" for f in FIELDS if f.attr not in accordions]
        numbers = [(c, f) for c, f in zip(controls, FIELDS) if not f.is_bool and not f.is_choice]
        assert [(c.minimum, c.maximum) for c, f in numbers] == [(f.minimum, f.maximum) for c, f in numbers]
        assert [type(c).__name__ for c, f in numbers] == ["Slider"] * 7 + ["Number"]
        layer = controls[[f.attr for f in FIELDS].index("layer")]
        assert type(layer).__name__ == "Dropdown" and layer.value == "middle"
        assert [choice[0] if isinstance(choice, tuple) else choice for choice in layer.choices][:2] == ["middle", "output 0"]


def test_pasted_infotext_enables_sag_only_when_its_keys_are_there(ext):
    fields = ext.txt2img.infotext_fields
    enable = fields[0][1]
    assert enable({"SAG scale": "0.5"}) is True and enable({"Steps": "20"}) is False
    assert [key for _, key in fields[1:6]] == ["SAG scale", "SAG blur sigma", "SAG threshold", "SAG start", "SAG end"]
    pag, seg = fields[-2][1], fields[-1][1]
    assert pag({"PAG scale": "3"}) and not pag({"SAG scale": "0.5"}) and seg({"SEG scale": "3"}) and not seg({})


def test_pasting_fills_defaults_reads_forge_keys_and_drops_bad_values(ext):
    paste = ext.module.on_infotext_pasted
    ours = {"SAG scale": "0.5"}
    paste("", ours)
    assert ours == {"SAG scale": 0.5, "SAG blur sigma": 2.0, "SAG threshold": 1.0, "SAG start": 0.0, "SAG end": 1.0,
                    "SAG layer": "middle", "SAG smooth mask": False}
    pag_only = {"PAG scale": "2.5", "SAG layer": "output 1"}
    paste("", pag_only)
    assert pag_only == {"PAG scale": 2.5, "SAG start": 0.0, "SAG end": 1.0, "SAG layer": "output 1"}
    forge = {"sag_enabled": "True", "sag_scale": "0.6", "sag_blur_sigma": "3.0"}
    paste("", forge)
    assert forge["SAG scale"] == 0.6 and forge["SAG blur sigma"] == 3.0
    forge_off = {"sag_enabled": "False", "sag_scale": "0.6"}
    paste("", forge_off)
    assert "SAG scale" not in forge_off
    bad = {"SAG scale": "lots"}
    paste("", bad)
    assert "SAG scale" not in bad


def test_window_skips_the_extra_pass_and_saliency_outside_it(ext):
    recorded = []
    _, attention = find_middle_self_attention(shared.sd_model.model.diffusion_model)
    probe = attention.register_forward_pre_hook(lambda m, a: recorded.append(len(m._forward_pre_hooks)))
    try:
        half, rows = run(ext.txt2img, (True, 0.75, 2.0, 1.0, 0.0, 0.5), steps=8)
    finally:
        probe.remove()
    assert rows == [2, 1] * 4 + [2] * 4
    assert half.infotexts == ["SAG scale: 0.75, SAG end: 0.5"]
    late, late_rows = run(ext.txt2img, (True, 0.75, 2.0, 1.0, 0.5, 1.0), steps=8)
    assert late_rows == [2] * 4 + [2, 1] * 4


def test_xyz_axes_are_registered_once_with_their_labels(ext):
    from modules import script_callbacks as callbacks
    callbacks.before_ui_callback()
    labels = [option.label for option in ext.xyz.axis_options if option.label.startswith("[SAG]")]
    assert labels == ["[SAG] Scale", "[SAG] Blur sigma", "[SAG] Threshold", "[SAG] Start", "[SAG] End",
                      "[SAG] PAG scale", "[SAG] SEG scale", "[SAG] SEG blur sigma", "[SAG] Layer"]


def xyz_option(ext, label):
    return next(option for option in ext.xyz.axis_options if option.label == label)


def test_xyz_sweep_over_scale_gives_one_image_per_value_with_its_infotext(ext):
    cond, uncond = harness.conds(1)
    p = processing.StableDiffusionProcessing(cond=cond, uncond=uncond, steps=6)
    p.scripts = ext.txt2img
    p.script_args = tuple(harness.sag_args(ext.txt2img, False))
    cells = ext.xyz.sweep(p, xyz_option(ext, "[SAG] Scale"), ["0", "0.5", "1.0"])
    assert [cell.infotexts for cell in cells] == [["SAG scale: 0.0"], ["SAG scale: 0.5"], ["SAG scale: 1.0"]]
    images = [cell.samples for cell in cells]
    assert (images[1] - images[0]).abs().max() > 1e-3 and (images[2] - images[1]).abs().max() > 1e-3
    assert not hasattr(p, "sag_overrides")


def test_xyz_refuses_out_of_range_values_before_anything_runs(ext):
    cond, uncond = harness.conds(1)
    p = processing.StableDiffusionProcessing(cond=cond, uncond=uncond)
    p.scripts = ext.txt2img
    p.script_args = tuple(harness.sag_args(ext.txt2img, False))
    with pytest.raises(SagParamError, match=r"blur_sigma \(SAG blur sigma\) must be a number from 0 to 10; got 12"):
        ext.xyz.sweep(p, xyz_option(ext, "[SAG] Blur sigma"), ["1", "12"])


def test_field_table_ui_infotext_xyz_and_hints_agree(ext):
    """Adding a field to the table and not to one of its consumers fails here."""
    from sag_core.params import FIELDS, SWITCH, VALUE_FIELDS, SagParams
    import dataclasses
    import json
    import re
    from pathlib import Path

    script = ext.txt2img.alwayson_scripts[0]
    controls = ext.txt2img.inputs[script.args_from:script.args_to - 1]
    axes = [f for f in FIELDS if not f.is_bool]
    source = (Path(harness.SCRIPT_PATH).parents[1] / "javascript" / "sag_hints.js").read_text()
    hints = json.loads(re.search(r"var sagHints = (\{.*?\});", source, re.S).group(1))

    assert [f.name for f in dataclasses.fields(SagParams)] == [f.attr for f in FIELDS]
    assert [c.label for c in controls] == [f.label for f in FIELDS]
    assert [key for _, key in ext.txt2img.infotext_fields[1:-2]] == [f.infotext for f in VALUE_FIELDS]
    switches = [ext.txt2img.infotext_fields[i][0] for i in (0, -2, -1)]
    assert [c.label for c in switches] == [FIELDS_BY_LABEL.label for FIELDS_BY_LABEL in
                                           (next(f for f in FIELDS if f.attr == a) for a in SWITCH.values())]
    assert ext.txt2img.paste_field_names == [f.infotext for f in VALUE_FIELDS]
    assert [o.label for o in ext.xyz.axis_options if o.label.startswith("[SAG]")] == [
        "[SAG] " + (f.axis or f.attr.replace("_", " ").capitalize()) for f in axes]
    assert hints == {f.label: f.hint for f in FIELDS}


def test_condition_dicts_match_the_webuis_for_every_model_family(ext):
    build = condition_dict
    text, image = torch.zeros(2, 77, 8), torch.ones(2, 5, 1, 1)
    assert build("crossattn", text, image) == {"c_crossattn": [text], "c_concat": [image]}
    assert build("hybrid", text, image) == {"c_crossattn": [text], "c_concat": [image]}
    assert build("crossattn-adm", text, image) == {"c_crossattn": [text], "c_adm": image}
    sdxl = {"crossattn": torch.zeros(2, 77, 2048), "vector": torch.zeros(2, 2816)}
    built = build("crossattn", sdxl, image)
    assert set(built) == {"crossattn", "vector", "c_concat"} and built["c_concat"] == [image]
    assert rows_of(sdxl) == 2 and rows_of(text) == 2


def test_webui_before_1_8_without_params_denoiser_finds_it_through_p_sampler(ext, monkeypatch):
    """CFGDenoiserParams.denoiser arrived in 1.8.0; on 1.6/1.7 the script reaches p.sampler.model_wrap_cfg."""
    from modules import sd_samplers_cfg_denoiser as cfg_denoiser
    original = cfg_denoiser.CFGDenoiserParams
    monkeypatch.setattr(cfg_denoiser, "CFGDenoiserParams", lambda *args: original(*args[:7]))
    legacy, rows = run(ext.txt2img, ON, sampler_name="DDIM")
    monkeypatch.undo()
    current, _ = run(ext.txt2img, ON, sampler_name="DDIM")
    assert rows == [2, 1] * 7
    assert torch.equal(legacy.samples, current.samples)


def test_host_sampler_noise_continues_the_stream_of_the_jobs_initial_noise():
    # The webui's TorchHijack hands samplers p.rng.next(): the next draw of the generator the initial
    # noise came from (modules/rng.py, v1.10.1), never a repeat of that noise.
    p = processing.StableDiffusionProcessing(seed=5, iteration=1)
    generator = torch.Generator().manual_seed(5 + 1000)
    initial, following = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)

    assert torch.equal(p.noise((2, 4, 8, 8)), initial)
    assert torch.equal(torch.randn(2, 4, 8, 8), following)
