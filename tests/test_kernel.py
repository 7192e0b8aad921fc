"""The SAG maths on plain tensors, checked against first principles and diffusers' SAG pipeline."""

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sag_core.blur import degrade_x0, gaussian_blur_2d, kernel_size_for
from sag_core.methods.sag import degraded_input, sag_guidance
from sag_core.saliency import query_chunk_size, saliency_from_probs, saliency_from_qk, saliency_mask
from sag_core.spaces import EpsSpace, X0Space

sag_pipeline = pytest.importorskip("diffusers.pipelines.deprecated.stable_diffusion_sag.pipeline_stable_diffusion_sag")
DDIMScheduler = pytest.importorskip("diffusers").DDIMScheduler


def random_probs(batch, heads, tokens, seed=0):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch * heads, tokens, tokens, generator=generator) * 3
    return scores.softmax(-1)


def sd_scheduler():
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")



def sag_step(x, sigma, out, *, saliency, grid, scale, blur_sigma, threshold, space, predict):
    """One SAG step as the run takes it: the degraded input (sag_core.methods.sag), predicted again, its term."""
    degraded = degraded_input(x, sigma, out, saliency, grid, blur_sigma=blur_sigma, threshold=threshold, space=space)
    return degraded.mask, sag_guidance(degraded.target, predict(degraded.x), scale)

def test_saliency_has_mean_one_so_threshold_one_means_above_average():
    saliency = saliency_from_probs(random_probs(2, 8, 30), heads=8)
    assert saliency.shape == (2, 30)
    torch.testing.assert_close(saliency.mean(dim=1), torch.ones(2))


@settings(max_examples=25, deadline=None)
@given(heads=st.integers(1, 6), queries=st.integers(1, 40), keys=st.integers(1, 40), chunk=st.integers(1, 17))
def test_chunked_saliency_equals_the_full_map(heads, queries, keys, chunk):
    generator = torch.Generator().manual_seed(heads * 1000 + queries * 10 + keys)
    q = torch.randn(2, heads, queries, 8, generator=generator)
    k = torch.randn(2, heads, keys, 8, generator=generator)
    probs = (q @ k.transpose(-1, -2) * 8 ** -0.5).softmax(-1).reshape(2 * heads, queries, keys)
    torch.testing.assert_close(saliency_from_qk(q, k, 8 ** -0.5, chunk=chunk),
                               saliency_from_probs(probs, heads), atol=1e-5, rtol=1e-5)


def test_chunk_size_keeps_an_sdxl_hires_map_within_budget():
    chunk = query_chunk_size(heads=20, keys=4096)
    assert chunk * 20 * 4096 * 4 <= 16 * 2**20
    assert chunk >= 1


@settings(max_examples=30, deadline=None)
@given(grid_h=st.integers(1, 9), grid_w=st.integers(1, 9), up=st.integers(1, 8), extra_h=st.integers(0, 7),
       extra_w=st.integers(0, 7), threshold=st.sampled_from([0.5, 1.0, 1.5]))
def test_mask_has_latent_shape_and_covers_the_share_of_salient_tokens(grid_h, grid_w, up, extra_h, extra_w,
                                                                       threshold):
    tokens = grid_h * grid_w
    saliency = saliency_from_probs(random_probs(1, 4, tokens, seed=tokens), heads=4)
    size = (grid_h * up, grid_w * up)
    mask = saliency_mask(saliency, (grid_h, grid_w), size, threshold)
    assert mask.shape == (1, 1, *size)
    share = (saliency > threshold).float().mean()
    torch.testing.assert_close(mask.mean(), share)
    odd = saliency_mask(saliency, (grid_h, grid_w), (size[0] + extra_h, size[1] + extra_w), threshold)
    assert odd.shape == (1, 1, size[0] + extra_h, size[1] + extra_w)
    assert set(odd.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("shape", [(1, 4, 64, 64), (2, 4, 25, 33), (1, 4, 3, 2), (1, 4, 1, 1), (1, 4, 1, 40)])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 10.0])
def test_blur_keeps_a_constant_image_on_any_size(shape, sigma):
    image = torch.full(shape, 0.37)
    blurred = gaussian_blur_2d(image, sigma)
    assert blurred.shape == shape
    torch.testing.assert_close(blurred, image)


def test_kernel_size_follows_sigma():
    assert [kernel_size_for(s) for s in (0.3, 1.0, 2.0, 3.0)] == [3, 7, 13, 19]


