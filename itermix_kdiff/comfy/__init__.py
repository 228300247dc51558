"""The ComfyUI node pack: iterative mixing as a SAMPLER for SamplerCustom, its schedulers and
masks, the deprecated two-node flow, the diagnostic plots, DemoFusion on any MODEL and a
one-node upscale.

Importable and testable without ComfyUI: ``comfy`` (and ComfyUI's ``latent_preview``) are
imported inside the functions that run in it. The folder ``extensions/comfyui-itermix``, linked
into ``ComfyUI/custom_nodes``, exports :data:`NODE_CLASS_MAPPINGS` and
:data:`NODE_DISPLAY_NAME_MAPPINGS`; the node names, inputs and defaults of the
ComfyUI-Iterative-Mixer pack's nine nodes are kept, so its saved workflows load unchanged.
"""

from .demofusion import demofusion_model, demofusion_wrapper
from .model import ComfyDenoiser, ScheduleView
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, ksampler_sigmas
from .sampler import RNG_MODES, SAMPLER_NAMES, comfy_noised_latents, sample_comfy, sampler_function

__all__ = [
    "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "RNG_MODES", "SAMPLER_NAMES", "ComfyDenoiser",
    "ScheduleView", "comfy_noised_latents", "demofusion_model", "demofusion_wrapper", "ksampler_sigmas",
    "sample_comfy", "sampler_function",
]
