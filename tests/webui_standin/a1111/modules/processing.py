"""``modules.processing``: the txt2img / img2img jobs and their call sequence.

``process_images(p)``: ``scripts.process(p)``, then sampling. txt2img samples with
``create_sampler(p.sampler_name).sample(...)``; with hires fix the latent is upscaled
and ``create_sampler(p.hr_sampler_name or p.sampler_name).sample_img2img(...)`` runs
right after ``process_before_every_sampling`` (twice in Forge). img2img calls
``process_before_every_sampling`` then ``sample_img2img``. The VAE is left out:
img2img takes its clean latent directly and the result is a latent.
"""

import torch

from modules import FLAVOUR, infotext_utils, rng, sd_samplers


class StableDiffusionProcessing:
    def __init__(self, *, sd_model, cond, uncond, seed=1, steps=8, cfg_scale=5.0, sampler_name="Euler",
                 batch_size=1, latent_shape=(4, 8, 8), denoising_strength=0.75, scripts=None, script_args=()):
        self.sd_model = sd_model
        self.cond = cond
        self.uncond = uncond
        self.seed = seed
        self.seeds = None
        self.steps = steps
        self.cfg_scale = cfg_scale
        self.sampler_name = sampler_name
        self.batch_size = batch_size
        self.latent_shape = tuple(latent_shape)
        self.denoising_strength = denoising_strength
        self.scripts = scripts
        self.script_args = tuple(script_args)
        self.extra_generation_params = {}
        self.sampler = None
        self.rng = None
        self.eta = None

    def init(self):
        pass

    def generation_params(self):
        return {"Steps": self.steps, "Sampler": self.sampler_name, "CFG scale": self.cfg_scale,
                "Seed": self.seed}


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    def __init__(self, *, enable_hr=False, hr_scale=2.0, hr_sampler_name=None, hr_second_pass_steps=0, **kwargs):
        super().__init__(**kwargs)
        self.enable_hr = enable_hr
        self.hr_scale = hr_scale
        self.hr_sampler_name = hr_sampler_name
        self.hr_second_pass_steps = hr_second_pass_steps

    def generation_params(self):
        params = super().generation_params()
        if self.enable_hr:
            params.update({"Denoising strength": self.denoising_strength, "Hires upscale": self.hr_scale,
                           "Hires sampler": self.hr_sampler_name})
        return params

    def sample(self, conditioning, unconditional_conditioning):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        x = self.rng.next()
        samples = self.sampler.sample(self, x, conditioning, unconditional_conditioning, image_conditioning=None)
        if not self.enable_hr:
            return samples
        return self.sample_hr_pass(samples, conditioning, unconditional_conditioning)

    def sample_hr_pass(self, samples, conditioning, unconditional_conditioning):
        samples = torch.nn.functional.interpolate(samples, scale_factor=self.hr_scale, mode="bilinear")
        self.sampler = sd_samplers.create_sampler(self.hr_sampler_name or self.sampler_name, self.sd_model)
        noise = rng.ImageRNG(samples.shape[1:], self.seeds).next()
        calls = 2 if FLAVOUR == "forge" else 1
        for _ in range(calls if self.scripts is not None else 0):
            self.scripts.process_before_every_sampling(self, x=samples, noise=noise, c=conditioning,
                                                       uc=unconditional_conditioning)
        return self.sampler.sample_img2img(self, samples, noise, conditioning, unconditional_conditioning,
                                           steps=self.hr_second_pass_steps or self.steps, image_conditioning=None)


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    def __init__(self, *, init_latent, mask=None, **kwargs):
        super().__init__(latent_shape=init_latent.shape[1:], **kwargs)
        self.init_latent = init_latent
        self.mask = mask  # 1 = keep the original, as the CFG denoiser blends it
        self.nmask = None if mask is None else 1 - mask

    def init(self):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)

    def generation_params(self):
        return {**super().generation_params(), "Denoising strength": self.denoising_strength}

    def sample(self, conditioning, unconditional_conditioning):
        x = self.rng.next()
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(self, x=self.init_latent, noise=x, c=conditioning,
                                                       uc=unconditional_conditioning)
        samples = self.sampler.sample_img2img(self, self.init_latent, x, conditioning, unconditional_conditioning,
                                              image_conditioning=None)
        if self.mask is not None:
            samples = samples * self.nmask + self.init_latent * self.mask
        return samples


class Processed:
    def __init__(self, p, samples, infotext):
        self.samples = samples
        self.infotext = infotext
        self.seed = p.seed


def process_images(p):
    p.seeds = [p.seed + i for i in range(p.batch_size)]
    if p.scripts is not None:
        p.scripts.process(p)
    p.init()
    p.rng = rng.ImageRNG(p.latent_shape, p.seeds)
    with torch.no_grad():
        samples = p.sample(p.cond, p.uncond)
    params = {**p.generation_params(), **p.extra_generation_params}
    return Processed(p, samples, infotext_utils.create_infotext(params))
