"""Draw Perlin mixing masks at several scales, to see what ``perlin_scale`` does.

One row per scale, one column per step (mask i is used at step i; every step gets
its own independent mask). Sizes are latent pixels: a 1024 x 1024 image has
128 x 128 latents. White = 1 (mixed in fully), black = 0 (not mixed).

    python scripts/plot_perlin_masks.py --out perlin_masks.png
    python scripts/plot_perlin_masks.py --out wide.png --width 192 --height 96 --scales 4 16 64
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from itermix_kdiff.perlin import perlin_masks  # noqa: E402


def plot_masks(out: str, width: int, height: int, scales, steps: int, seed: int) -> None:
    figure, axes = plt.subplots(len(scales), steps, squeeze=False,
                                figsize=(1.8 * steps * width / max(width, height) + 1.2,
                                         1.8 * len(scales) * height / max(width, height) + 0.6))
    for row, scale in enumerate(scales):
        masks = perlin_masks(steps, width, height, seed=seed, scale=scale)
        for step in range(steps):
            axis = axes[row][step]
            axis.imshow(masks[step, :, :, 0].numpy(), cmap="gray", vmin=0.0, vmax=1.0,
                        interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"step {step}", fontsize=9)
            if step == 0:
                axis.set_ylabel(f"scale {scale:g}", fontsize=9)
    figure.suptitle(f"perlin_masks, {width} x {height} latent pixels, seed {seed}", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Plot Perlin mixing masks at several scales.")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--width", type=int, default=128, help="latent width (default 128)")
    parser.add_argument("--height", type=int, default=128, help="latent height (default 128)")
    parser.add_argument("--scales", type=float, nargs="+", default=[2.0, 5.0, 10.0, 20.0, 40.0, 80.0],
                        help="perlin_scale values, one row each")
    parser.add_argument("--steps", type=int, default=4, help="masks per scale (columns)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    plot_masks(args.out, args.width, args.height, args.scales, args.steps, args.seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
