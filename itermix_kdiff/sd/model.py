"""`load_sd`: a Stable Diffusion checkpoint as a k-diffusion denoiser with its VAE and prompts.

Sources: a single-file ``.safetensors`` in the original CompVis/SGM layout (the family is read
from the key names; the models' shapes from a diffusers config folder, shipped for SD 1.5,
SD 2.1 768-v, SD 2.1 512-base and SDXL base, or given as ``config``), or a diffusers folder
(``model_index.json`` with ``unet/``, ``vae/``, ``text_encoder/`` ...; its tokenizer folders
are not used). Everything runs offline: no hub access, no tokenizer files.

Loading builds each model with empty (meta) parameters from its config, reads the tensors
straight into it (no random initialisation, no second copy), and refuses a file whose names
or shapes do not match the config, naming the component and the names; afterwards no
parameter or buffer is left on the meta device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from . import checkpoint, layout
from .denoiser import make_denoiser
from .text import Prompts, encode_prompts
from .tokenizer import as_prompts
from .vae import decode as vae_decode
from .vae import encode as vae_encode

PathLike = Union[str, os.PathLike]

CONFIG_ROOT = Path(__file__).with_name("configs")

#: the shipped config folder for each (family, prediction type). SD 2.x comes in two shapes
#: (768-v, 512-base); SD 1.x and SDXL have one, and a v-prediction fine-tune of them runs with
#: its prediction type overriding the folder's scheduler
CONFIGS: Dict[Tuple[str, str], str] = {
    ("sd1", "epsilon"): "sd15",
    ("sd1", "v_prediction"): "sd15",
    ("sd2", "v_prediction"): "sd21-v",
    ("sd2", "epsilon"): "sd21-base",
    ("sdxl", "epsilon"): "sdxl-base",
    ("sdxl", "v_prediction"): "sdxl-base",
}

PREDICTION_TYPES = ("epsilon", "v_prediction")

_PIPELINES = {"StableDiffusionPipeline": "sd", "StableDiffusionImg2ImgPipeline": "sd",
              "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl"}


def _exists(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    return path


def _read_json(path: Path) -> Dict[str, Any]:
    return json.loads(_exists(path).read_text())


def components_of(family: str) -> Tuple[str, ...]:
    """The components a family's checkpoint holds: unet, vae and its text encoders."""
    return tuple(layout.PREFIXES[family])


def shipped_config(family: str, prediction_type: str = "epsilon") -> Path:
    """The shipped diffusers config folder for ``family`` and ``prediction_type``."""
    key = (family, prediction_type)
    if key not in CONFIGS:
        raise ValueError(f"no shipped config for {family} with prediction_type={prediction_type!r}; shipped: "
                         f"{', '.join(f'{f}/{p}' for f, p in CONFIGS)}; pass config= a diffusers config folder")
    return CONFIG_ROOT / CONFIGS[key]


