"""Single-file checkpoints in the original layout: what a file is, reading it, writing one.

:func:`checkpoint_family` tells SD 1.x, SD 2.x and SDXL apart from the safetensors header
alone (no tensor is read) and refuses what the package cannot run: pickles (``.ckpt``),
inpainting and instruct-pix2pix UNets, the SDXL refiner, and any other layout.
:func:`read_components` reads each component's tensors into the diffusers/transformers names
(:mod:`itermix_kdiff.sd.layout`); :func:`write_checkpoint` writes diffusers/transformers
models as one original-layout file, the way the original training code saved them.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import torch

from . import layout

PathLike = Union[str, os.PathLike]

# one key that only each family has
_FAMILY_KEYS = (
    ("sdxl", "conditioner.embedders.1.model.positional_embedding"),
    ("sd2", "cond_stage_model.model.token_embedding.weight"),
    ("sd1", "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"),
)
_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
# SD 2.x: where this bias varies a lot the model predicts v (ComfyUI's rule; unverified here)
_SD2_V_PROBE = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"


def read_header(path: PathLike) -> Dict[str, dict]:
    """The safetensors header of ``path``: ``{name: {"dtype", "shape", "data_offsets"}}``.

    Raises ValueError for a pickle (``.ckpt``/``.pt``/``.bin``, never loaded: unpickling runs
    code) or anything else that is not a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        text = f.read(size) if 2 <= size <= path.stat().st_size - 8 else b""
    try:
        header = json.loads(text) if text[:1] == b"{" else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict):
        if head[:2] == b"PK" or head[:1] == b"\x80":
            raise ValueError(f"{path} is a pickle checkpoint (a zip or pickle stream); pickles can run code "
                             f"when loaded, so only .safetensors files are read: convert it to safetensors first")
        raise ValueError(f"{path} is not a safetensors file (no valid header)")
    header.pop("__metadata__", None)
    return header


def weights_dtype(header: Mapping[str, dict]) -> torch.dtype:
    """The dtype of the UNet's weights in a checkpoint header (float32 where unknown)."""
    names = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    return names.get(header.get(_UNET_IN, {}).get("dtype"), torch.float32)


def checkpoint_family(path: PathLike, header: Optional[Mapping[str, dict]] = None) -> str:
    """``"sd1"``, ``"sd2"`` or ``"sdxl"`` from the file's key names, or a ValueError saying what
    the file is instead (an inpainting or refiner checkpoint, a LoRA, an unknown layout)."""
    header = read_header(path) if header is None else header
    keys = set(header)
    if "conditioner.embedders.0.model.positional_embedding" in keys and \
            "conditioner.embedders.1.model.positional_embedding" not in keys:
        raise ValueError(f"{path} is an SDXL refiner (one OpenCLIP encoder, no CLIP-L); only SDXL base "
                         f"checkpoints are supported")
    family = next((f for f, key in _FAMILY_KEYS if key in keys), None)
    if family is None or _UNET_IN not in keys:
        hint = ""
        if any(k.startswith(("lora_", "lora_unet_")) or ".lora_" in k for k in keys):
            hint = " (it looks like a LoRA, which patches a checkpoint rather than being one)"
        elif any(k.startswith(("down_blocks.", "unet.", "text_encoder.")) for k in keys):
            hint = " (it looks like a diffusers-format file: pass the diffusers folder instead)"
        elif any(k.startswith("model.diffusion_model.") for k in keys):
            hint = (" (it has a diffusion model but no SD 1.x / 2.x / SDXL text encoder: SD3, Flux and others "
                    "are not supported)")
        raise ValueError(f"{path}: unknown checkpoint layout{hint}; expected a single-file SD 1.x, SD 2.x or "
                         f"SDXL checkpoint with the keys {', '.join(k for _, k in _FAMILY_KEYS)} (one of) "
                         f"and {_UNET_IN}")
    in_channels = header[_UNET_IN]["shape"][1]
    if in_channels != 4:
        kind = {9: "an inpainting", 8: "an instruct-pix2pix"}.get(in_channels, "a")
        raise ValueError(f"{path} is {kind} checkpoint (UNet with {in_channels} input channels); only "
                         f"text-to-image checkpoints with 4 latent channels are supported")
    return family


