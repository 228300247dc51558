"""``modules.shared``: the settings object ``opts``, the job ``state`` and the loaded
``sd_model`` (docs/webui-api.md, "Settings the samplers read").

Only the settings this stand-in reads exist, each at the webui's default. A test sets one
on ``opts``; re-importing the stand-in (the tests' fixture does) brings the defaults back.
"""

#: name -> (default, what the stand-in does with it)
SETTINGS = {
    "img2img_extra_noise": (0.0, "A1111 img2img: noise * this is added to xi"),
    "sgm_noise_multiplier": (False, "txt2img: the first latent is x * sqrt(1 + sigma_0^2)"),
    "hide_samplers": ([], "names left out of sd_samplers.samplers"),
    "eta_ancestral": (1.0, "eta for a sampler function that takes one, when p.eta is None"),
    "eta_noise_seed_delta": (0, "ENSD: after the first draw ImageRNG reseeds with seed + ENSD"),
    "s_min_uncond": (0.0, "NGMS: no negative prompt below this sigma, on odd steps"),
    "s_min_uncond_all": (False, "NGMS on every step"),
    "skip_early_cond": (0.0, "no negative prompt for this fraction of the first steps"),
    "s_churn": (0.0, "the churn keywords sampler_extra_params names, through p"),
    "s_tmin": (0.0, "... the lowest sigma churned"),
    "s_tmax": (0.0, "... the highest; 0 stands for infinity"),
    "s_noise": (1.0, "... the scale of the churn and ancestral noise"),
    "always_discard_next_to_last_sigma": (False, "drop the next-to-last sigma for every sampler"),
    "no_dpmpp_sde_batch_determinism": (False, "no per-image Brownian noise sampler"),
    "img2img_fix_steps": (False, "img2img runs the requested steps rather than strength * steps"),
}


class Options:
    """Attribute access to the settings, starting from :data:`SETTINGS`."""

    def __init__(self):
        for name, (default, _) in SETTINGS.items():
            setattr(self, name, list(default) if isinstance(default, list) else default)


class State:
    """What the progress display reads; ``interrupted``/``skipped`` stop the job."""

    def __init__(self):
        self.interrupted = self.skipped = False
        self.sampling_step = self.sampling_steps = 0
        self.current_latent = None


opts = Options()
state = State()
sd_model = None  # process_images puts p.sd_model here, where the CFG denoiser looks for it
