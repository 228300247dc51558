"""The AUTOMATIC1111 / Forge shim: itermix samplers in the webui's sampler lists, their
settings in an "Iterative Mixing" accordion, the infotext and the HTTP API.

Importable and testable without a webui (nothing here imports gradio or ``modules``;
the webui's modules are passed in). The extension's script file
(``extensions/sd-webui-itermix/scripts/itermix.py``) does::

    register(sd_samplers, sd_samplers_common, sd_samplers_kdiffusion)   # at import
    components = build_ui(gr, is_img2img)                                # Script.ui
    self.infotext_fields = infotext_fields(infotext_utils.PasteField, components)
    process(p, args)                                                     # Script.process
"""

from .registry import (INHERITED_OPTIONS, SCHEDULER_LABELS, WEBUI_SAMPLERS, active_samplers, available_samplers,
                       register)
from .sampler import PROMPT_CONDITIONING, WebuiSampler, recover_noise, sample_webui, scale_noise, webui_noised_latents
from .script import process
from .settings import (FIELDS, TITLE, Field, api_name, api_params, build_ui, default_settings,
                       infotext_fields, infotext_key, infotext_params, sampler_options, settings_from_args)

__all__ = [
    "FIELDS", "INHERITED_OPTIONS", "PROMPT_CONDITIONING", "SCHEDULER_LABELS", "TITLE", "WEBUI_SAMPLERS", "Field",
    "WebuiSampler", "active_samplers", "api_name", "api_params", "available_samplers", "build_ui",
    "default_settings", "infotext_fields", "infotext_key", "infotext_params", "process", "recover_noise",
    "register", "sample_webui", "sampler_options", "scale_noise", "settings_from_args", "webui_noised_latents",
]
