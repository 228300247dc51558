"""Iterative mixing where a k-diffusion script would call ``sample_euler``.

A self-contained run with no weights: the denoiser is the exact posterior mean of a
Gaussian "data set" centred on a blurred 2x upscale of a small picture, wrapped the
way k-diffusion denoisers are called (``model(x, sigma * s_in, **extra_args)``).
It writes the input, the plain upscale and the itermix result as PNGs.
"""

from __future__ import annotations

import argparse
import pathlib

import k_diffusion as K
import torch
import torch.nn.functional as F
from PIL import Image

from itermix_kdiff import sample_itermix_euler


class GaussianPosteriorDenoiser(torch.nn.Module):
    """D(x, sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2): exact for data ~ N(mu, s^2 I)."""

    def __init__(self, mu: torch.Tensor, s: float):
        super().__init__()
        self.mu, self.s2 = mu, s * s

    def forward(self, x, sigma, **extra_args):
        sigma2 = K.utils.append_dims(sigma, x.ndim) ** 2
        return (self.s2 * x + sigma2 * self.mu) / (self.s2 + sigma2)


def save(t: torch.Tensor, path: pathlib.Path) -> None:
    arr = ((t[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(arr).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="outputs/example")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    disk = ((xx ** 2 + yy ** 2) < 0.4).float()
    small = torch.stack([0.8 * disk - 0.4 + 0.3 * xx, 0.5 * yy, -0.6 * disk + 0.2]).unsqueeze(0)
    x0 = F.interpolate(small, scale_factor=2, mode="bicubic", align_corners=False)

    model = GaussianPosteriorDenoiser(F.avg_pool2d(x0, 3, 1, 1), s=0.1)
    sigmas = K.sampling.get_sigmas_karras(args.steps, 0.02, 10.0)
    g = torch.Generator().manual_seed(args.seed)
    x = sample_itermix_euler(model, x0, sigmas, generator=g, blending_function="slerp")

    save(small, out / "input_32.png")
    save(x0, out / "bicubic_64.png")
    save(x, out / "itermix_64.png")
    print(f"wrote {out}/input_32.png, bicubic_64.png, itermix_64.png")


if __name__ == "__main__":
    main()