def test_blur_sigma_zero_is_the_identity():
    image = torch.randn(1, 4, 8, 8)
    assert gaussian_blur_2d(image, 0.0) is image


@pytest.mark.parametrize("kernel_size,sigma", [(9, 1.0), (9, 3.0), (5, 2.0)])
def test_separable_blur_equals_diffusers_gaussian_blur_2d(kernel_size, sigma):
    image = torch.randn(2, 4, 24, 19, generator=torch.Generator().manual_seed(3))
    expected = sag_pipeline.gaussian_blur_2d(image, kernel_size=kernel_size, sigma=sigma)
    torch.testing.assert_close(gaussian_blur_2d(image, sigma, kernel_size), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch,heads,grid,latent", [(1, 8, (8, 8), (64, 64)), (2, 20, (4, 5), (25, 33)),
                                                       (1, 5, (3, 7), (24, 56))])
def test_degrade_and_renoise_equal_diffusers_sag_masking(batch, heads, grid, latent):
    generator = torch.Generator().manual_seed(11)
    x0 = torch.randn(batch, 4, *latent, generator=generator)
    eps = torch.randn(batch, 4, *latent, generator=generator)
    probs = random_probs(batch, heads, grid[0] * grid[1], seed=5)
    scheduler = sd_scheduler()
    t = torch.tensor(500)
    oracle = SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(attention_head_dim=heads)),
                             scheduler=scheduler)
    expected = sag_pipeline.StableDiffusionSAGPipeline.sag_masking(oracle, x0, probs, grid, t, eps)

    mask = saliency_mask(saliency_from_probs(probs, heads), grid, latent, threshold=1.0)
    degraded = degrade_x0(x0, mask, sigma=1.0, kernel_size=9)
    x = scheduler.add_noise(x0, eps, t)  # the noisy latent whose eps prediction gave this x0
    ours = EpsSpace(scheduler.alphas_cumprod).renoise(degraded, x, eps, t.repeat(batch))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_eps_space_x0_equals_diffusers_pred_x0():
    scheduler = sd_scheduler()
    oracle = SimpleNamespace(scheduler=scheduler)
    x_t, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    expected = sag_pipeline.StableDiffusionSAGPipeline.pred_x0(oracle, x_t, eps, 321)
    ours = EpsSpace(scheduler.alphas_cumprod).to_x0(x_t, eps, torch.tensor([321.0, 321.0]))
    torch.testing.assert_close(ours, expected)


def test_guidance_pushes_away_from_the_degraded_prediction():
    target, prediction = torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    torch.testing.assert_close(sag_guidance(target, prediction, 0.75), torch.full((1, 4, 2, 2), 0.75))


def test_x0_and_eps_paths_give_the_same_guidance_on_the_same_step():
    """The same eps model seen as a k-diffusion x0 denoiser and as a timestep eps denoiser."""
    alphas = sd_scheduler().alphas_cumprod
    t = torch.tensor([400.0])
    a = alphas[400]
    sigma = ((1 - a) / a).sqrt().reshape(1)
    weight = torch.randn(4, 4, generator=torch.Generator().manual_seed(2)) * 0.3

    def eps_model(x_t):
        return torch.einsum("oc,bchw->bohw", weight, x_t) + 0.1 * x_t.roll(1, dims=-1)

    def x0_model(x):  # k-diffusion's CompVisDenoiser: input scaled by c_in, x0 = x + eps * c_out
        return x - sigma.reshape(-1, 1, 1, 1) * eps_model(x * a.sqrt())

    generator = torch.Generator().manual_seed(4)
    x_t = torch.randn(1, 4, 16, 16, generator=generator)
    x = x_t / a.sqrt()
    saliency = saliency_from_probs(random_probs(1, 4, 4), heads=4)
    kwargs = dict(saliency=saliency, grid=(2, 2), scale=0.8, blur_sigma=1.5, threshold=1.0)

    eps_mask, eps_term = sag_step(x_t, t, eps_model(x_t), space=EpsSpace(alphas), predict=eps_model, **kwargs)
    x0_mask, x0_term = sag_step(x, sigma, x0_model(x), space=X0Space(), predict=x0_model, **kwargs)

    torch.testing.assert_close(x0_mask, eps_mask)
    torch.testing.assert_close(x0_term, -sigma * eps_term, atol=1e-5, rtol=1e-4)
    assert x0_term.abs().max() > 1e-3
