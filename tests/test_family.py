"""PAG and SEG beside SAG through the real script and the test host's CFG denoiser (webui v1.10.1 protocol).

One Euler step from sigma_max to 0 returns the denoiser's output itself, so a one-step job's latent is
CFG plus the methods' terms: each term is checked against the formula computed here from the host's own
cond row, the combination against the sum of the methods alone (one batched extra call, each
perturbation on its own rows), and the extra U-Net calls are counted.
"""

import pytest
import torch

import harness
from modules import script_callbacks, shared
from sag_core.attention_hook import find_middle_self_attention
from sag_core.layers import attention_layers, find_layer
from sag_core.params import FIELDS_BY_ATTR, SagParamError, SagParams
from sag_core.methods.pag import IdentityAttention
from sag_core.methods.seg import SmoothedQueries
from sag_core.perturbation import PerturbedLayer

pytestmark = pytest.mark.usefixtures("sd1_host")

OFF = (False,)
PAG_ON = {"pag_enabled": True, "pag_scale": 2.0}
SEG_ON = {"seg_enabled": True, "seg_scale": 1.5, "seg_blur_sigma": 1.0}
SAG_ON = {"enabled": True, "scale": 0.75}
ONE_STEP = dict(sampler_name="Euler", steps=1, cfg_scale=5.0)


def job(ext, named: dict | None, **fields):
    return harness.run_job(ext.txt2img, api_args=[named] if named is not None else [], **{**ONE_STEP, **fields})


class FirstStep:
    """The host's inner model and the prompt row's inputs at the first denoiser call (cfg_denoiser callbacks)."""

    def __enter__(self):
        self.seen = None
        script_callbacks.on_cfg_denoiser(self.before)
        script_callbacks.on_cfg_denoised(self.after)
        return self

    def before(self, params):
        if self.seen is None:
            self.seen = {"x": params.x[:1].clone(), "sigma": params.sigma[:1].clone(),
                         "cond": {"c_crossattn": [params.text_cond[:1]], "c_concat": [params.image_cond[:1]]}}

    def after(self, params):
        self.seen.setdefault("model", params.inner_model)

    def __exit__(self, *exc):
        script_callbacks.remove_callbacks_for_function(self.before)
        script_callbacks.remove_callbacks_for_function(self.after)

    def prediction(self, perturbation=None, layer: str = "middle") -> torch.Tensor:
        """The host model's x0 for the prompt row, with `perturbation` on every self-attention of `layer`."""
        seen = self.seen
        with torch.no_grad():
            if perturbation is None:
                return seen["model"](seen["x"], seen["sigma"], cond=seen["cond"])
            unet = shared.sd_model.model.diffusion_model
            with PerturbedLayer(find_layer(unet, layer), [0], perturbation):
                return seen["model"](seen["x"], seen["sigma"], cond=seen["cond"])


@pytest.mark.parametrize("named,scale,perturbation", [
    (PAG_ON, 2.0, IdentityAttention()),
    (SEG_ON, 1.5, SmoothedQueries(None, 1.0)),
    ({**SEG_ON, "seg_blur_sigma": 9999.0}, 1.5, SmoothedQueries(None, 9999.0)),
    ({**PAG_ON, "layer": "output 1"}, 2.0, IdentityAttention()),
])
def test_a_method_adds_its_scale_times_cond_minus_perturbed_cond_to_cfg(ext, named, scale, perturbation):
    off = job(ext, None)
    with FirstStep() as step:
        on = job(ext, named)
    expected = scale * (step.prediction() - step.prediction(perturbation, named.get("layer", "middle")))
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(on.samples - off.samples, expected, atol=2e-5, rtol=1e-4)


