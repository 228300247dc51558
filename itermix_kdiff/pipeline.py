"""The upscale pipeline behind ``itermix-upscale``, as library functions.

For an RGB pixel-space k-diffusion model (the shipped demo model works on images in
[-1, 1] at 32x32, no VAE: its "latent" is the image), one run is::

    base     = a generation at the model's size, an input image, or a true scene render
    for each 2x stage:
        up       = upscale(previous, 2)                 # bicubic, or ComfyUI's bislerp
        itermix  = SAMPLERS[sampler](model, up, sigmas, generator=..., **options)
        cleanup  = img2img(itermix, cleanup_denoise)    # plain Euler from a low noise level
        hires    = img2img(upscale(previous hires, 2), hires_denoise)   # the hires-fix baseline

A Stable Diffusion checkpoint (:func:`load_sd_model`) runs the same chain on its VAE latents:
the base is a generation in latent space or the VAE encoding of an input image, ``upscale``
resizes the latent (as the ComfyUI node pack does), and every output is decoded.

``sigmas`` is the model's full schedule (Karras by default; any name of
:data:`itermix_kdiff.sigmas.SCHEDULERS`) over ``sigma_min``/``sigma_max`` of its config (an
SD model: of its noise table).
Every random draw comes from a ``torch.Generator`` seeded from one run seed
(:func:`stage_seeds`), so a run is reproducible. PIL and k-diffusion are imported by the
functions that need them; this module is not imported by ``itermix_kdiff/__init__.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .demofusion import DemoFusionDenoiser
from .statistics import match_statistics

PathLike = Union[str, Path]

UPSCALE_METHODS = ("bicubic", "bislerp")

#: PIL modes an input image may have: RGB, greyscale and palette images are converted to RGB;
#: RGBA/LA only when fully opaque (the model has no notion of transparency).
IMAGE_MODES = ("RGB", "L", "P", "RGBA", "LA")

#: The largest seed :func:`stage_seeds` accepts (derived seeds stay below 2**63).
MAX_SEED = 2 ** 62


# ---------------------------------------------------------------- upscaling

def linear_taps(n_in: int, n_out: int, device: Union[str, torch.device] = "cpu"
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each of ``n_out`` output samples reads an axis of ``n_in`` samples, as bilinear
    interpolation with half-pixel centres (``align_corners=False``):
    ``p_j = max((j + 1/2) n_in / n_out - 1/2, 0)``, left tap ``floor(p_j)``, right tap
    ``min(left + 1, n_in - 1)``, ratio ``p_j - left``. Returns ``(left, right, ratio)``."""
    pos = ((torch.arange(n_out, dtype=torch.float32, device=device) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    left = pos.floor().long().clamp(max=n_in - 1)
    right = (left + 1).clamp(max=n_in - 1)
    return left, right, pos - left


def slerp_rows(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """ComfyUI's ``bislerp`` slerp of row vectors ``a``, ``b`` (N, C) at ratios ``r`` (N, 1):
    the unit directions are slerped, ``sin((1-r) w) / sin w u_a + sin(r w) / sin w u_b`` with
    ``w = acos(u_a . u_b)``, and scaled by the lerped norm ``|a| (1-r) + |b| r``. Rows pointing
    the same way (``u_a . u_b > 1 - 1e-5``) give ``a``; opposite rows (``< -1 + 1e-5``) give
    ``lerp(a, b, r)``; a zero row has the zero direction."""
    na = a.norm(dim=1, keepdim=True)
    nb = b.norm(dim=1, keepdim=True)
    ua = torch.where(na == 0, torch.zeros_like(a), a / na)
    ub = torch.where(nb == 0, torch.zeros_like(b), b / nb)
    dot = (ua * ub).sum(1, keepdim=True)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    out = (torch.sin((1 - r) * omega) / so) * ua + (torch.sin(r * omega) / so) * ub
    out = out * (na * (1 - r) + nb * r)
    out = torch.where(dot < 1e-5 - 1, a * (1 - r) + b * r, out)
    return torch.where(dot > 1 - 1e-5, a, out)


def _bislerp_axis(x: torch.Tensor, n_out: int, dim: int) -> torch.Tensor:
    """Resize axis ``dim`` (2: height, 3: width) of ``(B, C, H, W)`` to ``n_out`` samples by
    slerping each pixel's channel vector between its two taps."""
    left, right, ratio = linear_taps(x.shape[dim], n_out, x.device)
    a = x.index_select(dim, left).movedim(1, -1)  # (B, H, W, C): one row per pixel
    b = x.index_select(dim, right).movedim(1, -1)
    r_shape = [1, 1, 1, 1]
    r_shape[dim - 1] = n_out  # the resized axis, one place earlier once C moved to the end
    r = ratio.view(r_shape).expand(*a.shape[:-1], 1)
    c = a.shape[-1]
    out = slerp_rows(a.reshape(-1, c), b.reshape(-1, c), r.reshape(-1, 1))
    return out.reshape(a.shape).movedim(-1, 1)


def bislerp(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``(B, C, height, width)`` the way ComfyUI's ``bislerp``
    latent upscale does: separable, first along the width then the height, each output
    sample slerps (:func:`slerp_rows`, over the channel vector of the pixel) between its two
    bilinear taps (:func:`linear_taps`). Computed in float32, returned in ``x``'s dtype."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise TypeError("x must be a floating-point (B, C, H, W) tensor")
    out = _bislerp_axis(x.float(), width, 3)
    out = _bislerp_axis(out, height, 2)
    return out.to(x.dtype)


def upscale(x: torch.Tensor, size: Tuple[int, int], method: str = "bicubic") -> torch.Tensor:
    """``x`` resized to ``size = (height, width)`` by ``bicubic`` interpolation
    (``align_corners=False``, float32 inside) or :func:`bislerp`."""
    if method not in UPSCALE_METHODS:
        raise ValueError(f"upscale method must be one of {', '.join(UPSCALE_METHODS)}; got {method!r}")
    if method == "bislerp":
        return bislerp(x, *size)
    return F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False).to(x.dtype)


# ---------------------------------------------------------------- the model

class LoadedModel(NamedTuple):
    """A model ready for the pipeline: ``denoiser(x, sigma, **extra_args)`` and what it needs."""

    denoiser: Callable[..., torch.Tensor]
    config: Optional[Dict[str, Any]]  # the k-diffusion config (``configs/*.json`` schema); None for SD
    num_classes: int  # 0: unconditional; else ``extra_args`` take ``class_labels`` and ``cond_scale``
    class_names: Tuple[str, ...]
    config_path: Optional[Path]  # None when the config came from the checkpoint's metadata
    checkpoint: Path
    sd: Any = None  # the itermix_kdiff.sd.StableDiffusion of an SD checkpoint: the pipeline runs on its latents


def native_size(config: Dict[str, Any]) -> Tuple[int, int]:
    """The ``(height, width)`` the model was trained at (``model.input_size``)."""
    size = config["model"]["input_size"]
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))


def size_multiple(config: Dict[str, Any]) -> int:
    """What image sides must be a multiple of: ``patch_size * 2 ** (levels - 1)`` for k-diffusion's
    ``image_v1`` U-Net (each level halves the image); 1 for other model types."""
    m = config["model"]
    if m.get("type") != "image_v1":
        return 1
    return int(m.get("patch_size", 1)) * 2 ** (len(m.get("depths", [1])) - 1)


def file_sha256(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_config(config: PathLike) -> Dict[str, Any]:
    """Parse a config JSON file; a clear error for a missing file or bad JSON."""
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"model config not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"model config {path} is not valid JSON: {e}") from None
    return check_model_config(data, f"model config {path}")


def check_model_config(config: Any, source: str) -> Dict[str, Any]:
    """``config`` (read from ``source``, named in the errors) as the pipeline reads it: a dict
    whose ``model`` section describes an RGB pixel-space model (``input_channels`` 3) with an
    ``input_size``, a sigma range and, where given, well-typed ``patch_size``, ``depths``,
    ``mapping_cond_dim`` and ``dataset.classes``. Returned as given; a forged or broken config
    is a ValueError here rather than a KeyError deep in the run."""
    def bad(what: str) -> ValueError:
        return ValueError(f"{source} is not a k-diffusion model config (configs/*.json schema): {what}")

    def is_int(v: Any, low: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise bad("it needs a 'model' section (an object)")
    m = config["model"]
    if m.get("input_channels") != 3:
        raise ValueError(f"the pipeline needs an RGB pixel-space model (input_channels 3); "
                         f"{source} has input_channels {m.get('input_channels')!r}")
    size = m.get("input_size")
    if not (is_int(size, 1) or (isinstance(size, list) and len(size) == 2 and all(is_int(v, 1) for v in size))):
        raise bad(f"model.input_size must be a positive int or [height, width], got {size!r}")
    ends = [m.get("sigma_min"), m.get("sigma_max")]
    if not (all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in ends)
            and 0 <= ends[0] < ends[1]):
        raise bad(f"model.sigma_min and model.sigma_max must be numbers with 0 <= sigma_min < sigma_max, "
                  f"got {ends[0]!r} and {ends[1]!r}")
    if m.get("patch_size") is not None and not is_int(m["patch_size"], 1):
        raise bad(f"model.patch_size must be a positive int, got {m['patch_size']!r}")
    if m.get("depths") is not None and not (isinstance(m["depths"], list) and m["depths"]):
        raise bad(f"model.depths must be a non-empty list, got {m['depths']!r}")
    if m.get("mapping_cond_dim") is not None and not is_int(m["mapping_cond_dim"], 0):
        raise bad(f"model.mapping_cond_dim must be an int >= 0, got {m['mapping_cond_dim']!r}")
    dataset = config.get("dataset", {})
    classes = dataset.get("classes", []) if isinstance(dataset, dict) else None
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise bad(f"dataset.classes must be a list of names, got {dataset!r}")
    return config


def checkpoint_mismatch(config: Dict[str, Any], checkpoint: PathLike) -> str:
    """Describe how the tensors of ``checkpoint`` differ from the model ``config`` builds:
    missing and unexpected names and shape differences, a few examples of each."""
    import k_diffusion as K
    from safetensors import safe_open

    with torch.device("meta"):
        model = K.config.make_model(K.config.load_config(config))  # shapes only, no memory
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(checkpoint), framework="pt") as f:
        found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing from the checkpoint (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensor(s) the config has no place for (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        examples = ", ".join(f"{k}: checkpoint {list(found[k])} vs config {list(expected[k])}" for k in shapes[:3])
        parts.append(f"{len(shapes)} tensor(s) of another shape ({examples})")
    return "; ".join(parts) or "the state dicts differ"


def read_model_config(config: Optional[PathLike] = None, checkpoint: Optional[PathLike] = None
                      ) -> Tuple[Dict[str, Any], Optional[Path], Path]:
    """``(config, config path or None, checkpoint path)`` for :func:`load_model`, read and checked
    without loading any weights: ``config`` (JSON, k-diffusion's schema) and ``checkpoint``
    (safetensors only, never a pickle); with neither, the shipped demo model
    (``itermix_kdiff/demo/weights``); with only a checkpoint, the config in its metadata.

    Raises FileNotFoundError for a missing file and ValueError for a checkpoint that is not a
    whole safetensors file, a config that is not JSON or not the schema
    (:func:`check_model_config`), or a model that is not RGB (``input_channels != 3``).
    """
    from . import models

    if config is None and checkpoint is None:
        config, checkpoint = models.DEMO_CONFIG, models.DEMO_CHECKPOINT
        missing = [str(p) for p in (config, checkpoint) if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"the shipped demo model is missing ({', '.join(missing)}); export it with "
                                    f"scripts/export_demo_model.py or give --config/--checkpoint")
    if checkpoint is None:
        raise ValueError("a config needs a checkpoint: give both, only a checkpoint, or neither (the shipped model)")
    checkpoint = Path(checkpoint)
    config_path = None if config is None else Path(config)
    models.check_safetensors(checkpoint)
    if config_path is not None:
        cfg = read_config(config_path)
    else:
        cfg = models.read_safetensors_config(checkpoint)
        if cfg is None:
            raise ValueError(f"{checkpoint} carries no 'config' metadata; give the model config JSON too")
        check_model_config(cfg, f"the 'config' metadata of {checkpoint}")
    return cfg, config_path, checkpoint


def model_classes(config: Dict[str, Any]) -> Tuple[int, Tuple[str, ...]]:
    """The number of classes of a class-conditional model (``mapping_cond_dim``; 0 when
    unconditional) and their names (the config's ``dataset.classes``, else the indices)."""
    num_classes = int(config["model"].get("mapping_cond_dim", 0) or 0)
    names = tuple(config.get("dataset", {}).get("classes", ())) or tuple(str(i) for i in range(num_classes))
    return num_classes, names


def load_model(config: Union[PathLike, Dict[str, Any], None] = None, checkpoint: Optional[PathLike] = None, *,
               device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
               config_path: Optional[Path] = None) -> LoadedModel:
    """Load an RGB pixel-space k-diffusion model: ``config`` and ``checkpoint`` as
    :func:`read_model_config` takes them, or a config dict it returned (with its
    ``config_path``, for the record).

    A class-conditional model (``mapping_cond_dim > 0``, a one-hot class as the demo model) is
    wrapped by :func:`itermix_kdiff.models.class_conditional_denoiser` (classifier-free
    guidance through ``extra_args`` ``class_labels``/``cond_scale``).

    Raises FileNotFoundError for a missing file and ValueError for anything
    :func:`read_model_config` refuses or a config that does not match the checkpoint's tensors.
    """
    from . import models

    if isinstance(config, dict):
        cfg, checkpoint = config, Path(checkpoint)
    else:
        cfg, config_path, checkpoint = read_model_config(config, checkpoint)
    try:
        model = models.load_kdiffusion_model(cfg, checkpoint, device=device, dtype=dtype)
    except RuntimeError as e:  # load_state_dict(strict=True)
        if "state_dict" not in str(e):
            raise
        where = f"config {config_path}" if config_path else "the config in its metadata"
        raise ValueError(f"checkpoint {checkpoint} does not match {where}: "
                         f"{checkpoint_mismatch(cfg, checkpoint)}") from None
    except (KeyError, TypeError) as e:
        raise ValueError(f"model config {config_path or checkpoint} is not a valid k-diffusion config: {e!r}") from None
    num_classes, names = model_classes(cfg)
    denoiser = models.class_conditional_denoiser(model, num_classes) if num_classes else model
    return LoadedModel(denoiser, cfg, num_classes, names, config_path, checkpoint)


def is_sd_checkpoint(path: PathLike) -> bool:
    """Whether ``path`` is a Stable Diffusion checkpoint: a folder (diffusers' layout) or a
    safetensors file holding the original layout's UNet (``model.diffusion_model.*``). Reads
    the header only; a missing or unreadable file is not one (the loaders then say why)."""
    from .sd.checkpoint import read_header

    path = Path(path)
    if path.is_dir():
        return True
    try:
        keys = read_header(path)
    except (OSError, ValueError):
        return False
    return any(k.startswith("model.diffusion_model.") for k in keys)


def load_sd_model(checkpoint: PathLike, config: Optional[PathLike] = None, *,
                  prediction_type: Optional[str] = None, dtype: Optional[Union[str, torch.dtype]] = None,
                  device: Union[str, torch.device] = "cpu") -> LoadedModel:
    """An SD checkpoint (:func:`itermix_kdiff.sd.load_sd`; ``config``: a diffusers config folder)
    as a :class:`LoadedModel` whose ``sd`` is the :class:`~itermix_kdiff.sd.StableDiffusion`."""
    from .sd import load_sd

    m = load_sd(checkpoint, prediction_type=prediction_type, dtype=dtype, device=device, config=config)
    return LoadedModel(m.denoiser, None, 0, (), None if config is None else Path(config), Path(checkpoint), sd=m)


def schedule_sigmas(model: LoadedModel, scheduler: str, steps: int) -> torch.Tensor:
    """The ``scheduler``'s sigmas (:func:`itermix_kdiff.sigmas.get_sigmas`) over the model's
    ``[sigma_min, sigma_max]`` (its config, or an SD model's noise table): ``steps + 1`` values
    ending in 0."""
    from .sigmas import get_sigmas

    return get_sigmas(model.denoiser, scheduler, steps, config=model.config)


def guidance_args(model: LoadedModel, labels: Optional[torch.Tensor], cfg_scale: float) -> Dict[str, Any]:
    """``extra_args`` for the denoiser: the class labels (None: unconditional) and the CFG scale."""
    if not model.num_classes:
        return {}
    return {"class_labels": labels, "cond_scale": float(cfg_scale)}


# ---------------------------------------------------------------- the samplers

def sample_base(model: Callable[..., torch.Tensor], shape: Sequence[int], sigmas: torch.Tensor,
                extra_args: Dict[str, Any], generator: torch.Generator,
                disable: Optional[bool] = None, device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """A generation: ``x = eps sigma_0`` (``eps`` from ``generator``), then k-diffusion's
    ``sample_euler`` over ``sigmas``."""
    from k_diffusion.sampling import sample_euler

    noise = torch.randn(tuple(shape), generator=generator, device=device)
    return sample_euler(model, noise * sigmas[0], sigmas, extra_args=extra_args, disable=disable)


def img2img_start(steps: int, denoise: float) -> int:
    """The first step of an img2img pass at ``denoise``: ``int(steps * (1 - denoise))``."""
    return int(steps * (1 - denoise))


def img2img(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor, denoise: float,
            extra_args: Dict[str, Any], generator: torch.Generator,
            disable: Optional[bool] = None) -> torch.Tensor:
    """Hires-fix style img2img: from step ``s = int(n (1 - denoise))`` of ``sigmas``,
    ``x' = x + eps sigma_s`` (``eps`` from ``generator``), then ``sample_euler`` over
    ``sigmas[s:]``. ``denoise = 0`` returns ``x`` unchanged."""
    from k_diffusion.sampling import sample_euler

    if not 0.0 <= denoise <= 1.0:
        raise ValueError(f"denoise must be in [0, 1], got {denoise}")
    start = img2img_start(len(sigmas) - 1, denoise)
    if start >= len(sigmas) - 1:
        return x.clone()
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return sample_euler(model, x + noise * sigmas[start], sigmas[start:], extra_args=extra_args, disable=disable)


def stage_seeds(seed: int, stages: int) -> Dict[str, Any]:
    """The seed of every random draw of a run: ``base = seed``; for stage ``k = 1..``:
    ``itermix = seed + 100 k + 1``, ``cleanup = seed + 100 k + 2``, ``hires = seed + 100 k + 3``,
    each for its own ``torch.Generator`` (changing one pass leaves the others' noise alone)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an int in [0, 2**62], got {seed!r}")
    return {"base": seed, **{f"stage{k}": {"itermix": seed + 100 * k + 1, "cleanup": seed + 100 * k + 2,
                                           "hires": seed + 100 * k + 3} for k in range(1, stages + 1)}}


def generator(seed: int, device: Union[str, torch.device] = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def resize_mask(mask: Optional[torch.Tensor], size: Tuple[int, int]) -> Optional[torch.Tensor]:
    """A ``(1, 1, h, w)`` mask in [0, 1] resized (bilinear) to ``size``; None stays None."""
    if mask is None:
        return None
    return F.interpolate(mask.float(), size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def run_upscale(model: LoadedModel, base: torch.Tensor, *, sampler: Callable[..., torch.Tensor],
                steps: int, scale: int, seed: int, extra_args: Dict[str, Any],
                options: Dict[str, Any], sampler_kwargs: Optional[Dict[str, Any]] = None,
                scheduler: str = "karras", upscale_method: str = "bicubic", cleanup_denoise: float = 0.15,
                hires_denoise: float = 0.5, denoise_mask: Optional[torch.Tensor] = None,
                mixing_mask: Optional[torch.Tensor] = None, seed_keyword: bool = False, demofusion: bool = False,
                disable: Optional[bool] = None, progress: Optional[Callable[[str], Any]] = None,
                on_stage: Optional[Callable[[int, Dict[str, Any]], Any]] = None,
                conditioning: Optional[Callable[[Tuple[int, int]], Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Run every 2x stage from ``base`` (B, C, H, W: an image in [-1, 1], or an SD model's
    latents) to ``scale`` times its size.

    Per stage k (see the module docstring): ``upscaled``, ``itermix`` (``sampler`` on the
    upscaled image over the full ``scheduler`` schedule of ``steps``, ``generator`` seeded
    ``stage_seeds``' itermix seed, ``options`` the itermix keywords, ``sampler_kwargs`` the
    sampler's own, and ``seed`` set to the same seed when ``seed_keyword``), ``cleanup`` (img2img of ``itermix`` at
    ``cleanup_denoise``; the next stage starts from it) and ``hires`` (img2img of the
    upscaled previous ``hires`` at ``hires_denoise``). ``denoise_mask``/``mixing_mask``
    (``(1, 1, h, w)`` in [0, 1]) are resized to each stage. With ``demofusion`` the itermix
    pass denoises through :class:`itermix_kdiff.demofusion.DemoFusionDenoiser` (windows of the
    base size at half-window stride, dilation factor = the stage's total scale: full
    DemoFusion, so the itermix result is brought back to ``base``'s mean and std per image, as
    DemoFusion does after each phase). ``progress(label)`` is called before each pass,
    ``on_stage(k, stage)`` after each stage. ``conditioning(size)``: the ``extra_args`` of a stage of ``size = (H, W)``
    (SDXL conditions on the picture's size); None: ``extra_args`` in every stage. Returns
    ``{"stages": [{"size",
    "upscaled", "itermix", "cleanup", "hires", "seconds": {...}}, ...], "seeds":
    stage_seeds(seed, stages), "sigmas": ...}``.
    """
    if scale < 2 or scale & (scale - 1):
        raise ValueError(f"scale must be a power of two >= 2, got {scale}")
    for name, d in (("cleanup_denoise", cleanup_denoise), ("hires_denoise", hires_denoise)):
        if not 0.0 <= d <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {d}")
    n_stages = scale.bit_length() - 1
    seeds = stage_seeds(seed, n_stages)
    sigmas = schedule_sigmas(model, scheduler, steps).to(base.device)
    sampler_kwargs = dict(sampler_kwargs or {})
    say = progress or (lambda label: None)
    stages: List[Dict[str, Any]] = []
    current = hires_prev = base
    for k in range(1, n_stages + 1):
        s = seeds[f"stage{k}"]
        size = (current.shape[-2] * 2, current.shape[-1] * 2)
        if conditioning is not None:
            extra_args = conditioning(size)
        seconds = {}
        t = time.perf_counter()
        up = upscale(current, size, upscale_method)
        seconds["upscale"] = time.perf_counter() - t
        opts = dict(options, generator=generator(s["itermix"], base.device))
        if denoise_mask is not None:
            opts["denoise_mask"] = resize_mask(denoise_mask, size).to(base.device)
        if mixing_mask is not None:
            opts["mixing_masks"] = resize_mask(mixing_mask, size).to(base.device)[None]
        kwargs = dict(sampler_kwargs)
        if seed_keyword and "seed" not in kwargs:
            kwargs["seed"] = s["itermix"]
        denoiser = model.denoiser
        if demofusion:
            h, w = base.shape[-2:]
            denoiser = DemoFusionDenoiser(model.denoiser, window=(h, w), stride=(h // 2, w // 2), factor=2 ** k,
                                          sigmas=sigmas, generator=generator(s["itermix"] + 1))
        say(f"stage {k} {size[1]}x{size[0]}: itermix")
        t = time.perf_counter()
        mixed = sampler(denoiser, up, sigmas, extra_args=extra_args, disable=disable, **kwargs, **opts)
        if demofusion:
            # Averaging windows and branches lowers the contrast; DemoFusion restores the base's
            # mean and std after every phase, else each stage starts greyer than the last.
            mixed = match_statistics(mixed, base)
        seconds["itermix"] = time.perf_counter() - t
        say(f"stage {k} {size[1]}x{size[0]}: cleanup")
        t = time.perf_counter()
        cleaned = img2img(model.denoiser, mixed, sigmas, cleanup_denoise, extra_args,
                          generator(s["cleanup"], base.device), disable)
        seconds["cleanup"] = time.perf_counter() - t
        say(f"stage {k} {size[1]}x{size[0]}: hires-fix")
        t = time.perf_counter()
        hires = img2img(model.denoiser, upscale(hires_prev, size, upscale_method), sigmas, hires_denoise,
                        extra_args, generator(s["hires"], base.device), disable)
        seconds["hires"] = time.perf_counter() - t
        stages.append({"size": size, "upscaled": up, "itermix": mixed, "cleanup": cleaned, "hires": hires,
                       "seconds": seconds})
        if on_stage is not None:
            on_stage(k, stages[-1])
        current, hires_prev = cleaned, hires
    return {"stages": stages, "seeds": seeds, "sigmas": sigmas}


# ---------------------------------------------------------------- images

def image_to_tensor(image: Any, name: str = "image") -> torch.Tensor:
    """A PIL image as a ``(3, H, W)`` float tensor in [-1, 1]. Accepts :data:`IMAGE_MODES`;
    anything else (CMYK, 16-bit, float, bilevel...) or a transparent pixel raises ValueError."""
    import numpy as np

    if image.mode not in IMAGE_MODES:
        raise ValueError(f"{name} has mode {image.mode!r}; accepted modes: {', '.join(IMAGE_MODES)} "
                         f"(convert it to RGB first)")
    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema()[0] < 255:
        raise ValueError(f"{name} has transparent pixels (mode {image.mode}); flatten it onto a background first")
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array.copy()).permute(2, 0, 1) / 127.5 - 1


def tensor_to_image(x: torch.Tensor) -> Any:
    """A ``(3, H, W)`` tensor in [-1, 1] as an 8-bit RGB PIL image (clamped, rounded)."""
    from PIL import Image

    array = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), "RGB")


@contextlib.contextmanager
def open_image(path: Path, name: str) -> Iterator[Any]:
    """The PIL image at ``path``, fully decoded: a missing file raises FileNotFoundError, a file
    PIL cannot read or a truncated one ValueError, each naming ``name`` and the path."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{name} not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            yield im
    except UnidentifiedImageError:
        raise ValueError(f"{name} {path} is not an image PIL can read") from None
    except (OSError, SyntaxError) as e:  # PIL's truncated or corrupt data
        raise ValueError(f"{name} {path} is damaged or truncated ({e})") from None


def load_images(paths: Sequence[PathLike], multiple: int = 1) -> torch.Tensor:
    """Read images into a ``(B, 3, H, W)`` batch in [-1, 1]. All must have the same size,
    with sides that are multiples of ``multiple`` (what the model's U-Net needs)."""
    tensors = []
    for p in paths:
        path = Path(p)
        with open_image(path, "input image") as im:
            tensors.append(image_to_tensor(im, f"input image {path}"))
        h, w = tensors[-1].shape[-2:]
        if h % multiple or w % multiple:
            raise ValueError(f"input image {path} is {w}x{h}; this model needs sides that are multiples "
                             f"of {multiple}: crop or resize it (e.g. to {max(multiple, w // multiple * multiple)}x"
                             f"{max(multiple, h // multiple * multiple)})")
        if tensors[0].shape != tensors[-1].shape:
            first_h, first_w = tensors[0].shape[-2:]
            raise ValueError(f"input images must all have one size: {paths[0]} is {first_w}x{first_h}, "
                             f"{path} is {w}x{h}")
    if not tensors:
        raise ValueError("no input image given")
    return torch.stack(tensors)


def load_mask(path: PathLike, name: str = "mask image") -> torch.Tensor:
    """A mask image (its luminance; white = 1) as a ``(1, 1, H, W)`` tensor in [0, 1];
    errors name it as ``name`` (e.g. the flag it came from)."""
    import numpy as np

    path = Path(path)
    with open_image(path, name) as im:
        array = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy())[None, None]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def comparison_sheet(columns: Sequence[Tuple[str, torch.Tensor]], size: Optional[Tuple[int, int]] = None,
                     zoom: int = 1, pad: int = 4) -> Any:
    """A labelled sheet: one column per ``(label, batch)``, one row per image of the batch.

    Every image is shown at ``size`` (default: the largest in ``columns``) times ``zoom``,
    resized with nearest neighbour so the pixels of a small image stay visible; labels are
    written above the columns. Returns an RGB PIL image of width
    ``pad + cols (w zoom + pad)`` and height ``label + rows (h zoom + pad)``.
    """
    from PIL import Image, ImageDraw

    if not columns:
        raise ValueError("columns must hold at least one (label, images) pair")
    rows = columns[0][1].shape[0]
    if any(images.shape[0] != rows for _, images in columns):
        raise ValueError("every column needs the same number of images")
    if size is None:
        size = max((tuple(images.shape[-2:]) for _, images in columns), key=lambda s: s[0] * s[1])
    h, w = size[0] * zoom, size[1] * zoom
    font_size = max(10, min(18, w // 9))
    label_h = font_size + 2 * pad
    sheet = Image.new("RGB", (pad + len(columns) * (w + pad), label_h + rows * (h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(font_size)
    for c, (label, images) in enumerate(columns):
        x0 = pad + c * (w + pad)
        draw.text((x0 + w // 2, label_h // 2), label, fill="black", font=font, anchor="mm")
        for r in range(rows):
            tile = tensor_to_image(images[r]).resize((w, h), Image.NEAREST)
            sheet.paste(tile, (x0, label_h + r * (h + pad)))
    return sheet
