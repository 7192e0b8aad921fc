"""The saliency-mask preview: one picture per image of where SAG blurred, never a change to the images.

Jobs run through the test host (tests/host/modules/processing.py follows webui v1.10.1's per-image
loop: postprocess_batch, postprocess_image, the inpainting composite, postprocess_image_after_composite,
then postprocess, where the previews are appended after the images as ControlNet appends its maps).
"""

import numpy as np
import pytest
import torch
from PIL import Image

import harness
from models import TinyLatentDiffusion, tiny_unet
from modules import script_callbacks, shared
from sag_core.preview import OVERLAY_COLOR, OVERLAY_OPACITY, mask_overlay, mask_to_pixels

ON = (True, 0.75, 2.0, 1.0, 0.0, 1.0)
PREVIEW = ON + (True,)

pytestmark = pytest.mark.usefixtures("sd1_host")


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


class BatchMasks:
    """Records the generation's mean blur mask after every step; the last one per batch is what the preview shows."""

    def __init__(self, ext):
        self.ext, self.masks = ext, []

    def __enter__(self):
        def keep(params):
            generation = self.ext.module.active.get()
            mean = generation.run.mean_mask() if generation is not None else None
            if mean is not None:
                self.masks.append(mean.clone())
        script_callbacks.on_cfg_after_cfg(keep)
        return self

    def __exit__(self, *exc):
        script_callbacks.callback_map["cfg_after_cfg"].pop()


def test_mask_overlay_leaves_unmasked_pixels_alone_and_tints_masked_ones_by_the_mask():
    image = np.random.default_rng(0).integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    assert np.array_equal(mask_overlay(image, torch.zeros(2, 3)), image)
    full = mask_overlay(image, torch.ones(2, 3))
    expected = image * (1 - OVERLAY_OPACITY) + np.array(OVERLAY_COLOR) * OVERLAY_OPACITY
    assert np.array_equal(full, np.rint(expected).astype(np.uint8))
    half = mask_overlay(image, torch.full((2, 3), 0.5))
    expected = image * (1 - OVERLAY_OPACITY / 2) + np.array(OVERLAY_COLOR) * OVERLAY_OPACITY / 2
    assert np.abs(half - expected).max() <= 0.5 + 1e-3  # rounded to the nearest level


def test_mask_pixels_cover_only_the_pasted_box():
    stretched = mask_to_pixels(torch.ones(4, 4), width=40, height=30, box=(10, 5, 16, 12))
    assert stretched.shape == (30, 40)
    assert stretched[5:17, 10:26].min() == 1.0 and stretched.sum() == 16 * 12
    clipped = mask_to_pixels(torch.ones(4, 4), width=40, height=30, box=(32, 24, 16, 12))
    assert clipped.sum() == 8 * 6 and clipped[24:, 32:].min() == 1.0


def test_mask_overlay_refuses_what_is_not_an_rgb_picture_or_a_2d_mask():
    with pytest.raises(ValueError, match="uint8"):
        mask_overlay(np.zeros((8, 8), np.uint8), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="2-D"):
        mask_overlay(np.zeros((8, 8, 3), np.uint8), torch.zeros(1, 1, 1))


def test_preview_is_off_by_default(ext):
    processed = harness.run_job(ext.txt2img, ON, steps=4)
    assert len(processed.images) == 1 and processed.infotexts == ["SAG scale: 0.75"]


def test_preview_adds_the_mask_over_each_image_after_the_images_and_changes_none_of_them(ext):
    job = dict(batch=2, n_iter=2, steps=5)
    without = harness.run_job(ext.txt2img, ON, **job)
    with BatchMasks(ext) as recorded:
        shown = harness.run_job(ext.txt2img, PREVIEW, **job)

    assert torch.equal(shown.samples, without.samples)
    assert len(without.images) == 4 and len(shown.images) == 8
    for image, same in zip(shown.images[:4], without.images):
        assert np.array_equal(pixels(image), pixels(same))
    assert shown.infotexts == without.infotexts * 2

    last_of_each_batch = [recorded.masks[4], recorded.masks[9]]  # 5 guided steps per batch
    expected_masks = [batch[row, 0] for batch in last_of_each_batch for row in range(2)]
    for image, preview, mask in zip(shown.images[:4], shown.images[4:], expected_masks):
        assert preview.size == image.size == (256, 256)
        assert np.array_equal(pixels(preview), mask_overlay(pixels(image), mask))
        tinted = (pixels(preview) != pixels(image)).any(axis=2).mean()
        assert 0.02 < tinted < 0.98


def test_preview_can_be_asked_for_by_name_through_the_api(ext):
    named = harness.run_job(ext.txt2img, api_args=[{"enabled": True, "preview": True}], steps=4)
    positional = harness.run_job(ext.txt2img, PREVIEW, steps=4)
    assert len(named.images) == 2
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(named.images, positional.images))


def test_no_guided_step_means_no_preview(ext):
    never = harness.run_job(ext.txt2img, (True, 0.75, 2.0, 1.0, 1.0, 1.0, True), steps=4)
    assert len(never.images) == 1


