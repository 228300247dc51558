"""Stable Diffusion checkpoints (SD 1.x, SD 2.x eps and v, SDXL base) as k-diffusion denoisers.

    from itermix_kdiff.sd import load_sd
    m = load_sd("v1-5-pruned-emaonly.safetensors")       # or a diffusers folder
    extra = m.conditioning("a castle", negative_prompt="blurry", cfg_scale=7.5)
    x = sampler(m.denoiser, x, m.get_sigmas("karras", 30), extra_args=extra)
    images = m.decode(x)                                  # [-1, 1]

Needs the ``[sd]`` extra (diffusers, transformers, open-clip-torch, accelerate, k-diffusion),
imported only when a model is loaded or a prompt tokenized: importing this package costs
nothing beyond torch. Modules: :mod:`.model` (``load_sd``, :class:`StableDiffusion`),
:mod:`.checkpoint` (what a file is, reading, :func:`write_checkpoint`), :mod:`.layout`
(parameter names in the original layout), :mod:`.tokenizer`, :mod:`.text` (prompt
encoding per family), :mod:`.denoiser` (UNet + guidance -> k-diffusion), :mod:`.vae`.
"""

from .checkpoint import checkpoint_family, guess_prediction_type, write_checkpoint
from .layout import FAMILIES
from .model import CONFIGS, StableDiffusion, empty_models, load_sd, shipped_config
from .tokenizer import tokenize

__all__ = ["load_sd", "StableDiffusion", "FAMILIES", "CONFIGS", "shipped_config", "empty_models",
           "checkpoint_family", "guess_prediction_type", "write_checkpoint", "tokenize"]
