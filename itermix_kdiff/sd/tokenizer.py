"""CLIP's tokenizer from open-clip-torch's bundled BPE vocabulary (no tokenizer files needed).

Every SD text encoder reads the same 49 408-entry vocabulary: ``<|startoftext|>`` = 49406,
the prompt's tokens, ``<|endoftext|>`` = 49407, then padding to 77 positions. Long prompts keep
the first 75 tokens, with the end token at position 76. The padding differs by encoder:
OpenAI's CLIP-L (SD 1.x, SDXL's first encoder) was trained with the end token repeated after
the prompt, the OpenCLIP towers (SD 2.x, SDXL's second encoder) with 0. Id 0 is also the
token ``!``, so the padding is set by position (after the first end token), never by value.
"""

from __future__ import annotations

import functools
import os
from typing import List, Optional, Sequence, Union

import torch

CONTEXT_LENGTH = 77
START_TOKEN = 49406
END_TOKEN = 49407
VOCAB_SIZE = 49408

#: the padding id of each text-encoder layout
PAD_IDS = {"clip": END_TOKEN, "open_clip": 0}


@functools.lru_cache(maxsize=4)
def load_tokenizer(bpe_path: Optional[str] = None):
    """open_clip's ``SimpleTokenizer`` over ``bpe_path`` (default: the vocabulary open-clip-torch
    ships). Raises if the file is missing or does not give CLIP's exact 49 408 tokens, so a
    broken vocabulary never turns into a tokenizer that quietly maps prompts to garbage."""
    try:
        from open_clip.tokenizer import SimpleTokenizer, default_bpe
    except ImportError as e:
        raise ImportError("prompts need open-clip-torch for CLIP's vocabulary: pip install "
                          "'itermix_kdiff[sd]'") from e
    path = default_bpe() if bpe_path is None else os.fspath(bpe_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CLIP's BPE vocabulary {path!r} does not exist")
    tokenizer = SimpleTokenizer(path)
    ids = (tokenizer.vocab_size, tokenizer.sot_token_id, tokenizer.eot_token_id)
    if ids != (VOCAB_SIZE, START_TOKEN, END_TOKEN):
        raise ValueError(f"CLIP's BPE vocabulary {path!r} gives {ids[0]} tokens with start/end ids "
                         f"{ids[1]}/{ids[2]}; expected {VOCAB_SIZE} tokens with {START_TOKEN}/{END_TOKEN}")
    return tokenizer


def tokenize(prompts: Union[str, Sequence[str]], pad_id: int = END_TOKEN,
             bpe_path: Optional[str] = None) -> torch.Tensor:
    """Token ids ``(len(prompts), 77)``: start token, the prompt's BPE tokens (at most 75), end
    token, then ``pad_id`` (:data:`PAD_IDS`) in every later position."""
    prompts = as_prompts(prompts, "prompts")
    ids = load_tokenizer(bpe_path)(prompts, context_length=CONTEXT_LENGTH)
    end = (ids == END_TOKEN).int().argmax(dim=1)
    after_end = torch.arange(CONTEXT_LENGTH)[None] > end[:, None]
    return ids.masked_fill(after_end, pad_id)


def as_prompts(prompts: Union[str, Sequence[str]], name: str) -> List[str]:
    """``prompts`` as a list of strings, or a TypeError naming the argument ``name``."""
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, (list, tuple)) and prompts and all(isinstance(p, str) for p in prompts):
        return list(prompts)
    raise TypeError(f"{name} must be a string or a non-empty list of strings, got {prompts!r}")
