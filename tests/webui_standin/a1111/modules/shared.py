"""``modules.shared``: the settings (``opts``), the job state and the loaded model that the
samplers and the CFG denoiser read (docs/webui-api.md, "Settings the samplers read").

Every option is at the webui's default; a test changes one and the fixture undoes it
by re-importing the stand-in."""


class Options:
    def __init__(self):
        self.img2img_extra_noise = 0.0      # A1111: xi += noise * img2img_extra_noise
        self.sgm_noise_multiplier = False   # txt2img: x * sqrt(1 + sigma_0^2) instead of x * sigma_0
        self.hide_samplers = []
        self.eta_ancestral = 1.0            # eta of samplers whose function takes ``eta`` when p.eta is None
        self.eta_noise_seed_delta = 0       # ENSD: the noise after the first draw comes from seed + ENSD
        self.s_min_uncond = 0.0             # NGMS: skip the negative prompt below this sigma (odd steps)
        self.s_min_uncond_all = False       # ... on every step
        self.skip_early_cond = 0.0          # skip the negative prompt for this fraction of the first steps
        self.s_churn = 0.0
        self.s_tmin = 0.0
        self.s_tmax = 0.0                   # 0 means infinity
        self.s_noise = 1.0
        self.always_discard_next_to_last_sigma = False
        self.no_dpmpp_sde_batch_determinism = False
        self.img2img_fix_steps = False
        self.use_old_karras_scheduler_sigmas = False


class State:
    def __init__(self):
        self.interrupted = False
        self.skipped = False
        self.sampling_step = 0
        self.sampling_steps = 0
        self.current_latent = None


opts = Options()
state = State()
sd_model = None  # the loaded model; process_images sets it to p.sd_model
