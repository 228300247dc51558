"""Matching a latent's mean and standard deviation to another's (docs/algorithm.md A6, B7)."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch


def match_statistics(x: torch.Tensor, like: torch.Tensor, dims: Optional[Tuple[int, ...]] = None) -> torch.Tensor:
    """``(x - mean(x)) / std(x) * std(like) + mean(like)``, the means and (unbiased) standard
    deviations taken over ``dims``: by default per batch row over (C, H, W), as DemoFusion
    re-normalises each phase's result (B7; it takes them over the whole tensor, which is the
    same for one image); ``normalize_on_mean`` (A6) takes them per channel, over (H, W).
    Where ``x`` is constant, or holds one element over ``dims``, the result is ``like``'s mean."""
    dims = tuple(range(1, x.ndim)) if dims is None else dims
    x_mean, x_std = x.mean(dims, keepdim=True), spread(x, dims)
    # a constant x has no spread to rescale: it becomes like's mean instead of 0 / 0 = NaN
    x_std = torch.where(x_std > 0, x_std, torch.ones_like(x_std))
    return (x - x_mean) / x_std * spread(like, dims) + like.mean(dims, keepdim=True)


def spread(t: torch.Tensor, dims: Tuple[int, ...]) -> torch.Tensor:
    """The unbiased standard deviation over ``dims``; 0 for a single element (whose unbiased
    estimate is 0 / 0 = NaN: a 1x1 latent under normalize_on_mean)."""
    if math.prod(t.shape[d] for d in dims) < 2:
        return torch.zeros_like(t.mean(dims, keepdim=True))
    return t.std(dims, keepdim=True)
