"""Prompt -> the UNet's text conditioning, per family.

- SD 1.x: context (B, 77, 768) is CLIP-L's last layer after its final layer norm;
  ``clip_skip = k`` takes layer ``-k`` instead, through the final layer norm (AUTOMATIC1111's
  "clip skip": 1 = last). No pooled embedding.
- SD 2.x: the OpenCLIP tower's penultimate layer after ``ln_final``: the output of the
  23-layer model the file's 24 layers load into. No pooled embedding.
- SDXL: CLIP-L's and OpenCLIP-bigG's penultimate layers, concatenated, no final layer norm;
  pooled: bigG's projected end-token embedding (B, 1280).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple, Union

import torch

from .tokenizer import PAD_IDS, tokenize

Prompts = Union[str, Sequence[str]]


def _final_layer_norm(model) -> torch.nn.Module:
    # transformers 5 keeps CLIPTextModel's layers at the top level, CLIPTextModelWithProjection under text_model
    return getattr(model, "text_model", model).final_layer_norm


def _ids(model, prompts: Prompts, layout: str) -> torch.Tensor:
    return tokenize(prompts, PAD_IDS[layout]).to(model.device)


@torch.no_grad()
def encode_prompts(family: str, text_encoders: Mapping[str, torch.nn.Module], prompts: Prompts,
                   clip_skip: int = 1) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(context, pooled)`` for ``prompts`` (``pooled`` is None except for SDXL)."""
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or clip_skip < 1:
        raise ValueError(f"clip_skip must be an int >= 1 (1 = the last layer), got {clip_skip!r}")
    if family != "sd1" and clip_skip != 1:
        raise ValueError(f"clip_skip applies to SD 1.x; {family} always conditions on its penultimate layer")
    if family == "sd1":
        model = text_encoders["text_encoder"]
        out = model(_ids(model, prompts, "clip"), output_hidden_states=clip_skip > 1)
        if clip_skip == 1:
            return out.last_hidden_state, None
        if clip_skip >= len(out.hidden_states):
            raise ValueError(f"clip_skip must be below {len(out.hidden_states)} for this text encoder, got {clip_skip}")
        return _final_layer_norm(model)(out.hidden_states[-clip_skip]), None
    if family == "sd2":
        model = text_encoders["text_encoder"]
        return model(_ids(model, prompts, "open_clip")).last_hidden_state, None
    if family == "sdxl":
        first, second = text_encoders["text_encoder"], text_encoders["text_encoder_2"]
        a = first(_ids(first, prompts, "clip"), output_hidden_states=True)
        b = second(_ids(second, prompts, "open_clip"), output_hidden_states=True)
        return torch.cat([a.hidden_states[-2], b.hidden_states[-2]], dim=-1), b.text_embeds
    raise ValueError(f"family must be one of sd1, sd2, sdxl; got {family!r}")
