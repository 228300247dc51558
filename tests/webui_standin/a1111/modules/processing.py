"""``modules.processing``: the txt2img / img2img jobs and their call order (docs/webui-api.md,
"Processing").

``process_images(p)``: the seeds, ``scripts.process(p)``, ``p.init()`` (img2img makes its
sampler here), ``p.rng``, ``p.setup_conds()`` (the prompts' schedules through
``prompt_parser``, over the sampler's ``total_steps``), then ``p.sample(p.c, p.uc)``. txt2img
samples with ``create_sampler(p.sampler_name).sample(...)``; with hires fix the latent is
upscaled, ``p.rng`` re-made at the new size, the hires conditioning computed, and
``create_sampler(p.hr_sampler_name or p.sampler_name).sample_img2img(...)`` runs right after
``process_before_every_sampling`` (twice in Forge). img2img calls
``process_before_every_sampling`` then ``sample_img2img``. The VAE is left out: img2img takes
its clean latent directly (it is also an edit model's image conditioning) and the result is
a latent.
"""

import torch

from modules import FLAVOUR, infotext_utils, prompt_parser, rng, sd_samplers, sd_samplers_common, shared


class StableDiffusionProcessing:
    def __init__(self, *, sd_model, prompt="", negative_prompt="", seed=1, steps=8, cfg_scale=5.0,
                 sampler_name="Euler", scheduler="Automatic", batch_size=1, latent_shape=(4, 8, 8),
                 denoising_strength=0.75, s_min_uncond=None, eta=None, scripts=None, script_args=()):
        self.sd_model = sd_model
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.seed = seed
        self.steps = steps
        self.cfg_scale = cfg_scale
        self.sampler_name = sampler_name
        self.scheduler = scheduler
        self.batch_size = batch_size
        self.latent_shape = tuple(latent_shape)
        self.denoising_strength = denoising_strength
        self.scripts = scripts
        self.script_args = tuple(script_args)
        self.eta = eta
        self.s_min_uncond = s_min_uncond if s_min_uncond is not None else shared.opts.s_min_uncond
        self.s_churn = shared.opts.s_churn
        self.s_tmin = shared.opts.s_tmin
        self.s_tmax = shared.opts.s_tmax or float("inf")
        self.s_noise = shared.opts.s_noise
        self.extra_generation_params = {}
        self.sampler = None
        self.rng = None
        self.seeds = None
        self.all_seeds = None
        self.iteration = 0
        self.n_iter = 1
        self.is_hr_pass = False
        self.sampler_noise_scheduler_override = None
        self.prompts = [prompt] * batch_size
        self.negative_prompts = [negative_prompt] * batch_size
        self.c = None
        self.uc = None
        self.firstpass_steps = steps

    def init(self):
        pass

    def image_conditioning(self, latent):
        """The CFG denoiser's ``image_cond``: an edit model's image (here its latent), else
        the webui's dummy ``(B, 5, 1, 1)`` zeros."""
        if getattr(self.sd_model, "cond_stage_key", None) == "edit":
            return latent.clone()
        return latent.new_zeros(latent.shape[0], 5, 1, 1)

    def setup_conds(self):
        config = sd_samplers.find_sampler_config(self.sampler_name)
        total_steps = config.total_steps(self.steps) if config else self.steps
        self.firstpass_steps = total_steps
        if FLAVOUR == "forge" and self.cfg_scale == 1:
            self.uc = None  # Forge skips the negative prompt at CFG 1
        else:
            self.uc = prompt_parser.get_learned_conditioning(self.sd_model, self.negative_prompts, total_steps)
        self.c = prompt_parser.get_multicond_learned_conditioning(self.sd_model, self.prompts, total_steps)

    def generation_params(self):
        uses_ensd = shared.opts.eta_noise_seed_delta != 0 and sd_samplers_common.is_sampler_using_eta_noise_seed_delta(self)
        params = {"Steps": self.steps, "Sampler": self.sampler_name, "CFG scale": self.cfg_scale, "Seed": self.seed}
        if uses_ensd:
            params["ENSD"] = shared.opts.eta_noise_seed_delta
        return params


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    def __init__(self, *, enable_hr=False, hr_scale=2.0, hr_sampler_name=None, hr_second_pass_steps=0,
                 hr_scheduler=None, hr_cfg=None, **kwargs):
        super().__init__(**kwargs)
        self.enable_hr = enable_hr
        self.hr_scale = hr_scale
        self.hr_sampler_name = hr_sampler_name
        self.hr_second_pass_steps = hr_second_pass_steps
        self.hr_scheduler = hr_scheduler
        self.hr_cfg = self.cfg_scale if hr_cfg is None else hr_cfg
        self.hr_c = None
        self.hr_uc = None

    def generation_params(self):
        params = super().generation_params()
        if self.enable_hr:
            params.update({"Denoising strength": self.denoising_strength, "Hires upscale": self.hr_scale,
                           "Hires sampler": self.hr_sampler_name})
        return params

    def calculate_hr_conds(self):
        """The hires pass's conditioning: the same prompts scheduled over the hires sampler's
        total steps, counted on from the first pass."""
        config = sd_samplers.find_sampler_config(self.hr_sampler_name or self.sampler_name)
        steps = self.hr_second_pass_steps or self.steps
        total_steps = config.total_steps(steps) if config else steps
        if FLAVOUR == "forge" and self.hr_cfg == 1:
            self.hr_uc = None
        else:
            self.hr_uc = prompt_parser.get_learned_conditioning(self.sd_model, self.negative_prompts,
                                                                self.firstpass_steps, total_steps)
        self.hr_c = prompt_parser.get_multicond_learned_conditioning(self.sd_model, self.prompts,
                                                                     self.firstpass_steps, total_steps)

    def sample(self, conditioning, unconditional_conditioning):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        x = self.rng.next()
        samples = self.sampler.sample(self, x, conditioning, unconditional_conditioning,
                                      image_conditioning=self.image_conditioning(x))
        if not self.enable_hr:
            return samples
        return self.sample_hr_pass(samples)

    def sample_hr_pass(self, samples):
        self.is_hr_pass = True
        samples = torch.nn.functional.interpolate(samples, scale_factor=self.hr_scale, mode="bilinear")
        self.sampler = sd_samplers.create_sampler(self.hr_sampler_name or self.sampler_name, self.sd_model)
        self.rng = rng.ImageRNG(samples.shape[1:], self.seeds)
        noise = self.rng.next()
        self.calculate_hr_conds()
        calls = 2 if FLAVOUR == "forge" else 1
        for _ in range(calls if self.scripts is not None else 0):
            self.scripts.process_before_every_sampling(self, x=samples, noise=noise, c=self.hr_c, uc=self.hr_uc)
        return self.sampler.sample_img2img(self, samples, noise, self.hr_c, self.hr_uc,
                                           steps=self.hr_second_pass_steps or self.steps,
                                           image_conditioning=self.image_conditioning(samples))


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    def __init__(self, *, init_latent, mask=None, image_cfg_scale=None, **kwargs):
        super().__init__(latent_shape=init_latent.shape[1:], **kwargs)
        self.init_latent = init_latent
        self.mask = mask  # 1 = keep the original, as the CFG denoiser blends it
        self.nmask = None if mask is None else 1 - mask
        self.image_cfg_scale = image_cfg_scale

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
                                              image_conditioning=self.image_conditioning(self.init_latent))
        if self.mask is not None:
            samples = samples * self.nmask + self.init_latent * self.mask
        return samples


class Processed:
    def __init__(self, p, samples, infotext):
        self.samples = samples
        self.infotext = infotext
        self.seed = p.seed


def process_images(p):
    p.all_seeds = [p.seed + i for i in range(p.batch_size * p.n_iter)]
    shared.sd_model = p.sd_model
    if p.scripts is not None:
        p.scripts.process(p)
    p.init()
    p.iteration = 0
    p.seeds = p.all_seeds[:p.batch_size]
    p.rng = rng.ImageRNG(p.latent_shape, p.seeds)
    p.setup_conds()
    with torch.no_grad():
        samples = p.sample(p.c, p.uc)
    params = {**p.generation_params(), **p.extra_generation_params}
    return Processed(p, samples, infotext_utils.create_infotext(params))