class MiddleAttention:
    """Every one-row forward of the middle block's self-attention (the extra pass of a batch-1 job): its input,
    the queries `to_q` computed before any hook of ours changed them, and its output."""

    def __enter__(self):
        self.attention = find_layer(shared.sd_model.model.diffusion_model, "middle").attentions[0]
        self.calls = []
        self.handles = [
            self.attention.register_forward_pre_hook(lambda module, args: self.calls.append({"x": args[0]})),
            self.attention.to_q.register_forward_hook(lambda module, args, out: self.calls[-1].setdefault("q", out)),
            self.attention.register_forward_hook(lambda module, args, out: self.calls[-1].update(out=out))]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()

    def one_row(self) -> list[dict]:
        return [call for call in self.calls if call["x"].shape[0] == 1]

    def with_mean_queries(self, call: dict) -> torch.Tensor:
        """The attention's output had every query been the mean of the queries it computed (an infinite blur)."""
        attention, x = self.attention, call["x"]
        heads = attention.heads

        def split(t):
            return t.unflatten(-1, (heads, -1)).transpose(1, 2)

        q = call["q"].mean(dim=1, keepdim=True).expand_as(call["q"])
        out = torch.nn.functional.scaled_dot_product_attention(split(q), split(attention.to_k(x)), split(attention.to_v(x)))
        return attention.to_out(out.transpose(1, 2).flatten(2))


def test_seg_at_its_default_blur_gives_every_perturbed_query_the_mean_query(ext):
    """The field table's default SEG sigma (from the API with only seg_enabled) is the infinite blur the README and
    the hint promise: the extra pass's middle attention runs on the mean query, every token alike."""
    assert SagParams().seg_blur_sigma == FIELDS_BY_ATTR["seg_blur_sigma"].default == 9999.0
    with torch.no_grad(), MiddleAttention() as middle:
        job(ext, {"seg_enabled": True})
    (call,) = middle.one_row()
    assert call["out"].shape[1] == 16  # a 4 x 4 grid, where a finite Gaussian of 9999 tokens is no mean
    torch.testing.assert_close(call["out"], middle.with_mean_queries(call), atol=1e-6, rtol=1e-5)
    assert (call["out"] - call["out"][:, :1]).abs().max() < 1e-6


def test_seg_below_its_default_blur_is_a_finite_gaussian_not_the_mean(ext):
    with torch.no_grad(), MiddleAttention() as middle:
        job(ext, {"seg_enabled": True, "seg_blur_sigma": 1.0})
    (call,) = middle.one_row()
    assert (call["out"] - middle.with_mean_queries(call)).abs().max() > 1e-4


def test_sag_pag_and_seg_together_add_each_ones_own_term(ext):
    off = job(ext, None, batch=2)
    alone = [job(ext, named, batch=2).samples - off.samples for named in (SAG_ON, PAG_ON, SEG_ON)]
    together = job(ext, {**SAG_ON, **PAG_ON, **SEG_ON}, batch=2)
    torch.testing.assert_close(together.samples - off.samples, sum(alone), atol=2e-5, rtol=1e-4)
    assert together.infotexts == ["SAG scale: 0.75, PAG scale: 2.0, SEG scale: 1.5, SEG blur sigma: 1.0"] * 2


class UNetCalls:
    def __enter__(self):
        self.rows = []
        unet = shared.sd_model.model.diffusion_model
        self.handle = unet.register_forward_pre_hook(lambda module, args: self.rows.append(args[0].shape[0]))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.mark.parametrize("named,extra_rows", [
    (SAG_ON, 2), (PAG_ON, 2), (SEG_ON, 2), ({**PAG_ON, **SEG_ON}, 4), ({**SAG_ON, **PAG_ON, **SEG_ON}, 6),
])
def test_every_method_on_costs_one_extra_unet_call_with_its_rows(ext, named, extra_rows):
    with UNetCalls() as calls:
        job(ext, named, batch=2, steps=3, sampler_name="Euler a")
    assert calls.rows == [4, extra_rows] * 3