def empty_models(config: PathLike, family: str) -> Dict[str, torch.nn.Module]:
    """The family's models built from a diffusers config folder with parameters on the meta
    device (no memory, no initialisation; buffers are real)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    from transformers.initialization import no_init_weights

    config = Path(config)
    models: Dict[str, torch.nn.Module] = {}
    # no_init_weights: transformers would otherwise run its initialisers on the meta tensors (slow)
    with init_empty_weights(), no_init_weights():
        models["unet"] = UNet2DConditionModel.from_config(_read_json(config / "unet" / "config.json"))
        models["vae"] = AutoencoderKL.from_config(_read_json(config / "vae" / "config.json"))
        for name in components_of(family)[2:]:
            text_config = CLIPTextConfig.from_json_file(str(_exists(config / name / "config.json")))
            projected = "CLIPTextModelWithProjection" in (text_config.architectures or ())
            models[name] = (CLIPTextModelWithProjection if projected else CLIPTextModel)(text_config)
    return models


def meta_tensors(model: torch.nn.Module) -> list:
    """Names of the parameters and buffers of ``model`` still on the meta device."""
    named = list(model.named_parameters()) + list(model.named_buffers())
    return [name for name, t in named if t.is_meta]


def _check_loaded(models: Mapping[str, torch.nn.Module], source: PathLike) -> None:
    for name, model in models.items():
        left = meta_tensors(model)
        if left:
            shown = ", ".join(left[:5]) + (f", ... ({len(left)} in all)" if len(left) > 5 else "")
            raise ValueError(f"{source}: the {name} was not fully loaded: {shown} have no weights "
                             f"(its config does not match the checkpoint)")


def _resolve_dtype(dtype: Optional[Union[str, torch.dtype]]) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    named = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in named:
        raise ValueError(f"dtype must be a torch dtype or one of {', '.join(named)}; got {dtype!r}")
    return named[dtype]


def _vae_dtype(vae_config: Mapping, dtype: torch.dtype) -> torch.dtype:
    # SD's VAEs overflow in float16 (black or NaN images): diffusers' force_upcast marks them
    return torch.float32 if dtype == torch.float16 and vae_config.get("force_upcast", True) else dtype


def _load_single_file(path: Path, family: Optional[str], prediction_type: Optional[str],
                      dtype: Optional[torch.dtype], device: torch.device,
                      config: Optional[PathLike]) -> "StableDiffusion":
    header = checkpoint.read_header(path)
    found = checkpoint.checkpoint_family(path, header)
    if family is not None and family != found:
        raise ValueError(f"family={family!r} but {path} has the keys of {found}")
    if config is None:
        prediction_type = prediction_type or checkpoint.guess_prediction_type(path, found, header)
        config = shipped_config(found, prediction_type)
    config = Path(config)
    if not config.is_dir():
        raise FileNotFoundError(f"config folder {str(config)!r} does not exist")
    scheduler_config = _read_json(config / "scheduler" / "scheduler_config.json")
    prediction_type = prediction_type or scheduler_config.get("prediction_type", "epsilon")
    if dtype is None:
        dtype = checkpoint.weights_dtype(header)
    models = empty_models(config, found)
    vae_dtype = _vae_dtype(models["vae"].config, dtype)
    states = checkpoint.read_components(path, found, models, device)
    for name, model in models.items():
        want = vae_dtype if name == "vae" else dtype
        state = {k: v.to(want) if v.is_floating_point() else v for k, v in states.pop(name).items()}
        model.load_state_dict(state, strict=True, assign=True)
        model.to(device)
    _check_loaded(models, path)
    return StableDiffusion(found, prediction_type, models, scheduler_config, str(path))


def _load_folder(path: Path, family: Optional[str], prediction_type: Optional[str],
                 dtype: Optional[torch.dtype], device: torch.device) -> "StableDiffusion":
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    index = _read_json(path / "model_index.json")
    kind = _PIPELINES.get(index.get("_class_name"))
    if kind is None:
        raise ValueError(f"{path}: model_index.json names {index.get('_class_name')!r}; supported: "
                         f"{', '.join(_PIPELINES)}")
    text_config = CLIPTextConfig.from_json_file(str(_exists(path / "text_encoder" / "config.json")))
    found = "sdxl" if kind == "sdxl" else ("sd1" if text_config.hidden_act == "quick_gelu" else "sd2")
    if family is not None and family != found:
        raise ValueError(f"family={family!r} but the diffusers folder {path} holds {found}")
    scheduler_config = _read_json(path / "scheduler" / "scheduler_config.json")
    prediction_type = prediction_type or scheduler_config.get("prediction_type", "epsilon")
    dtype = dtype or torch.float32
    models: Dict[str, torch.nn.Module] = {}
    common = dict(local_files_only=True, use_safetensors=True)
    models["unet"] = UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=dtype, **common)
    vae_config = _read_json(path / "vae" / "config.json")
    models["vae"] = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=_vae_dtype(vae_config, dtype),
                                                  **common)
    for name in components_of(found)[2:]:
        cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
        models[name] = cls.from_pretrained(path, subfolder=name, dtype=dtype, **common)
    for model in models.values():
        model.to(device).eval().requires_grad_(False)
    _check_loaded(models, path)
    return StableDiffusion(found, prediction_type, models, scheduler_config, str(path))


def load_sd(path: PathLike, family: Optional[str] = None, prediction_type: Optional[str] = None,
            dtype: Optional[Union[str, torch.dtype]] = None, device: Optional[Union[str, torch.device]] = None,
            config: Optional[PathLike] = None) -> "StableDiffusion":
    """Load a Stable Diffusion checkpoint: a single-file ``.safetensors`` or a diffusers folder.

    ``family`` (``sd1``, ``sd2``, ``sdxl``) is read from the checkpoint; when given it must
    agree. ``prediction_type`` (``epsilon``, ``v_prediction``) overrides the config's; for a
    single file without ``config`` it also picks the shipped SD 2.x folder (768-v or 512-base),
    guessed from the weights when None (:func:`checkpoint.guess_prediction_type`). ``dtype``
    (default: the file's UNet dtype; float32 for a folder) is kept for every model except a
    float16 VAE marked ``force_upcast``, which runs in float32. ``device``: where the weights
    are read to (default CPU). ``config``: a diffusers config folder for single files of other
    sizes (a folder source carries its own).
    """
    path = Path(path)
    if family is not None and family not in layout.FAMILIES:
        raise ValueError(f"family must be one of {', '.join(layout.FAMILIES)}; got {family!r}")
    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}; got {prediction_type!r}")
    dtype = _resolve_dtype(dtype)
    device = torch.device("cpu" if device is None else device)
    if path.is_dir():
        if config is not None:
            raise ValueError(f"config applies to single files; the diffusers folder {path} has its own")
        return _load_folder(path, family, prediction_type, dtype, device)
    return _load_single_file(path, family, prediction_type, dtype, device, config)


class StableDiffusion:
    """A loaded SD model the way a k-diffusion script uses it.

    - ``denoiser``: the k-diffusion denoiser ``denoiser(x, sigma, **extra_args)``
      (``DiscreteEpsDDPMDenoiser``/``DiscreteVDDPMDenoiser``, guidance inside), for every
      sampler in ``itermix_kdiff.SAMPLERS``, k-diffusion's own and the DemoFusion wrappers;
    - ``conditioning(prompt, ...)``: its ``extra_args``;
    - ``encode(images)`` / ``decode(latents)``: pixels in [-1, 1] <-> latents;
    - ``get_sigmas(name, n)``: a schedule by ComfyUI's names for this model;
    - ``family``, ``prediction_type``, ``native_size`` (width, height) in pixels, ``vae_scale``
      (pixels per latent), ``latent_channels``, ``device``, ``dtype``;
    - ``unet``, ``vae``, ``text_encoders`` (the diffusers/transformers models).
    """

    def __init__(self, family: str, prediction_type: str, models: Mapping[str, torch.nn.Module],
                 scheduler_config: Mapping[str, Any], source: str):
        self.family = family
        self.prediction_type = prediction_type
        self.unet = models["unet"].eval().requires_grad_(False)
        self.vae = models["vae"].eval().requires_grad_(False)
        self.text_encoders = {k: models[k].eval().requires_grad_(False) for k in components_of(family)[2:]}
        self.scheduler_config = dict(scheduler_config)
        self.source = source
        self.denoiser = make_denoiser(self.unet, scheduler_config, prediction_type)
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.latent_channels = self.unet.config.in_channels
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        self.native_size = (size[1] * self.vae_scale, size[0] * self.vae_scale)

    def __repr__(self) -> str:
        return (f"StableDiffusion(family={self.family!r}, prediction_type={self.prediction_type!r}, "
                f"native_size={self.native_size}, dtype={self.dtype}, device={self.device}, source={self.source!r})")

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def _size(self, width: Optional[int], height: Optional[int]) -> Tuple[int, int]:
        width = self.native_size[0] if width is None else width
        height = self.native_size[1] if height is None else height
        for name, value in (("width", width), ("height", height)):
            bad = isinstance(value, bool) or not isinstance(value, int)
            if bad or value < self.vae_scale or value % self.vae_scale:
                raise ValueError(f"{name} must be a positive multiple of {self.vae_scale} pixels, got {value!r}")
        return width, height

    def latent_shape(self, width: Optional[int] = None, height: Optional[int] = None,
                     batch: int = 1) -> Tuple[int, int, int, int]:
        """``(batch, channels, height / 8, width / 8)`` for an image of ``width`` x ``height``
        pixels (default: the native size)."""
        width, height = self._size(width, height)
        return (batch, self.latent_channels, height // self.vae_scale, width // self.vae_scale)

    def conditioning(self, prompt: Prompts, negative_prompt: Prompts = "", cfg_scale: float = 7.5,
                     width: Optional[int] = None, height: Optional[int] = None,
                     clip_skip: int = 1) -> Dict[str, Any]:
        """The denoiser's ``extra_args`` for ``prompt`` (a string or one per batch row).

        ``cond`` (B, 77, C); with ``cfg_scale != 1`` also ``uncond`` (``negative_prompt``
        encoded the same way; an empty string is encoded too, as AUTOMATIC1111 and ComfyUI do)
        and ``cond_scale``; SDXL adds ``pooled``/``uncond_pooled`` and ``time_ids``
        ``(height, width, 0, 0, height, width)`` (original size, crop, target size; default the
        native size). ``clip_skip`` (SD 1.x): 1 = the last CLIP layer, 2 = the penultimate.
        One row conditions any batch of latents; the negative and positive rows run as one
        batched UNet call.
        """
        if isinstance(cfg_scale, bool) or not isinstance(cfg_scale, (int, float)) or not cfg_scale == cfg_scale \
                or abs(cfg_scale) == float("inf"):
            raise ValueError(f"cfg_scale must be a finite number, got {cfg_scale!r}")
        prompts = as_prompts(prompt, "prompt")
        negatives = ([negative_prompt] * len(prompts) if isinstance(negative_prompt, str)
                     else as_prompts(negative_prompt, "negative_prompt"))
        if len(negatives) != len(prompts):
            raise ValueError(f"negative_prompt must be a string or one per prompt: got {len(negatives)} "
                             f"for {len(prompts)} prompts")
        width, height = self._size(width, height)
        guided = cfg_scale != 1
        cond, pooled = encode_prompts(self.family, self.text_encoders, prompts, clip_skip)
        extra: Dict[str, Any] = {"cond": cond}
        if guided:
            uncond, uncond_pooled = encode_prompts(self.family, self.text_encoders, negatives, clip_skip)
            extra.update(uncond=uncond, cond_scale=float(cfg_scale))
        if pooled is not None:
            extra["pooled"] = pooled
            if guided:
                extra["uncond_pooled"] = uncond_pooled
            ids = torch.tensor([height, width, 0, 0, height, width], dtype=pooled.dtype, device=pooled.device)
            extra["time_ids"] = ids.repeat(len(prompts), 1)
        return extra

    def encode(self, images: torch.Tensor, sample: bool = False,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Latents (float32, on the model's device) of ``images`` (B, 3, H, W) in [-1, 1]: the
        posterior's mode, or with ``sample`` a draw from ``generator``."""
        return vae_encode(self.vae, images, sample, generator)

    def decode(self, latents: torch.Tensor, tile_size: Optional[int] = None,
               tile_overlap: Optional[int] = None) -> torch.Tensor:
        """Images (float32 in [-1, 1]) of ``latents``; ``tile_size`` (pixels) decodes in tiles
        overlapping by ``tile_overlap`` (default a quarter tile) to bound memory."""
        return vae_decode(self.vae, latents, tile_size, tile_overlap)

    def get_sigmas(self, name: str = "karras", n: int = 20, denoise: float = 1.0) -> torch.Tensor:
        """``itermix_kdiff.sigmas.get_sigmas(self.denoiser, name, n, denoise)`` on the model's
        device: ``n + 1`` sigmas ending in 0 (ComfyUI's schedule names: karras, normal,
        exponential, sgm_uniform, simple, ddim_uniform, beta, ...)."""
        from ..sigmas import get_sigmas

        return get_sigmas(self.denoiser, name, n, denoise, device=self.device)
