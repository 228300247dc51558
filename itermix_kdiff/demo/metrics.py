"""Image quality metrics for the demo model and the benchmarks (pure torch).

All functions take image batches ``(B, C, H, W)`` with values in [-1, 1] and
return one value per image (shape ``(B,)``) unless stated otherwise, so callers
average, compare or report percentiles as they need.

Definitions (used everywhere in the package, the tests and the benchmarks):

- **Edge sharpness** (``edge_sharpness``): with forward differences
  ``dx = x[..., :-1, 1:] - x[..., :-1, :-1]`` and ``dy = x[..., 1:, :-1] - x[..., :-1, :-1]``,
  the per-pixel gradient magnitude is ``g = sqrt(sum_c dx_c^2 + dy_c^2)`` (RGB norm,
  so equal-luminance colour edges count). Sharpness is the mean of the ``H``
  largest values of ``g`` in an ``H x W`` image: the strongest edge pixels, a
  count that grows with the image side as an outline does. A crisp
  one-pixel anti-aliased edge of contrast ``c`` scores about ``c``; blurring the
  same edge over ``w`` pixels scores about ``c / w``.
- **Grain** (``grain``): the standard deviation, over channels and interior pixels
  (one-pixel border excluded), of ``x - median3x3(x)`` (per-channel 3x3 median). Smooth
  gradients and straight edges leave no residual (the median of a planar 3x3
  neighbourhood is its centre); pixel noise, speckles and isolated dots do.
- **PSNR** (``psnr``): ``10 log10(range^2 / mean((a - b)^2))`` with ``range = 2``.
- **High-frequency energy** (``high_frequency_energy``): the fraction of the
  (mean-removed) power spectrum at radial frequency above ``cutoff`` times Nyquist.
"""

import math
from typing import Dict, Tuple, Union

import torch
import torch.nn.functional as F


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if not torch.is_tensor(images) or images.ndim != 4:
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """``sqrt(sum_c dx_c^2 + dy_c^2)`` from forward differences; shape ``(B, H-1, W-1)``."""
    _check_images(images)
    x = images.float()
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return torch.sqrt((dx ** 2 + dy ** 2).sum(dim=1))


def edge_sharpness(images: torch.Tensor) -> torch.Tensor:
    """Mean of the ``H`` largest gradient magnitudes of each ``H x W`` image; shape ``(B,)``."""
    g = gradient_magnitude(images).flatten(1)
    k = min(images.shape[-2], g.shape[1])
    return g.topk(k, dim=1).values.mean(dim=1)


def median3x3(images: torch.Tensor) -> torch.Tensor:
    """Per-channel 3x3 median of the interior pixels (no padding); shape ``(B, C, H-2, W-2)``."""
    _check_images(images)
    patches = images.float().unfold(2, 3, 1).unfold(3, 3, 1)
    return patches.flatten(-2).median(dim=-1).values


def grain(images: torch.Tensor) -> torch.Tensor:
    """``std(x - median3x3(x))`` over channels and interior pixels of each image; shape ``(B,)``."""
    residual = images.float()[..., 1:-1, 1:-1] - median3x3(images)
    return residual.flatten(1).std(dim=1)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """``10 log10(data_range^2 / mse)`` per image; shape ``(B,)``."""
    _check_images(a, "a")
    _check_images(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range ** 2 / mse.clamp(min=1e-12))


def downsample(images: torch.Tensor, size: Union[int, Tuple[int, int]]) -> torch.Tensor:
    """Anti-aliased resize to ``size x size`` (or ``size = (height, width)``): box average where
    both sides shrink by the same whole factor, else antialiased bilinear."""
    _check_images(images)
    out_h, out_w = (size, size) if isinstance(size, int) else size
    h, w = images.shape[-2:]
    if (h, w) == (out_h, out_w):
        return images.clone()
    if h % out_h == 0 and w % out_w == 0 and h // out_h == w // out_w:
        return F.avg_pool2d(images.float(), h // out_h).to(images.dtype)
    out = F.interpolate(images.float(), size=(out_h, out_w), mode="bilinear", align_corners=False,
                        antialias=True)
    return out.to(images.dtype)


def high_frequency_energy(images: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """Fraction of spectral power above ``cutoff`` x Nyquist (radial), per image; shape ``(B,)``.

    ``P = |FFT2(x - mean(x))|^2`` summed over channels; returns
    ``sum(P[r > cutoff]) / sum(P)`` with ``r = sqrt(fy^2 + fx^2) / 0.5`` in cycles per pixel.
    """
    _check_images(images)
    if not 0 < cutoff < math.sqrt(2):
        raise ValueError(f"cutoff must lie in (0, sqrt(2)), got {cutoff}")
    x = images.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2).sum(dim=1)
    fy = torch.fft.fftfreq(x.shape[-2], device=x.device)
    fx = torch.fft.fftfreq(x.shape[-1], device=x.device)
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / 0.5
    high = (power * (r > cutoff)).flatten(1).sum(dim=1)
    return high / power.flatten(1).sum(dim=1).clamp(min=1e-12)


def relative_gap(value: float, reference: float) -> float:
    """``|value - reference| / |reference|``: how far a figure is from the true renders'."""
    return abs(value - reference) / max(abs(reference), 1e-12)


def quality_report(samples: torch.Tensor, reference: torch.Tensor) -> Dict[str, float]:
    """Batch means of sharpness and grain for ``samples`` and ``reference`` and their relative gaps."""
    s_sharp = edge_sharpness(samples).mean().item()
    r_sharp = edge_sharpness(reference).mean().item()
    s_grain = grain(samples).mean().item()
    r_grain = grain(reference).mean().item()
    return {
        "sharpness": s_sharp, "sharpness_ref": r_sharp, "sharpness_gap": relative_gap(s_sharp, r_sharp),
        "grain": s_grain, "grain_ref": r_grain, "grain_gap": relative_gap(s_grain, r_grain),
    }