def test_prompt_and_negative_of_different_lengths_get_one_call_each(ext):
    """Padding off: SAG's uncond rows and PAG's prompt rows cannot share a call; the result is the same."""
    kwargs = dict(batch=1, cond_kwargs={"tokens": 77, "uncond_tokens": 154})
    shared.opts.pad_cond_uncond = False
    off = job(ext, None, **kwargs)
    alone = [job(ext, named, **kwargs).samples - off.samples for named in (SAG_ON, PAG_ON)]
    with UNetCalls() as calls:
        both = job(ext, {**SAG_ON, **PAG_ON}, **kwargs)
    assert calls.rows == [1, 1, 1, 1]  # the host's own cond and uncond calls, then SAG's and PAG's
    torch.testing.assert_close(both.samples - off.samples, sum(alone), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("named", [
    {"pag_enabled": True, "pag_scale": 0.0}, {"seg_enabled": True, "seg_scale": 0.0},
    {"pag_enabled": False, "pag_scale": 5.0, "seg_enabled": False},
])
def test_a_method_off_or_at_scale_zero_is_bit_identical_to_cfg_and_hooks_nothing(ext, named):
    off = job(ext, None, steps=3, sampler_name="Euler a")
    with UNetCalls() as calls:
        same = job(ext, named, steps=3, sampler_name="Euler a")
    assert torch.equal(same.samples, off.samples)
    assert calls.rows == [2, 2, 2]


def test_an_unknown_layer_fails_the_job_with_the_layers_the_model_has_and_the_next_job_runs(ext):
    unet = shared.sd_model.model.diffusion_model
    with pytest.raises(SagParamError) as refused:
        job(ext, {**PAG_ON, "layer": "input 1"})
    assert refused.value.field == "layer"
    assert f"its layers are {', '.join(attention_layers(unet))}" in str(refused.value)
    assert job(ext, PAG_ON).infotexts == ["PAG scale: 2.0"]


def test_sag_reads_its_mask_from_the_chosen_layer(ext):
    middle = job(ext, SAG_ON, steps=3)
    output = job(ext, {**SAG_ON, "layer": "output 1"}, steps=3)
    assert (middle.samples - output.samples).abs().max() > 1e-4
    assert output.infotexts == ["SAG scale: 0.75, SAG layer: output 1"]


def test_the_smooth_mask_changes_sags_result_and_is_written_to_the_infotext(ext):
    nearest = job(ext, SAG_ON, steps=3)
    smooth = job(ext, {**SAG_ON, "smooth_mask": True}, steps=3)
    assert (nearest.samples - smooth.samples).abs().max() > 1e-5
    assert smooth.infotexts == ["SAG scale: 0.75, SAG smooth mask: True"]


def test_an_interrupted_pag_job_leaves_no_hook_on_any_layer(ext):
    unet = shared.sd_model.model.diffusion_model
    layer = find_layer(unet, "middle")

    def interrupt(module, args):
        if args[0].shape[0] == 1:  # PAG's extra call: the prompt row alone
            raise KeyboardInterrupt

    handle = layer.attentions[0].register_forward_pre_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            job(ext, PAG_ON, steps=3, sampler_name="Euler a")
    finally:
        handle.remove()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in unet.modules())
    assert ext.module.active.get() is None


def test_xyz_pag_scale_axis_switches_pag_on_alone(ext):
    from modules import processing
    cond, uncond = harness.conds(1)
    p = processing.StableDiffusionProcessing(cond=cond, uncond=uncond, steps=2)
    p.scripts = ext.txt2img
    p.script_args = tuple(harness.sag_args(ext.txt2img, False))
    option = next(o for o in ext.xyz.axis_options if o.label == "[SAG] PAG scale")
    cells = ext.xyz.sweep(p, option, ["1", "3"])
    assert [cell.infotexts for cell in cells] == [["PAG scale: 1.0"], ["PAG scale: 3.0"]]


def test_the_tiny_models_layers_are_named_as_the_unet_runs_them():
    _, attention = find_middle_self_attention(shared.sd_model.model.diffusion_model)
    layers = attention_layers(shared.sd_model.model.diffusion_model)
    assert list(layers)[:3] == ["input 5", "input 7", "middle"] and layers["middle"].attentions == (attention,)
