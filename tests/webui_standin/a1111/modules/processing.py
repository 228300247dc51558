"""``modules.processing``: txt2img and img2img jobs and the order they call things in
(docs/webui-api.md, "Processing").

:func:`process_images` runs one batch: seeds, the scripts' ``process``, ``p.init()`` (img2img
makes its sampler there), ``p.rng``, ``p.setup_conds()``, ``p.sample(p.c, p.uc)``, then the
infotext. The hires fix upscales the first pass's latent, draws its noise from a new
``ImageRNG`` at the new size, schedules the prompts again counting on from the first pass,
calls the scripts' ``process_before_every_sampling`` (twice in Forge) and runs
``sample_img2img``. There is no VAE: an img2img job is given its clean latent (also an edit
model's image conditioning), and every job returns latents.
"""

import json

import torch

from modules import FLAVOUR, prompt_parser, rng, sd_samplers, sd_samplers_common, shared


def _schedule_calls(sampler_name, steps):
    """The model calls ``steps`` steps of that sampler take, over which prompts are scheduled."""
    config = sd_samplers.find_sampler_config(sampler_name)
    return steps if config is None else config.total_steps(steps)


def _infotext(params):
    """``Key: value, ...``, leaving out None; a value holding a separator goes in JSON quotes."""
    def shown(value):
        text = str(value)
        return json.dumps(text, ensure_ascii=False) if any(c in text for c in ',:"\n') else text

    return ", ".join(f"{key}: {shown(value)}" for key, value in params.items() if value is not None)


