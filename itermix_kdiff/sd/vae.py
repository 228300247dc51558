"""Pixels <-> latents through the SD VAE, with the family's scaling factor.

``encode``: images in [-1, 1] -> ``scaling_factor * z`` with z the posterior's mode (the
deterministic encode) or a sample drawn from a ``torch.Generator``. ``decode``: latents ->
``vae.decode(latents / scaling_factor)`` clamped to [-1, 1], whole or in overlapping tiles
(memory grows with the tile, not the image; the tiles are blended with linear ramps, so the
seams are soft but the result differs slightly from a whole decode: each tile normalises its
own activations). The scaling factor is 0.18215 for SD 1.x/2.x and 0.13025 for SDXL (the VAE
config's ``scaling_factor``).
"""

from __future__ import annotations

from typing import List, Optional

import torch


def _check_finite(name: str, x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")


@torch.no_grad()
def encode(vae, images: torch.Tensor, sample: bool = False,
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Latents (B, 4, H/8, W/8), float32, of ``images`` (B, 3, H, W) in [-1, 1]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 \
            or not images.is_floating_point():
        raise TypeError("images must be a floating-point tensor (B, 3, H, W) in [-1, 1]")
    _check_finite("images", images)
    if images.min() < -1.001 or images.max() > 1.001:
        raise ValueError(f"images must lie in [-1, 1], got [{images.min().item():.3g}, {images.max().item():.3g}] "
                         f"(map [0, 1] pixels with 2 * x - 1)")
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    if images.shape[-1] % scale or images.shape[-2] % scale:
        raise ValueError(f"image height and width must be multiples of {scale}, got {tuple(images.shape[-2:])}")
    posterior = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    z = posterior.sample(generator) if sample else posterior.mode()
    return z.float() * vae.config.scaling_factor


def _ramp(length: int, ramp: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Weights over one tile axis: 1 inside, falling linearly (but staying > 0) over ``ramp``
    pixels at both ends."""
    i = torch.arange(length, device=device, dtype=dtype)
    edge = torch.minimum(i + 0.5, length - 0.5 - i) / max(ramp, 1)
    return edge.clamp(max=1.0)


def _starts(length: int, tile: int, stride: int) -> List[int]:
    if length <= tile:
        return [0]
    return list(range(0, length - tile, stride)) + [length - tile]


@torch.no_grad()
def decode(vae, latents: torch.Tensor, tile_size: Optional[int] = None,
           tile_overlap: Optional[int] = None) -> torch.Tensor:
    """Images (B, 3, 8h, 8w), float32 in [-1, 1], of ``latents`` (B, 4, h, w).

    ``tile_size`` (pixels, a multiple of 8): decode tiles of that size overlapping by
    ``tile_overlap`` pixels (default a quarter of the tile); None decodes the whole latent at
    once."""
    channels = vae.config.latent_channels
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or latents.shape[1] != channels \
            or not latents.is_floating_point():
        raise TypeError(f"latents must be a floating-point tensor (B, {channels}, h, w)")
    _check_finite("latents", latents)
    z = (latents / vae.config.scaling_factor).to(vae.device, vae.dtype)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    if tile_size is None:
        return vae.decode(z).sample.float().clamp(-1, 1)
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < scale or tile_size % scale:
        raise ValueError(f"tile_size must be a positive multiple of {scale} pixels, got {tile_size!r}")
    if tile_overlap is None:
        tile_overlap = tile_size // 4 // scale * scale
    if isinstance(tile_overlap, bool) or not isinstance(tile_overlap, int) or not 0 <= tile_overlap < tile_size \
            or tile_overlap % scale:
        raise ValueError(f"tile_overlap must be a multiple of {scale} in [0, tile_size), got {tile_overlap!r}")
    tile, stride = tile_size // scale, (tile_size - tile_overlap) // scale
    b, _, h, w = z.shape
    if h <= tile and w <= tile:
        return vae.decode(z).sample.float().clamp(-1, 1)
    out = torch.zeros(b, 3, h * scale, w * scale, device=z.device)
    weight = torch.zeros(1, 1, h * scale, w * scale, device=z.device)
    for top in _starts(h, tile, stride):
        for left in _starts(w, tile, stride):
            part = vae.decode(z[:, :, top:top + tile, left:left + tile]).sample.float()
            ph, pw = part.shape[-2:]
            wy = _ramp(ph, tile_overlap, torch.float32, z.device)
            wx = _ramp(pw, tile_overlap, torch.float32, z.device)
            wt = (wy[:, None] * wx[None, :])[None, None]
            y, x = top * scale, left * scale
            out[:, :, y:y + ph, x:x + pw] += part * wt
            weight[:, :, y:y + ph, x:x + pw] += wt
    return (out / weight).clamp(-1, 1)
