"""Load k-diffusion models from their inference format (config JSON + safetensors).

``load_kdiffusion_model`` works for any model trained with k-diffusion
(``configs/*.json`` schema; the state dict that k-diffusion's
``convert_for_inference.py`` writes). It only reads safetensors files, never a
pickle. ``class_conditional_denoiser`` turns a class-conditional image_v1 model
(the demo model) into a k-diffusion denoiser callable with classifier-free
guidance; ``load_demo_model`` does both for the weights shipped in
``itermix_kdiff/demo/weights``.

k-diffusion and safetensors are imported inside the functions, so importing this
module costs only torch.
"""

import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

PathLike = Union[str, Path]

DEMO_WEIGHTS_DIR = Path(__file__).resolve().parent / "demo" / "weights"
DEMO_CONFIG = DEMO_WEIGHTS_DIR / "shapes_32.json"
DEMO_CHECKPOINT = DEMO_WEIGHTS_DIR / "shapes_32.safetensors"


def check_safetensors(path: Path) -> None:
    """Refuse anything that is not a whole safetensors file, reading only its header: an 8-byte
    little-endian header size, a JSON header of tensor entries, and data covering every
    entry's ``data_offsets`` (a truncated download or a forged header fails here, with the
    file's name, instead of deep inside the loader)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    not_one = (f"checkpoint must be a .safetensors file; {path} is not one "
               "(pickled checkpoints such as .ckpt/.pt/.pth are refused: they can run code)")
    with open(path, "rb") as f:
        head = f.read(9)
        header_len = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
        if len(head) < 9 or head[8:9] != b"{" or header_len + 8 > size:
            raise ValueError(not_one)
        f.seek(8)
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"checkpoint {path} has a corrupt safetensors header") from None
    data_size = size - 8 - header_len
    for name, entry in header.items() if isinstance(header, dict) else ():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ValueError(f"checkpoint {path} has a corrupt safetensors header (tensor {name!r})")
        if offsets[1] > data_size or not 0 <= offsets[0] <= offsets[1]:
            raise ValueError(f"checkpoint {path} is truncated: tensor {name!r} ends at byte {offsets[1]} of "
                             f"the data, which holds {data_size} bytes")
    if not isinstance(header, dict):
        raise ValueError(f"checkpoint {path} has a corrupt safetensors header")


def read_safetensors_config(checkpoint: PathLike) -> Optional[Dict[str, Any]]:
    """The ``config`` entry of a safetensors file's metadata (k-diffusion's convention), or None."""
    from safetensors import safe_open

    path = Path(checkpoint)
    check_safetensors(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "config" not in metadata:
        return None
    try:
        return json.loads(metadata["config"])
    except json.JSONDecodeError as e:
        raise ValueError(f"the 'config' metadata of checkpoint {path} is not valid JSON: {e}") from None


def load_kdiffusion_model(config: Union[PathLike, Dict[str, Any], None], checkpoint: PathLike, *,
                          device: Union[str, torch.device] = "cpu",
                          dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Build a k-diffusion model from ``config`` and load ``checkpoint`` (safetensors only).

    ``config`` is a path to a JSON file in k-diffusion's ``configs/*.json`` schema, the
    parsed dict, or None to read it from the checkpoint's metadata. The model is built
    with ``k_diffusion.config.make_model`` and wrapped with ``make_denoiser_wrapper``
    (e.g. ``k_diffusion.layers.Denoiser``), so the result is a denoiser
    ``model(x, sigma, **extra) -> denoised``; it is returned in eval mode, without
    gradients, on ``device`` in ``dtype``. The state dict is the inner model's (what
    k-diffusion's ``convert_for_inference.py`` saves) and must match exactly.

    Raises ValueError for a checkpoint that is not safetensors (pickles are never
    loaded) or a missing config, FileNotFoundError for a missing file.
    """
    import k_diffusion as K
    import safetensors.torch

    path = Path(checkpoint)
    check_safetensors(path)
    if config is None:
        config = read_safetensors_config(path)
        if config is None:
            raise ValueError(f"config is None and {path} carries no 'config' metadata; pass the config JSON")
    elif isinstance(config, (str, Path)):
        config = json.loads(Path(config).read_text())
    elif not isinstance(config, dict):
        raise TypeError(f"config must be a path, a dict or None, got {type(config).__name__}")
    config = K.config.load_config(config)
    inner = K.config.make_model(config)
    state = safetensors.torch.load_file(str(path), device="cpu")
    inner.load_state_dict(state, strict=True)
    model = K.config.make_denoiser_wrapper(config)(inner)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def class_conditional_denoiser(model: Callable, num_classes: int) -> Callable:
    """Denoiser with classifier-free guidance for a model conditioned by a one-hot ``mapping_cond``.

    Returns ``denoiser(x, sigma, class_labels=None, cond_scale=1.0) -> denoised``.
    Extra args (pass them in a sampler's ``extra_args``):

    - ``class_labels``: LongTensor ``(B,)`` of class indices in ``[0, num_classes)``, or
      None for unconditional samples (``mapping_cond`` all zeros, as in training's
      condition dropout).
    - ``cond_scale``: guidance scale ``s``; the output is
      ``D_u + s * (D_c - D_u)`` where ``D_c``/``D_u`` are the conditional/unconditional
      denoisers, evaluated in one batch. ``s = 1`` runs the conditional model alone.

    Works with a bare ``ImageDenoiserModelV1`` or one inside k-diffusion's
    ``KarrasAugmentWrapper`` (which prepends its 9 zero augmentation dims itself).
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")

    def denoiser(x: torch.Tensor, sigma: torch.Tensor, class_labels: Optional[torch.Tensor] = None,
                 cond_scale: float = 1.0) -> torch.Tensor:
        zeros = x.new_zeros([x.shape[0], num_classes])
        if class_labels is None:
            return model(x, sigma, mapping_cond=zeros)
        labels = torch.as_tensor(class_labels, device=x.device).long().expand(x.shape[0])
        if bool(((labels < 0) | (labels >= num_classes)).any()):
            raise ValueError(f"class_labels must lie in [0, {num_classes})")
        cond = torch.nn.functional.one_hot(labels, num_classes).to(x.dtype)
        if cond_scale == 1.0:
            return model(x, sigma, mapping_cond=cond)
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).expand(x.shape[0])
        out = model(torch.cat([x, x]), torch.cat([sigma, sigma]), mapping_cond=torch.cat([zeros, cond]))
        uncond, condout = out.chunk(2)
        return uncond + (condout - uncond) * cond_scale

    return denoiser


def load_demo_model(*, device: Union[str, torch.device] = "cpu",
                    dtype: torch.dtype = torch.float32) -> Tuple[Callable, Dict[str, Any]]:
    """The shipped demo model: ``(denoiser, config)`` with ``denoiser`` from ``class_conditional_denoiser``.

    ``config["model"]`` gives ``sigma_min``/``sigma_max``/``input_size``,
    ``config["dataset"]["classes"]`` the class names (``itermix_kdiff.demo.shapes.CLASSES``).
    """
    config = json.loads(DEMO_CONFIG.read_text())
    model = load_kdiffusion_model(config, DEMO_CHECKPOINT, device=device, dtype=dtype)
    return class_conditional_denoiser(model, config["dataset"]["num_classes"]), config