class StableDiffusionProcessing:
    def __init__(self, *, sd_model, prompt="", negative_prompt="", seed=1, steps=8, cfg_scale=5.0,
                 sampler_name="Euler", scheduler="Automatic", batch_size=1, latent_shape=(4, 8, 8),
                 denoising_strength=0.75, s_min_uncond=None, eta=None, scripts=None, script_args=()):
        self.sd_model = sd_model
        self.prompts = [prompt] * batch_size
        self.negative_prompts = [negative_prompt] * batch_size
        self.seed, self.batch_size, self.n_iter = seed, batch_size, 1
        self.steps, self.cfg_scale, self.denoising_strength = steps, cfg_scale, denoising_strength
        self.sampler_name, self.scheduler = sampler_name, scheduler
        self.latent_shape = tuple(latent_shape)  # (C, H, W) of the first pass's latent
        self.scripts, self.script_args = scripts, tuple(script_args)
        self.eta = eta
        opts = shared.opts
        self.s_min_uncond = opts.s_min_uncond if s_min_uncond is None else s_min_uncond
        self.s_churn, self.s_tmin, self.s_noise = opts.s_churn, opts.s_tmin, opts.s_noise
        self.s_tmax = opts.s_tmax or float("inf")
        self.extra_generation_params = {}
        self.is_hr_pass = False
        # process_images fills these in
        self.all_seeds = self.seeds = self.rng = self.sampler = None
        self.iteration = 0
        self.c = self.uc = None
        self.firstpass_steps = steps

    def init(self):
        pass

    def image_conditioning(self, latent):
        """The CFG denoiser's ``image_cond``: an edit model's image (here its latent itself),
        else the webui's placeholder zeros ``(B, 5, 1, 1)``."""
        if getattr(self.sd_model, "cond_stage_key", None) == "edit":
            return latent.clone()
        return latent.new_zeros(latent.shape[0], 5, 1, 1)

    def _conds(self, steps, hires_steps, cfg_scale):
        """``(c, uc)``; Forge has no negative conditioning at CFG scale 1."""
        if FLAVOUR == "forge" and cfg_scale == 1:
            uc = None
        else:
            uc = prompt_parser.get_learned_conditioning(self.sd_model, self.negative_prompts, steps, hires_steps)
        c = prompt_parser.get_multicond_learned_conditioning(self.sd_model, self.prompts, steps, hires_steps)
        return c, uc

    def setup_conds(self):
        self.firstpass_steps = _schedule_calls(self.sampler_name, self.steps)
        self.c, self.uc = self._conds(self.firstpass_steps, None, self.cfg_scale)

    def generation_params(self):
        params = {"Steps": self.steps, "Sampler": self.sampler_name, "CFG scale": self.cfg_scale, "Seed": self.seed}
        delta = shared.opts.eta_noise_seed_delta
        if delta and sd_samplers_common.is_sampler_using_eta_noise_seed_delta(self):
            params["ENSD"] = delta
        return params


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    def __init__(self, *, enable_hr=False, hr_scale=2.0, hr_sampler_name=None, hr_second_pass_steps=0,
                 hr_scheduler=None, hr_cfg=None, **kwargs):
        super().__init__(**kwargs)
        self.enable_hr, self.hr_scale = enable_hr, hr_scale
        self.hr_sampler_name, self.hr_scheduler = hr_sampler_name, hr_scheduler
        self.hr_second_pass_steps = hr_second_pass_steps
        self.hr_cfg = self.cfg_scale if hr_cfg is None else hr_cfg  # Forge's own CFG scale for the hires pass
        self.hr_c = self.hr_uc = None

    def generation_params(self):
        params = super().generation_params()
        if self.enable_hr:
            params["Denoising strength"] = self.denoising_strength
            params["Hires upscale"] = self.hr_scale
            params["Hires sampler"] = self.hr_sampler_name
        return params

    def calculate_hr_conds(self):
        """The hires pass's conditioning: the prompts scheduled over the hires sampler's
        model calls, counting on from the first pass."""
        sampler_name = self.hr_sampler_name or self.sampler_name
        hires_steps = _schedule_calls(sampler_name, self.hr_second_pass_steps or self.steps)
        self.hr_c, self.hr_uc = self._conds(self.firstpass_steps, hires_steps, self.hr_cfg)

    def sample(self, conditioning, unconditional_conditioning):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        noise = self.rng.next()
        latent = self.sampler.sample(self, noise, conditioning, unconditional_conditioning,
                                     image_conditioning=self.image_conditioning(noise))
        return self.sample_hr_pass(latent) if self.enable_hr else latent

    def sample_hr_pass(self, samples):
        self.is_hr_pass = True
        height, width = samples.shape[-2:]
        size = (int(height * self.hr_scale), int(width * self.hr_scale))
        latent = torch.nn.functional.interpolate(samples, size=size, mode="bilinear")
        self.sampler = sd_samplers.create_sampler(self.hr_sampler_name or self.sampler_name, self.sd_model)
        self.rng = rng.ImageRNG(latent.shape[1:], self.seeds)
        noise = self.rng.next()
        self.calculate_hr_conds()
        if self.scripts is not None:
            for _ in range(2 if FLAVOUR == "forge" else 1):
                self.scripts.process_before_every_sampling(self, x=latent, noise=noise, c=self.hr_c, uc=self.hr_uc)
        return self.sampler.sample_img2img(self, latent, noise, self.hr_c, self.hr_uc,
                                           steps=self.hr_second_pass_steps or self.steps,
                                           image_conditioning=self.image_conditioning(latent))


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    def __init__(self, *, init_latent, mask=None, image_cfg_scale=None, **kwargs):
        super().__init__(latent_shape=init_latent.shape[1:], **kwargs)
        self.init_latent = init_latent
        self.mask = mask  # 1 keeps the init latent (the CFG denoiser's convention)
        self.nmask = None if mask is None else 1 - mask
        self.image_cfg_scale = image_cfg_scale

    def init(self):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)

    def generation_params(self):
        return {**super().generation_params(), "Denoising strength": self.denoising_strength}

    def sample(self, conditioning, unconditional_conditioning):
        noise = self.rng.next()
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(self, x=self.init_latent, noise=noise, c=conditioning,
                                                       uc=unconditional_conditioning)
        latent = self.sampler.sample_img2img(self, self.init_latent, noise, conditioning, unconditional_conditioning,
                                             image_conditioning=self.image_conditioning(self.init_latent))
        if self.mask is None:
            return latent
        return self.init_latent * self.mask + latent * self.nmask


class Processed:
    def __init__(self, p, samples, infotext):
        self.samples = samples  # latents: the stand-in decodes nothing
        self.infotext = infotext
        self.seed = p.seed


def process_images(p):
    """One batch of ``p``, as the webui runs it; returns its latents and infotext."""
    p.all_seeds = [p.seed + offset for offset in range(p.n_iter * p.batch_size)]
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
    return Processed(p, samples, _infotext({**p.generation_params(), **p.extra_generation_params}))