def guess_prediction_type(path: PathLike, family: str, header: Optional[Mapping[str, dict]] = None) -> str:
    """``"epsilon"`` or ``"v_prediction"`` for a file whose keys do not say (SD 2.x comes in both).

    SDXL: v only with a ``v_pred`` key. SD 2.x: v when the standard deviation of
    ``output_blocks.11.1.transformer_blocks.0.norm1.bias`` exceeds 0.09 (ComfyUI's rule for the
    768-v models; not checked on real weights here, so pass ``prediction_type`` when known)."""
    header = read_header(path) if header is None else header
    if family == "sdxl":
        return "v_prediction" if "v_pred" in header else "epsilon"
    if family != "sd2":
        return "epsilon"
    if _SD2_V_PROBE not in header:
        return "v_prediction"
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        bias = f.get_tensor(_SD2_V_PROBE).float()
    return "v_prediction" if bias.std().item() > 0.09 else "epsilon"


def read_components(path: PathLike, family: str, models: Mapping[str, torch.nn.Module],
                    device: Union[str, torch.device] = "cpu") -> Dict[str, Dict[str, torch.Tensor]]:
    """Each component's state dict, read from ``path`` in the models' own names.

    ``models`` maps component names to models of the right configuration (parameters may be on
    the meta device; only names and shapes are used). Tensors are read on ``device`` in the
    file's dtype. Raises ValueError naming the component and the names that do not fit.
    """
    from safetensors import safe_open

    out: Dict[str, Dict[str, torch.Tensor]] = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        names = list(f.keys())
        for component, model in models.items():
            prefix = layout.component_prefix(family, component)
            text_layout = layout.TEXT_LAYOUTS[family].get(component, "")
            shapes = {k: v.shape for k, v in model.state_dict().items()}
            plan = layout.plan_for(component, text_layout, list(shapes))
            present = layout.split_prefixed(names, prefix)
            if not present:
                raise ValueError(f"{path}: the {component} is missing (no tensor under {prefix!r})")
            tensors = {k: f.get_tensor(prefix + k) for k in present}
            ignored: List[str] = []
            if text_layout == "clip":
                ignored.append("text_model.embeddings.position_ids")
            elif text_layout == "open_clip":
                layers = model.config.num_hidden_layers
                ignored.extend(layout.extra_open_clip_names(tensors, layers, "text_projection.weight" in shapes))
            try:
                out[component] = layout.from_original(plan, tensors, shapes, component, ignored)
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from None
    return out


def write_checkpoint(path: PathLike, family: str, components: Mapping[str, object],
                     extra: Optional[Mapping[str, torch.Tensor]] = None, dtype: Optional[torch.dtype] = None,
                     metadata: Optional[Mapping[str, str]] = None) -> Dict[str, int]:
    """Write diffusers/transformers models as ONE original-layout safetensors file.

    ``components``: ``unet``, ``vae``, ``text_encoder`` (and ``text_encoder_2`` for SDXL),
    each a model or its state dict. CLIP-L towers get the ``position_ids`` the original files
    carry. ``extra``: more tensors under their full original names, written as given (e.g.
    the 24th OpenCLIP layer and ``text_projection`` that SD 2.x files hold although the model
    never uses them). ``dtype`` casts floating-point tensors. Returns the number of tensors
    written per component (``extra`` counted as ``"extra"``).
    """
    expected = set(layout.PREFIXES[family]) if family in layout.PREFIXES else None
    if expected is None:
        raise ValueError(f"family must be one of {', '.join(layout.FAMILIES)}; got {family!r}")
    if set(components) != expected:
        raise ValueError(f"components for {family} must be exactly {', '.join(sorted(expected))}; "
                         f"got {', '.join(sorted(components))}")
    tensors: Dict[str, torch.Tensor] = {}
    counts: Dict[str, int] = {}
    for component, model in components.items():
        state = model.state_dict() if isinstance(model, torch.nn.Module) else dict(model)
        text_layout = layout.TEXT_LAYOUTS[family].get(component, "")
        original = layout.to_original(layout.plan_for(component, text_layout, list(state)), state)
        if text_layout == "clip":
            width = original["text_model.embeddings.position_embedding.weight"].shape[0]
            original["text_model.embeddings.position_ids"] = torch.arange(width)[None]
        prefix = layout.PREFIXES[family][component]
        tensors.update({prefix + k: v for k, v in original.items()})
        counts[component] = len(original)
    for name, value in (extra or {}).items():
        if name in tensors:
            raise ValueError(f"extra tensor {name!r} is already written from the models")
        tensors[name] = value
    counts["extra"] = len(extra or {})
    from safetensors.torch import save_file

    def prepare(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        return t.contiguous()

    save_file({k: prepare(v) for k, v in tensors.items()}, str(path),
              metadata={"format": "pt", **(metadata or {})})
    return counts