def test_inpainting_preview_shows_only_the_regenerated_part(ext):
    shared.sd_model = TinyLatentDiffusion(tiny_unet(in_channels=9, seed=9), conditioning_key="hybrid")
    init = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    kept = torch.zeros(4, 32, 32)
    kept[:, :, 16:] = 1
    image_conditioning = torch.cat([1 - kept[:1, None], init], dim=1)
    processed = harness.run_job(ext.img2img, PREVIEW, sampler_name="Euler a", init_latent=init, mask=kept,
                                nmask=1 - kept, image_conditioning=image_conditioning, denoising_strength=0.75)
    image, preview = (pixels(picture) for picture in processed.images)
    changed = (preview != image).any(axis=2)
    assert not changed[:, 16 * 8 + 8:].any()  # the kept half (bilinear upsampling blurs one cell at the edge)
    assert changed[:, :16 * 8].mean() > 0.02


def test_only_masked_inpainting_preview_lands_where_the_crop_was_pasted(ext):
    box = (40, 24, 256, 256)
    overlay = Image.new("RGBA", (384, 320))  # the original, fully transparent here: only the pasted crop shows
    processed = harness.run_job(ext.img2img, PREVIEW, steps=4, paste_to=box, overlay_images=[overlay])
    image, preview = (pixels(picture) for picture in processed.images)
    assert preview.shape == image.shape == (320, 384, 3)
    changed = (preview != image).any(axis=2)
    inside = np.zeros_like(changed)
    inside[24:24 + 256, 40:40 + 256] = True
    assert not changed[~inside].any() and changed[inside].mean() > 0.02


def only_masked_job(ext, box, overlay_images):
    """Only-masked inpainting whose original has the generation's size (256x256), as webui 1.10.1 runs it."""
    with BatchMasks(ext) as recorded:
        processed = harness.run_job(ext.img2img, PREVIEW, steps=4, paste_to=box, overlay_images=overlay_images)
    image, preview = (pixels(picture) for picture in processed.images)
    return image, preview, recorded.masks[-1][0, 0]


def test_only_masked_preview_of_an_original_the_generation_size_tints_only_the_pasted_box(ext):
    """processing.py apply_overlay (webui 1.8.0 to 1.10.1): with an overlay the crop is pasted back into the
    original's size, here the generation's size too, so only the box holds what was generated."""
    box = (64, 32, 128, 128)
    original = np.random.default_rng(3).integers(0, 256, size=(256, 256, 4), dtype=np.uint8)
    original[..., 3] = 255
    original[32:160, 64:192, 3] = 0  # the overlay is the original, transparent where it was inpainted
    image, preview, mask = only_masked_job(ext, box, [Image.fromarray(original, "RGBA")])

    assert image.shape == preview.shape == (256, 256, 3)
    inside = np.zeros((256, 256), dtype=bool)
    inside[32:160, 64:192] = True
    assert np.array_equal(preview[~inside], image[~inside])
    assert np.array_equal(preview, mask_overlay(image, mask, box))
    assert (preview[inside] != image[inside]).any(axis=1).mean() > 0.02


def test_only_masked_preview_without_overlay_inpaint_covers_the_crop_the_picture_still_is(ext):
    """With `opts.overlay_inpaint` off there is no overlay image: the webui never pastes the crop back."""
    shared.opts.overlay_inpaint = False
    original = Image.new("RGBA", (256, 256), (9, 99, 199, 255))
    image, preview, mask = only_masked_job(ext, (64, 32, 128, 128), [original])

    assert not (image == (9, 99, 199)).all(axis=2).any()  # the picture is the generated crop, nothing pasted
    assert np.array_equal(preview, mask_overlay(image, mask))
    assert (preview != image).any(axis=2).mean() > 0.02


def test_hires_preview_is_the_high_res_pass_mask_at_the_final_size(ext):
    processed = harness.run_job(ext.txt2img, PREVIEW, steps=4, enable_hr=True, hr_scale=1.5,
                                hr_sampler_name="DDIM")
    image, preview = processed.images
    assert image.size == preview.size == (384, 384)
    assert (pixels(preview) != pixels(image)).any(axis=2).mean() > 0.02


def test_xyz_grid_cells_are_the_images_never_the_previews(ext):
    from modules import processing

    def sweep(sag):
        cond, uncond = harness.conds(1)
        p = processing.StableDiffusionProcessing(cond=cond, uncond=uncond, steps=4)
        p.scripts = ext.txt2img
        p.script_args = tuple(harness.sag_args(ext.txt2img, *sag))
        option = next(o for o in ext.xyz.axis_options if o.label == "[SAG] Scale")
        return ext.xyz.sweep(p, option, ["0.5", "1.0"])

    with_previews = sweep((True, 0.75, 2.0, 1.0, 0.0, 1.0, True))
    without = sweep((False,))
    assert [len(cell.images) for cell in with_previews] == [2, 2]
    grid, plain_grid = ext.xyz.grid_cells(with_previews), ext.xyz.grid_cells(without)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(grid, plain_grid))


def test_webui_before_1_8_draws_the_preview_from_postprocess_image(ext, monkeypatch):
    """webui 1.6/1.7 have no postprocess_image_after_composite (modules/scripts.py); the preview still comes."""
    from modules import scripts

    current = harness.run_job(ext.txt2img, PREVIEW, steps=4)
    monkeypatch.setattr(ext.module, "HAS_AFTER_COMPOSITE", False)
    monkeypatch.setattr(scripts.ScriptRunner, "postprocess_image_after_composite", lambda self, p, image: image)
    legacy = harness.run_job(ext.txt2img, PREVIEW, steps=4)
    assert len(legacy.images) == 2
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(legacy.images, current.images))
