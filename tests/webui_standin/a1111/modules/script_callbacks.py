"""``modules.script_callbacks``: the CFG denoiser's callbacks and their parameter objects
(docs/webui-api.md, "Script callbacks"). Extensions such as ControlNet register with
``on_cfg_denoiser`` and may replace the fields of the object they are handed."""

from collections import namedtuple


class CFGDenoiserParams:
    """Handed to ``cfg_denoiser_callback`` before the model runs. A1111: ``x``, ``image_cond``
    and ``sigma`` are the doubled batch (prompt rows, then the negative rows), ``text_cond``
    the stacked prompt tensor and ``text_uncond`` the stacked negative one; Forge: ``x``,
    ``image_cond`` and ``sigma`` as the sampler gave them."""

    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond,
                 denoiser=None):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    """Handed to ``cfg_denoised_callback`` (A1111) with the model's output for every row."""

    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    """Handed to ``cfg_after_cfg_callback`` with the guided result; ``x`` may be replaced."""

    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps


ScriptCallback = namedtuple("ScriptCallback", ["script", "callback", "name"])

callback_map = {"callbacks_cfg_denoiser": [], "callbacks_cfg_denoised": [], "callbacks_cfg_after_cfg": []}


def add_callback(callbacks, fun, *, name=None):
    callbacks.append(ScriptCallback(None, fun, name))


def on_cfg_denoiser(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_denoiser"], callback, name=name)


def on_cfg_denoised(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_denoised"], callback, name=name)


def on_cfg_after_cfg(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_after_cfg"], callback, name=name)


def clear_callbacks():
    for callbacks in callback_map.values():
        callbacks.clear()


def cfg_denoiser_callback(params):
    for c in callback_map["callbacks_cfg_denoiser"]:
        c.callback(params)


def cfg_denoised_callback(params):
    for c in callback_map["callbacks_cfg_denoised"]:
        c.callback(params)


def cfg_after_cfg_callback(params):
    for c in callback_map["callbacks_cfg_after_cfg"]:
        c.callback(params)
