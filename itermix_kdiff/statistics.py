"""Matching a latent's mean and standard deviation to another's (docs/algorithm.md A6, B7)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch


def match_statistics(x: torch.Tensor, like: torch.Tensor, dims: Optional[Tuple[int, ...]] = None) -> torch.Tensor:
    """``(x - mean(x)) / std(x) * std(like) + mean(like)``, the means and (unbiased) standard
    deviations taken over ``dims``: by default per batch row over (C, H, W), as DemoFusion
    re-normalises each phase's result (B7; it takes them over the whole tensor, which is the
    same for one image); ``normalize_on_mean`` (A6) takes them per channel, over (H, W).
    Where ``x`` is constant the result is ``like``'s mean."""
    dims = tuple(range(1, x.ndim)) if dims is None else dims
    x_mean, x_std = x.mean(dims, keepdim=True), x.std(dims, keepdim=True)
    # a constant x has no spread to rescale: it becomes like's mean instead of 0 / 0 = NaN
    x_std = torch.where(x_std > 0, x_std, torch.ones_like(x_std))
    return (x - x_mean) / x_std * like.std(dims, keepdim=True) + like.mean(dims, keepdim=True)
