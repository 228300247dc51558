"""Denoise masks: repaint where the mask is 1, keep the clean latent where it is 0
(docs/algorithm.md A4; inpainting, and differential diffusion through a mask function)."""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch

from .noised import NoisedLatents, latent_at


def denoise_mask_at(sigma: torch.Tensor, mask: Optional[torch.Tensor], mask_fn) -> Optional[torch.Tensor]:
    """``M'(sigma)``: the denoise mask, through ``mask_fn(sigma, mask)`` when one is given (A4)."""
    if mask is None or mask_fn is None:
        return mask
    return mask_fn(sigma.reshape(1).to(mask.device), mask)


def mask_before(x: torch.Tensor, z: torch.Tensor, x0: torch.Tensor,
                mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """A4 ``mask_before``: ``x M' + x0 (1 - M')`` and the same for ``z'``."""
    if mask is None:
        return x, z
    mask = mask.to(x.dtype)
    keep = x0 * (1. - mask)
    return x * mask + keep, z * mask + keep


def mask_after(x: torch.Tensor, x0: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """A4 ``mask_after``: ``x M' + x0 (1 - M')``."""
    if mask is None:
        return x
    mask = mask.to(x.dtype)
    return x * mask + x0 * (1. - mask)


def masked_latents(z: NoisedLatents, shape: torch.Size, sigmas: torch.Tensor, start: int,
                   mask: Optional[torch.Tensor], mask_fn) -> Iterator[torch.Tensor]:
    """The noised latents ``z'_k`` for steps ``start .. n-1`` (``z`` covers ``sigmas[start:]``),
    each multiplied by the denoise mask, as the reference does before its loop. The mask
    function is applied to the previous step's mask rather than to the original one, so with
    a ``mask_fn`` the masks compound (the reference's code; docs/algorithm.md A4)."""
    for k in range(start, len(sigmas) - 1):
        z_k = latent_at(z, k - start, shape)
        if mask is not None:
            if mask_fn is not None:
                mask = mask_fn(sigmas[k].reshape(1).to(mask.device), mask)
            z_k = z_k * mask
        yield z_k
