"""Parameter names: diffusers/transformers models <-> the original single-file checkpoints.

A single-file Stable Diffusion checkpoint (what AUTOMATIC1111 and ComfyUI load) keeps the
CompVis/SGM module names: the UNet under ``model.diffusion_model.`` (``input_blocks``,
``middle_block``, ``output_blocks``), the VAE under ``first_stage_model.`` (``encoder.down.i``,
``decoder.up.i``, attention as 1x1 convolutions) and the text encoders under prefixes that
depend on the family (:data:`PREFIXES`): OpenAI's CLIP-L as transformers' own names, OpenCLIP
towers (SD 2.x, SDXL's second encoder) as open_clip's ``TextTransformer`` names with q, k and
v in one ``in_proj`` tensor.

Each component gets a *plan* built from the model's own parameter names: a list of
``(original name, model names, how)`` where ``how`` says how the tensors relate:

- ``"copy"``: the same tensor;
- ``"conv"``: a linear weight (C, C) stored as a 1x1 convolution (C, C, 1, 1);
- ``"qkv"``: the q, k and v tensors concatenated along dim 0;
- ``"transpose"``: the transposed matrix (OpenCLIP's ``text_projection``).

:func:`to_original` writes a state dict through the plan; :func:`from_original` reads one
back, checking that every name the model needs is there, that nothing unknown is left over,
and every shape. A name the plan does not know raises: nothing is mapped by guesswork.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Sequence, Set, Tuple

import torch

Plan = List[Tuple[str, Tuple[str, ...], str]]

FAMILIES = ("sd1", "sd2", "sdxl")

#: where each component lives in a single file, per family
PREFIXES: Dict[str, Dict[str, str]] = {
    "sd1": {"unet": "model.diffusion_model.", "vae": "first_stage_model.",
            "text_encoder": "cond_stage_model.transformer."},
    "sd2": {"unet": "model.diffusion_model.", "vae": "first_stage_model.",
            "text_encoder": "cond_stage_model.model."},
    "sdxl": {"unet": "model.diffusion_model.", "vae": "first_stage_model.",
             "text_encoder": "conditioner.embedders.0.transformer.",
             "text_encoder_2": "conditioner.embedders.1.model."},
}

#: the layout of each text encoder: OpenAI CLIP (transformers' names) or an OpenCLIP tower
TEXT_LAYOUTS: Dict[str, Dict[str, str]] = {
    "sd1": {"text_encoder": "clip"},
    "sd2": {"text_encoder": "open_clip"},
    "sdxl": {"text_encoder": "clip", "text_encoder_2": "open_clip"},
}


def _unknown(component: str, key: str) -> ValueError:
    return ValueError(f"{component}: no original-layout name for parameter {key!r}")


# ---------------------------------------------------------------- UNet

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
             "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _resnet_part(rest: str, names: Mapping[str, str], component: str, key: str) -> str:
    part, _, param = rest.partition(".")
    if part not in names:
        raise _unknown(component, key)
    return f"{names[part]}.{param}"


def _layers_per_block(keys: Sequence[str], component: str) -> int:
    """The resnets per down block, the same in every block (as in every SD UNet)."""
    counts: Dict[int, int] = {}
    for key in keys:
        m = re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.", key)
        if m:
            counts[int(m[1])] = max(counts.get(int(m[1]), 0), int(m[2]) + 1)
    if not counts or len(set(counts.values())) != 1:
        raise ValueError(f"{component}: expected the same number of resnets in every down block, "
                         f"got {counts or 'none'}")
    return next(iter(counts.values()))


def unet_plan(keys: Sequence[str]) -> Plan:
    """The UNet's plan (``L`` resnets per down block, ``L + 1`` per up block):
    ``down_blocks.i.resnets.j`` / ``.attentions.j`` -> ``input_blocks.{1 + i (L+1) + j}.0`` / ``.1``,
    ``down_blocks.i.downsamplers.0.conv`` -> ``input_blocks.{(i+1)(L+1)}.0.op``,
    ``mid_block`` -> ``middle_block.0/1/2``, ``up_blocks.i.resnets.j`` / ``.attentions.j`` ->
    ``output_blocks.{i (L+1) + j}.0`` / ``.1``, the upsampler in the level's last block after
    its attention (``.2.conv``) or its resnet (``.1.conv``)."""
    L = _layers_per_block(keys, "unet")
    up_attention = {int(m[1]) for k in keys if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    plan: Plan = []
    for key in keys:
        name = None
        for ours, theirs in _UNET_TOP.items():
            if key.startswith(ours + "."):
                name = theirs + key[len(ours):]
        if (m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)):
            index = 1 + int(m[1]) * (L + 1) + int(m[3])
            name = (f"input_blocks.{index}.0.{_resnet_part(m[4], _UNET_RESNET, 'unet', key)}"
                    if m[2] == "resnets" else f"input_blocks.{index}.1.{m[4]}")
        elif (m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key)):
            name = f"input_blocks.{(int(m[1]) + 1) * (L + 1)}.0.op.{m[2]}"
        elif (m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)):
            if m[1] == "attentions":
                name = f"middle_block.1.{m[3]}"
            else:
                name = f"middle_block.{2 * int(m[2])}.{_resnet_part(m[3], _UNET_RESNET, 'unet', key)}"
        elif (m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)):
            index = int(m[1]) * (L + 1) + int(m[3])
            name = (f"output_blocks.{index}.0.{_resnet_part(m[4], _UNET_RESNET, 'unet', key)}"
                    if m[2] == "resnets" else f"output_blocks.{index}.1.{m[4]}")
        elif (m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key)):
            level = int(m[1])
            name = f"output_blocks.{level * (L + 1) + L}.{2 if level in up_attention else 1}.conv.{m[2]}"
        if name is None:
            raise _unknown("unet", key)
        plan.append((name, (key,), "copy"))
    return plan


# ---------------------------------------------------------------- VAE

_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
               "conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_plan(keys: Sequence[str]) -> Plan:
    """The VAE's plan: ``encoder.down_blocks.i.resnets.j`` -> ``encoder.down.i.block.j``, the
    decoder's ``up_blocks.i`` -> ``decoder.up.{N-1-i}`` (the original counts from the lowest
    resolution), ``mid_block`` -> ``mid.block_1`` / ``mid.attn_1`` / ``mid.block_2``, and the
    attention's linears as 1x1 convolutions."""
    n_up = 1 + max((int(m[1]) for k in keys if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))), default=-1)
    plan: Plan = []
    for key in keys:
        how = "copy"
        m = re.match(r"(encoder|decoder)\.(.+)", key)
        if m is None:
            if not key.startswith(("quant_conv.", "post_quant_conv.")):
                raise _unknown("vae", key)
            plan.append((key, (key,), how))
            continue
        coder, rest = m[1], m[2]
        if rest.startswith(("conv_in.", "conv_out.")):
            name = rest
        elif rest.startswith("conv_norm_out."):
            name = "norm_out." + rest[len("conv_norm_out."):]
        elif (m := re.match(r"(down_blocks|up_blocks)\.(\d+)\.resnets\.(\d+)\.(.+)", rest)):
            level = int(m[2]) if m[1] == "down_blocks" else n_up - 1 - int(m[2])
            where = "down" if m[1] == "down_blocks" else "up"
            name = f"{where}.{level}.block.{m[3]}.{_resnet_part(m[4], _VAE_RESNET, 'vae', key)}"
        elif (m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", rest)):
            name = f"down.{m[1]}.downsample.conv.{m[2]}"
        elif (m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", rest)):
            name = f"up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif (m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", rest)):
            name = f"mid.block_{int(m[1]) + 1}.{_resnet_part(m[2], _VAE_RESNET, 'vae', key)}"
        elif (m := re.match(r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)", rest)):
            name = f"mid.attn_1.{_VAE_ATTENTION[m[1]]}.{m[2]}"
            how = "conv" if m[1] != "group_norm" and m[2] == "weight" else "copy"
        else:
            raise _unknown("vae", key)
        plan.append((f"{coder}.{name}", (key,), how))
    return plan


# ---------------------------------------------------------------- text encoders

def _strip_text_model(key: str) -> str:
    # transformers 5 stores CLIPTextModel without the `text_model.` level, and
    # CLIPTextModelWithProjection with it
    return key[len("text_model."):] if key.startswith("text_model.") else key


def clip_plan(keys: Sequence[str]) -> Plan:
    """OpenAI CLIP-L (SD 1.x, SDXL's first encoder): transformers' own names under ``text_model.``."""
    plan: Plan = []
    for key in keys:
        base = _strip_text_model(key)
        if not base.startswith(("embeddings.", "encoder.", "final_layer_norm.")):
            raise _unknown("text encoder (CLIP)", key)
        plan.append(("text_model." + base, (key,), "copy"))
    return plan


_OPEN_CLIP_LAYER = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                    "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def open_clip_plan(keys: Sequence[str]) -> Plan:
    """An OpenCLIP tower (SD 2.x, SDXL's second encoder): open_clip's ``TextTransformer`` names,
    q/k/v in ``attn.in_proj_weight``/``in_proj_bias``, ``text_projection`` transposed."""
    plan: Plan = []
    qkv_done: Set[Tuple[str, str]] = set()
    present = set(keys)
    for key in keys:
        base = _strip_text_model(key)
        prefix = key[:len(key) - len(base)]
        if base == "embeddings.token_embedding.weight":
            plan.append(("token_embedding.weight", (key,), "copy"))
        elif base == "embeddings.position_embedding.weight":
            plan.append(("positional_embedding", (key,), "copy"))
        elif base.startswith("final_layer_norm."):
            plan.append(("ln_final." + base[len("final_layer_norm."):], (key,), "copy"))
        elif key == "text_projection.weight":
            plan.append(("text_projection", (key,), "transpose"))
        elif (m := re.match(r"encoder\.layers\.(\d+)\.self_attn\.[qkv]_proj\.(weight|bias)", base)):
            if (m[1], m[2]) in qkv_done:
                continue
            qkv_done.add((m[1], m[2]))
            parts = tuple(f"{prefix}encoder.layers.{m[1]}.self_attn.{p}_proj.{m[2]}" for p in "qkv")
            missing = [p for p in parts if p not in present]
            if missing:
                raise ValueError(f"text encoder (OpenCLIP): {missing[0]!r} is missing beside {key!r}")
            plan.append((f"transformer.resblocks.{m[1]}.attn.in_proj_{m[2]}", parts, "qkv"))
        elif (m := re.match(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", base)) and m[2] in _OPEN_CLIP_LAYER:
            plan.append((f"transformer.resblocks.{m[1]}.{_OPEN_CLIP_LAYER[m[2]]}.{m[3]}", (key,), "copy"))
        else:
            raise _unknown("text encoder (OpenCLIP)", key)
    return plan


def plan_for(component: str, layout: str, keys: Sequence[str]) -> Plan:
    """The plan of one component: ``component`` is ``unet``, ``vae`` or a text encoder whose
    ``layout`` is ``clip`` or ``open_clip``."""
    keys = list(keys)
    if component == "unet":
        return unet_plan(keys)
    if component == "vae":
        return vae_plan(keys)
    if layout == "clip":
        return clip_plan(keys)
    if layout == "open_clip":
        return open_clip_plan(keys)
    raise ValueError(f"unknown text encoder layout {layout!r}; accepted: clip, open_clip")


# ---------------------------------------------------------------- writing and reading

def to_original(plan: Plan, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The original-layout tensors (unprefixed) of ``state_dict`` through ``plan``."""
    out: Dict[str, torch.Tensor] = {}
    for name, keys, how in plan:
        tensors = [state_dict[k] for k in keys]
        if how == "qkv":
            out[name] = torch.cat(tensors)
        elif how == "conv":
            out[name] = tensors[0].reshape(*tensors[0].shape, 1, 1)
        elif how == "transpose":
            out[name] = tensors[0].t().contiguous()
        else:
            out[name] = tensors[0]
    return out


def from_original(plan: Plan, tensors: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size],
                  component: str, ignored: Iterable[str] = ()) -> Dict[str, torch.Tensor]:
    """The model's state dict read from the original-layout ``tensors`` (unprefixed names).

    ``shapes`` are the model's own parameter shapes; ``ignored`` names in the file that the
    model does not use (skipped). Raises ValueError naming the component with every missing
    name, every unexpected one and every shape that does not fit.
    """
    ignored = set(ignored)
    wanted = {name for name, _, _ in plan}
    missing = [name for name, _, _ in plan if name not in tensors]
    unexpected = sorted(k for k in tensors if k not in wanted and k not in ignored)
    out: Dict[str, torch.Tensor] = {}
    wrong: List[str] = []
    for name, keys, how in plan:
        if name not in tensors:
            continue
        t = tensors[name]
        if how == "qkv":
            parts = t.chunk(3) if t.shape[0] % 3 == 0 else ()
        elif how == "conv":
            parts = (t.reshape(shapes[keys[0]]),) if t.numel() == shapes[keys[0]].numel() else ()
        elif how == "transpose":
            parts = (t.t().contiguous(),) if t.ndim == 2 else ()
        else:
            parts = (t,)
        if len(parts) != len(keys) or any(p.shape != shapes[k] for p, k in zip(parts, keys)):
            wrong.append(f"{name} {tuple(t.shape)} (the config wants "
                         f"{', '.join(str(tuple(shapes[k])) for k in keys)})")
            continue
        out.update(zip(keys, parts))
    if missing or unexpected or wrong:
        problems = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if items:
                shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
                problems.append(f"{label}: {shown}")
        raise ValueError(f"the {component} in the checkpoint does not match its config; " + "; ".join(problems))
    return out


def extra_open_clip_names(tensors: Mapping[str, torch.Tensor], n_layers: int, has_projection: bool) -> List[str]:
    """Names of an OpenCLIP tower that a model with ``n_layers`` layers leaves unused:
    ``logit_scale``, ``text_projection`` where the model has none, and SD 2.x's last
    resblock (SD 2.x conditions on the penultimate layer, so its model has one layer fewer)."""
    names = [k for k in ("logit_scale", "attn_mask") if k in tensors]
    if not has_projection and "text_projection" in tensors:
        names.append("text_projection")
    last = [k for k in tensors if k.startswith(f"transformer.resblocks.{n_layers}.")]
    beyond = any(k.startswith(f"transformer.resblocks.{n_layers + 1}.") for k in tensors)
    if last and not beyond and not has_projection:
        names.extend(last)
    return names


def split_prefixed(names: Iterable[str], prefix: str) -> List[str]:
    """The names under ``prefix``, unprefixed."""
    return [n[len(prefix):] for n in names if n.startswith(prefix)]


def component_prefix(family: str, component: str) -> str:
    if family not in PREFIXES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
    if component not in PREFIXES[family]:
        raise ValueError(f"family {family!r} has no component {component!r}; it has "
                         f"{', '.join(PREFIXES[family])}")
    return PREFIXES[family][component]
