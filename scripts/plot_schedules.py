"""Write the README's figures to docs/images/ (itermix_kdiff.plots).

    python scripts/plot_schedules.py --out docs/images [--schedules-only]

Schedules (no model needed): ``alpha_1_cosine_schedule.png`` (the reference README's
figure), ``schedule_conventions.png`` (reference vs DemoFusion), ``schedule_options.png``
(start/stop/clamp/min/max, split runs), ``blending_functions_2d.png`` (the reference's
three blending figures in one). On the demo model (the shipped one unless
``--model``/``--checkpoint``), for one scene of its dataset upscaled 32 -> 64 and run
through ``sample_itermix_euler``: ``blending_on_demo.png`` (the three blending functions
on the pair the sampler blends at one step), ``noised_latent_statistics.png`` (the
reference's batch statistics plot of the noised latents z'_0..z'_n) and
``cosine_similarity.png`` (the reference's comparison plot: the sampler's running latents
against the noised ones).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from itermix_kdiff import noised_latents, plots, sample_itermix_euler  # noqa: E402
from itermix_kdiff import pipeline  # noqa: E402
from itermix_kdiff.demo import shapes  # noqa: E402


def schedule_figures(out: Path) -> None:
    plots.plot_alpha_1_schedules().save(out / "alpha_1_cosine_schedule.png")
    plots.plot_schedule_conventions().save(out / "schedule_conventions.png")
    plots.plot_schedule_options().save(out / "schedule_options.png")
    plots.plot_blending_functions_2d().save(out / "blending_functions_2d.png")


def demo_run(model: pipeline.LoadedModel, steps: int, scene_seed: int, scene: int, seed: int):
    """One itermix Euler run on scene ``scene`` of dataset ``scene_seed``, upscaled 2x (bicubic):
    returns the sigmas, the noised latents z' and, per step, the running latent after the
    Euler step and before the blend (what the sampler blends with z'_i)."""
    h, w = pipeline.native_size(model.config)
    base, labels = shapes.render([scene], h, seed=scene_seed)
    x0 = pipeline.upscale(base, (2 * h, 2 * w), "bicubic")
    sigmas = pipeline.schedule_sigmas(model, "karras", steps)
    z = noised_latents(x0, sigmas, generator=torch.Generator().manual_seed(seed))
    stepped = []

    def record(d):
        # the Euler step from the callback's values: x + (x - D) / sigma_hat * (sigma_{i+1} - sigma_hat)
        i = d["i"]
        step = d["x"] + (d["x"] - d["denoised"]) / d["sigma_hat"] * (sigmas[i + 1] - d["sigma_hat"])
        stepped.append((i, step))

    extra = pipeline.guidance_args(model, labels, 3.0)
    sample_itermix_euler(model.denoiser, x0, sigmas, extra_args=extra, callback=record, noised_latents=z,
                         disable=True)
    return sigmas, z, dict(stepped)


def demo_figures(out: Path, model: pipeline.LoadedModel, steps: int, seed: int) -> None:
    sigmas, z, stepped = demo_run(model, steps, scene_seed=3, scene=0, seed=seed)
    i = int(0.7 * steps)
    plots.plot_blending_on_images(
        z[i], stepped[i],
        title=f"step {i} of {steps}: noised = z'_{i} (sigma {sigmas[i]:.2f}), "
              f"x = the Euler step's result (sigma {sigmas[i + 1]:.2f})").save(out / "blending_on_demo.png")
    labels = [f"{s:.2f}" for s in sigmas.tolist()]
    plots.plot_latent_batch_statistics(z[:, 0], labels=labels).save(out / "noised_latent_statistics.png")
    running = torch.stack([stepped[k][0] for k in sorted(stepped)])
    plots.plot_cosine_similarity(running, z[sorted(stepped), 0],
                                 labels=("running latent after step", "noised latent z'")
                                 ).save(out / "cosine_similarity.png")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/images"))
    p.add_argument("--model", type=Path, default=None, help="config JSON (default: the shipped demo model)")
    p.add_argument("--checkpoint", type=Path, default=None, help="safetensors weights")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--schedules-only", action="store_true", help="only the four figures that need no model")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    schedule_figures(args.out)
    if not args.schedules_only:
        demo_figures(args.out, pipeline.load_model(args.model, args.checkpoint), args.steps, args.seed)
    for path in sorted(args.out.glob("*.png")):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
