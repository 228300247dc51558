"""``modules.script_callbacks``: the CFG denoiser's three callbacks and the objects they are
handed (docs/webui-api.md, "Script callbacks").

Extensions (ControlNet among them) register with ``on_cfg_denoiser`` and friends; a
callback may replace the attributes of the object it receives, and the CFG denoiser reads
them back. Unlike the webui, which logs a failing callback and carries on, the stand-in
lets the exception through so that a test sees it.
"""


class CFGDenoiserParams:
    """Before the model call. A1111: ``x``, ``image_cond`` and ``sigma`` hold the prompt
    rows then the negative rows, ``text_cond``/``text_uncond`` the stacked prompt and
    negative conditioning. Forge: ``x``, ``image_cond`` and ``sigma`` as the sampler gave them."""

    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond,
                 denoiser=None):
        self.x, self.image_cond, self.sigma = x, image_cond, sigma
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps
        self.text_cond, self.text_uncond = text_cond, text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    """After the model call (A1111): ``x`` is the model's result for every row."""

    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x = x
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    """After guidance: ``x`` is the guided result, and what the CFG denoiser returns."""

    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x = x
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps


# event -> [(name, callback)], in registration order
_registered = {"cfg_denoiser": [], "cfg_denoised": [], "cfg_after_cfg": []}


def _run(event, params):
    for _, callback in list(_registered[event]):
        callback(params)


def on_cfg_denoiser(callback, *, name=None):
    _registered["cfg_denoiser"].append((name, callback))


def on_cfg_denoised(callback, *, name=None):
    _registered["cfg_denoised"].append((name, callback))


def on_cfg_after_cfg(callback, *, name=None):
    _registered["cfg_after_cfg"].append((name, callback))


def cfg_denoiser_callback(params):
    _run("cfg_denoiser", params)


def cfg_denoised_callback(params):
    _run("cfg_denoised", params)


def cfg_after_cfg_callback(params):
    _run("cfg_after_cfg", params)


def clear_callbacks():
    for registered in _registered.values():
        registered.clear()
