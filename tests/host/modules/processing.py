"""Follows modules/processing.py (v1.10.1): the order in which one job calls scripts and samplers.

txt2img: process -> per batch: process_batch -> sample (sampler, process_before_every_sampling,
sampling, then an optional hires-like second pass with a new sampler at another size) ->
postprocess_batch -> per image: postprocess_image, the inpainting composite (the "only masked" crop
pasted back only where an overlay image exists: `opts.overlay_inpaint` and `p.overlay_images`, as
`apply_overlay` does), postprocess_image_after_composite, infotext -> postprocess. img2img/inpainting:
the init latent, `mask`/`nmask` and the image conditioning go to `sample_img2img`. Sampling runs
inside `devices.autocast()` (or `without_autocast()` under `--upcast-sampling`) as process_images_inner
runs it. Prompts are already conditionings, the hires upscale is a latent resize, and the samplers'
own noise continues the stream the job's noise was drawn from (the webui's `TorchHijack(p)` hands samplers `p.rng.next()`, the next
draw of the seeded generators the initial noise came from).
There is no VAE: `decode_latent_batch` turns the first three latent channels into 8x larger pictures,
and `Processed.samples` keeps the latents, so tests can compare exact numbers as well as images.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from modules import devices, sd_samplers_kdiffusion, sd_samplers_timesteps, shared


def create_sampler(name, sd_model):
    if name in sd_samplers_kdiffusion.SAMPLERS:
        return sd_samplers_kdiffusion.KDiffusionSampler(name, sd_model)
    if name in sd_samplers_timesteps.SAMPLERS:
        return sd_samplers_timesteps.CompVisSampler(name, sd_model)
    raise ValueError(f"unknown sampler {name}")


@dataclass
class Processed:
    images: list
    infotexts: list
    samples: torch.Tensor
    index_of_first_image: int = 0


@dataclass
class StableDiffusionProcessing:
    cond: Any = None
    uncond: Any = None
    sampler_name: str = "Euler a"
    steps: int = 8
    cfg_scale: float = 7.0
    width: int = 256
    height: int = 256
    batch_size: int = 1
    n_iter: int = 1
    seed: int = 1
    s_min_uncond: float = 0.0
    scripts: Any = None
    script_args: Any = ()
    extra_generation_params: dict = field(default_factory=dict)
    enable_hr: bool = False
    hr_scale: float = 1.5
    hr_sampler_name: str | None = None
    hr_second_pass_steps: int = 0
    denoising_strength: float = 0.6
    init_latent: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    nmask: torch.Tensor | None = None
    image_conditioning: torch.Tensor | None = None
    is_hr_pass: bool = False
    sampler: Any = None
    iteration: int = 0
    batch_index: int = 0
    paste_to: tuple | None = None
    overlay_images: list | None = None
    init_images: list | None = None

    @property
    def sd_model(self):
        return shared.sd_model

    def noise(self, shape, offset=0):
        """Seeded noise; the global RNG then continues its stream, so the sampler's first draw is a new one."""
        generator = torch.Generator().manual_seed(self.seed + 1000 * self.iteration + offset)
        noise = torch.randn(shape, generator=generator)
        torch.set_rng_state(generator.get_state())
        return noise

    def txt2img_image_conditioning(self, x):
        return x.new_zeros(x.shape[0], 5, 1, 1)

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        if self.init_latent is not None:
            return self.sample_img2img(conditioning, unconditional_conditioning)
        self.sampler = create_sampler(self.sampler_name, self.sd_model)
        x = self.noise((self.batch_size, 4, self.height // 8, self.width // 8))
        self.scripts.process_before_every_sampling(self, x=x, noise=x, c=conditioning, uc=unconditional_conditioning)
        samples = self.sampler.sample(self, x, conditioning, unconditional_conditioning,
                                      image_conditioning=self.txt2img_image_conditioning(x))
        if not self.enable_hr or shared.state.interrupted:
            return samples
        return self.sample_hr_pass(samples, conditioning, unconditional_conditioning)

    def sample_hr_pass(self, samples, conditioning, unconditional_conditioning):
        self.is_hr_pass = True
        size = (int(samples.shape[2] * self.hr_scale), int(samples.shape[3] * self.hr_scale))
        samples = F.interpolate(samples, size=size, mode="bilinear")
        self.sampler = create_sampler(self.hr_sampler_name or self.sampler_name, self.sd_model)
        noise = self.noise(samples.shape, offset=1)
        self.scripts.before_hr(self)
        self.scripts.process_before_every_sampling(self, x=samples, noise=noise, c=conditioning,
                                                   uc=unconditional_conditioning)
        samples = self.sampler.sample_img2img(self, samples, noise, conditioning, unconditional_conditioning,
                                              steps=self.hr_second_pass_steps or self.steps,
                                              image_conditioning=self.txt2img_image_conditioning(samples))
        self.is_hr_pass = False
        return samples

    def sample_img2img(self, conditioning, unconditional_conditioning):
        self.sampler = create_sampler(self.sampler_name, self.sd_model)
        x = self.init_latent
        noise = self.noise(x.shape)
        image_conditioning = self.image_conditioning
        if image_conditioning is None:
            image_conditioning = self.txt2img_image_conditioning(x)
        self.scripts.process_before_every_sampling(self, x=x, noise=noise, c=conditioning, uc=unconditional_conditioning)
        samples = self.sampler.sample_img2img(self, x, noise, conditioning, unconditional_conditioning,
                                              image_conditioning=image_conditioning)
        if self.mask is not None:
            samples = samples * self.nmask + self.init_latent * self.mask
        return samples


def create_infotext(p):
    return ", ".join(f"{key}: {value}" for key, value in p.extra_generation_params.items() if value is not None)


def decode_latent_batch(samples):
    """Stand-in for the VAE: the first three channels, 8x nearest-upscaled, mapped to 0..1 as the webui maps."""
    decoded = F.interpolate(samples[:, :3] / 2.0, scale_factor=8, mode="nearest")
    return torch.clamp((decoded + 1.0) / 2.0, min=0.0, max=1.0)


def encode_image(image):
    """Stand-in for the VAE encoder, the inverse of `decode_latent_batch` (8x8 mean; the fourth channel 0)."""
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    rgb = F.avg_pool2d(((pixels * 2.0 - 1.0) * 2.0)[None], 8)
    return torch.cat([rgb, torch.zeros_like(rgb[:, :1])], dim=1)


def uncrop(image, dest_size, paste_loc):
    """Inpainting "only masked": the generated crop resized into its box of an empty `dest_size` picture."""
    x, y, w, h = paste_loc
    base = Image.new("RGBA", dest_size)
    base.paste(image.resize((w, h), Image.LANCZOS), (x, y))
    return base


def apply_overlay(image, paste_loc, overlay):
    """Follows processing.apply_overlay (v1.10.1): nothing without an overlay image (the picture stays the
    crop); with one, the crop is pasted back at `paste_loc` (uncrop) and the overlay composited over it."""
    if overlay is None:
        return image
    if paste_loc is not None:
        image = uncrop(image, overlay.size, paste_loc)
    image = image.convert("RGBA")
    image.alpha_composite(overlay)
    return image.convert("RGB")


def overlay_for(p, i):
    """processing.process_images_inner (v1.10.1): image i's overlay only with `opts.overlay_inpaint` on."""
    if not shared.opts.overlay_inpaint or p.overlay_images is None or i >= len(p.overlay_images):
        return None
    return p.overlay_images[i]


def process_images(p):
    p.scripts.before_process(p)
    p.scripts.process(p)
    output_images, infotexts, all_samples = [], [], []
    with torch.no_grad():
        for n in range(p.n_iter):
            if shared.state.interrupted:
                break
            p.iteration = n
            p.scripts.process_batch(p, batch_number=n, prompts=[], seeds=[], subseeds=[])
            with devices.without_autocast() if devices.unet_needs_upcast else devices.autocast():
                samples = p.sample(conditioning=p.cond, unconditional_conditioning=p.uncond, seeds=[], subseeds=[],
                                   subseed_strength=0.0, prompts=[])
            x_samples = decode_latent_batch(samples)
            p.scripts.postprocess_batch(p, x_samples, batch_number=n)
            all_samples.append(samples)
            for i, x_sample in enumerate(x_samples):
                p.batch_index = i
                x_sample = (255.0 * np.moveaxis(x_sample.cpu().numpy(), 0, 2)).astype(np.uint8)
                pp = p.scripts.postprocess_image(p, Image.fromarray(x_sample))
                pp = p.scripts.postprocess_image_after_composite(p, apply_overlay(pp, p.paste_to, overlay_for(p, i)))
                infotexts.append(create_infotext(p))
                output_images.append(pp)
    processed = Processed(output_images, infotexts, torch.cat(all_samples))
    p.scripts.postprocess(p, processed)
    return processed
