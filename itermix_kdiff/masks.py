"""Denoise masks: repaint where the mask is 1, keep the clean latent where it is 0
(docs/algorithm.md A4; inpainting, and differential diffusion through a mask function)."""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch

from .noised import NoisedLatents, latent_at


def check_mask_values(name: str, mask: torch.Tensor) -> None:
    """Mask values must lie in [0, 1] (a NaN or a 5 would silently give NaN or a wrong picture)."""
    values = mask if mask.dtype == torch.bool or mask.is_floating_point() else mask.float()
    if values.dtype != torch.bool and not ((values >= 0) & (values <= 1)).all():  # NaN fails both
        raise ValueError(f"{name} must hold values in [0, 1] (1 = use, 0 = keep), got values from "
                         f"{values.min().item():g} to {values.max().item():g}"
                         f"{' and NaN' if torch.isnan(values).any() else ''}")


def check_mask(name: str, mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A mask for latents of ``shape``: a tensor that broadcasts to it, with values in [0, 1];
    returned as given."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(mask).__name__}")
    try:
        ok = torch.broadcast_shapes(mask.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {tuple(mask.shape)} does not broadcast to the latent's shape {tuple(shape)}")
    check_mask_values(name, mask)
    return mask


def denoise_mask_at(sigma: torch.Tensor, mask: Optional[torch.Tensor], mask_fn,
                    shape: torch.Size) -> Optional[torch.Tensor]:
    """``M'(sigma)``: the denoise mask, through ``mask_fn(sigma, mask)`` when one is given (A4),
    whose result is checked as the mask was."""
    if mask is None or mask_fn is None:
        return mask
    return check_mask("denoise_mask_fn's result", mask_fn(sigma.reshape(1).to(mask.device), mask), shape)


def mask_before(x: torch.Tensor, z: torch.Tensor, x0: torch.Tensor,
                mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """A4 ``mask_before``: ``x M' + x0 (1 - M')`` and the same for ``z'``."""
    if mask is None:
        return x, z
    mask = mask.to(x.device, x.dtype)
    keep = x0 * (1. - mask)
    return x * mask + keep, z * mask + keep


def mask_after(x: torch.Tensor, x0: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """A4 ``mask_after``: ``x M' + x0 (1 - M')``."""
    if mask is None:
        return x
    mask = mask.to(x.device, x.dtype)
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
                mask = check_mask("denoise_mask_fn's result", mask_fn(sigmas[k].reshape(1).to(mask.device), mask),
                                  shape)
            z_k = z_k * mask.to(z_k.device, z_k.dtype)  # a float64 or CPU mask must not change the run
        yield z_k
