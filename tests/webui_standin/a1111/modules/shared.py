"""``modules.shared``: the options and the job state the samplers read."""


class Options:
    def __init__(self):
        self.img2img_extra_noise = 0.0     # A1111: xi += noise * img2img_extra_noise
        self.sgm_noise_multiplier = False  # txt2img: x * sqrt(1 + sigma_0^2) instead of x * sigma_0
        self.hide_samplers = []


class State:
    def __init__(self):
        self.interrupted = False
        self.skipped = False
        self.sampling_step = 0
        self.sampling_steps = 0


opts = Options()
state = State()
