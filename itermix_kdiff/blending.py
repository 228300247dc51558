"""Blending functions ``blend(noised, x, weight)`` (docs/algorithm.md A3).

``noised`` is the noised latent ``z'`` (the reference's ``l1``), ``x`` the running
latent (``l2``), ``weight`` the schedule value ``c1[i]``: weight 0 returns
``noised``, weight 1 returns ``x``. Each works per batch row on the flattened
``C*H*W`` vectors; ``noised`` must already have ``x``'s shape.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Union

import torch

Weight = Union[float, torch.Tensor]


def blend_addition(noised: torch.Tensor, x: torch.Tensor, weight: Weight) -> torch.Tensor:
    """A3 addition: ``(1 - w) * noised + w * x``."""
    return (1 - weight) * noised + weight * x


def _rows(t: torch.Tensor) -> torch.Tensor:
    # float32 internals: half-precision norms of a 16k-element row overflow.
    return t.reshape(t.shape[0], -1).float()


def _unit(rows: torch.Tensor) -> torch.Tensor:
    unit = rows / torch.norm(rows, dim=1, keepdim=True)
    return torch.nan_to_num(unit, nan=0.0)  # a zero row has no direction


def blend_slerp(noised: torch.Tensor, x: torch.Tensor, weight: Weight) -> torch.Tensor:
    """A3 slerp: ``omega = acos(<a, b>)`` of the unit rows, then
    ``sin((1 - w) omega) / sin(omega) * noised + sin(w omega) / sin(omega) * x``.

    Where the reference returns NaN (parallel rows, or a dot product rounding past
    +-1), the row falls back to :func:`blend_addition`. Computed in float32, returned
    in ``x``'s dtype.
    """
    l1, l2 = _rows(noised), _rows(x)
    omega = torch.acos((_unit(l1) * _unit(l2)).sum(1))
    so = torch.sin(omega)
    w = torch.as_tensor(weight, dtype=torch.float32, device=l1.device)
    c_noised = torch.sin((1.0 - w) * omega) / so
    c_x = torch.sin(w * omega) / so
    ok = torch.isfinite(c_noised) & torch.isfinite(c_x)
    c_noised = torch.where(ok, c_noised, 1 - w)
    c_x = torch.where(ok, c_x, w)
    out = c_noised.unsqueeze(1) * l1 + c_x.unsqueeze(1) * l2
    return out.reshape(x.shape).to(x.dtype)


def blend_norm_only(noised: torch.Tensor, x: torch.Tensor, weight: Weight) -> torch.Tensor:
    """A3 norm_only: ``noised + w * (x / |x| * |noised| - noised)``: turn ``noised``
    towards ``x``'s direction while keeping ``noised``'s norm. Float32 internals."""
    l1, l2 = _rows(noised), _rows(x)
    l2_unit = torch.nan_to_num(l2 / l2.norm(dim=1, keepdim=True), nan=0.0)
    out = l1 + weight * (l2_unit * l1.norm(dim=1, keepdim=True) - l1)
    return out.reshape(x.shape).to(x.dtype)


BLENDING_FUNCTIONS: Dict[str, Callable[[torch.Tensor, torch.Tensor, Weight], torch.Tensor]] = {
    "addition": blend_addition,
    "slerp": blend_slerp,
    "norm_only": blend_norm_only,
}


def masked_blend(blend: Callable[[torch.Tensor, torch.Tensor, Weight], torch.Tensor], noised: torch.Tensor,
                 x: torch.Tensor, weight: Weight, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``blend(noised, x, weight)``, limited by a mixing mask ``m`` (1 where the noised latent
    may be mixed in) when one is given: ``blend(noised, x, weight) m + x (1 - m)`` (B3)."""
    mixed = blend(noised, x, weight)
    if mask is None:
        return mixed
    mask = mask.to(x.device, x.dtype)
    return mixed * mask + x * (1 - mask)
