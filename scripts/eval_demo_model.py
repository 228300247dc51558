#!/usr/bin/env python3
"""Evaluate a demo model against the bar: class accuracy, edge sharpness and grain at 32x32.

Samples --n images conditioned on classes 0, 1, ..., 4, 0, 1, ... and compares them with
true renders of the same classes (dataset seed --ref-seed, unseen in training):

- accuracy: fraction of samples the shipped shapes classifier labels with the conditioned class
  (bar: >= 0.90);
- sharpness / grain: batch means of itermix_kdiff.demo.metrics.edge_sharpness / grain, and their
  relative gaps |sample - ref| / ref (bar: <= 0.25 each);
- restore_accuracy (a diagnostic, not in the bar): the same classifier on samples started from
  the true renders noised to sigma 1 and 2: where accuracy is lost on the way down.

    python scripts/eval_demo_model.py                          # the shipped weights
    python scripts/eval_demo_model.py --checkpoint ~/.cache/itermix_kdiff/train/shapes32_p1/ema_004000.safetensors
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from itermix_kdiff import models  # noqa: E402
from itermix_kdiff.demo import classifier, metrics, shapes  # noqa: E402
from itermix_kdiff.demo.train import EVAL_SAMPLERS, sample_images  # noqa: E402


def evaluate(denoiser, config, n=200, steps=24, cond_scale=2.0, sampler="dpmpp_2m", seed=0,
             ref_seed=9_000_001, batch_size=50, restore_sigmas=(1.0, 2.0), device=None):
    labels = torch.arange(n) % shapes.NUM_CLASSES
    generator = torch.Generator().manual_seed(seed)
    m = config["model"]

    def draw(generator, restore=None, sigma_start=None):
        return torch.cat([
            sample_images(denoiser, labels[i:i + batch_size], size=m["input_size"][0], steps=steps,
                          cond_scale=cond_scale, sigma_min=m["sigma_min"], sigma_max=m["sigma_max"],
                          sampler=sampler, generator=generator, sigma_start=sigma_start,
                          restore=None if restore is None else restore[i:i + batch_size],
                          device=device).cpu()
            for i in range(0, n, batch_size)])

    samples = draw(generator)
    reference, _ = shapes.render(range(n), m["input_size"][0], seed=ref_seed, classes=labels)
    clf = classifier.load_classifier()
    pred = classifier.predict(samples, clf)
    report = {
        "n": n, "steps": steps, "cond_scale": cond_scale, "sampler": sampler,
        "accuracy": (pred == labels).float().mean().item(),
        "accuracy_ref": classifier.accuracy(reference, labels, clf),
        "per_class_accuracy": {c: (pred[labels == k] == k).float().mean().item()
                               for k, c in enumerate(shapes.CLASSES)},
    }
    report["restore_accuracy"] = {}
    for sigma_start in restore_sigmas:
        restored = draw(torch.Generator().manual_seed(seed + 1), reference, sigma_start)
        report["restore_accuracy"][sigma_start] = (classifier.predict(restored, clf) == labels).float().mean().item()
    report.update(metrics.quality_report(samples, reference))
    report["meets_bar"] = (report["accuracy"] >= 0.9 and report["sharpness_gap"] <= 0.25
                           and report["grain_gap"] <= 0.25)
    return report, samples, reference


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=models.DEMO_CHECKPOINT)
    p.add_argument("--config", type=Path, default=None, help="default: <checkpoint>.json, else its metadata")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--cond-scale", type=float, default=2.0)
    p.add_argument("--sampler", default="dpmpp_2m", choices=sorted(EVAL_SAMPLERS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="where the model samples (e.g. cuda); the draws stay on the CPU, "
                                                   "so a seed gives the same starting noise everywhere")
    p.add_argument("--grid", type=Path, default=None, help="save samples (top) and true renders (bottom) here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config_path = args.config or args.checkpoint.with_suffix(".json")
    config = (json.loads(config_path.read_text()) if config_path.exists()
              else models.read_safetensors_config(args.checkpoint))
    model = models.load_kdiffusion_model(config, args.checkpoint, device=args.device)
    denoiser = models.class_conditional_denoiser(model, config["dataset"]["num_classes"])
    t0 = time.time()
    report, samples, reference = evaluate(denoiser, config, args.n, args.steps, args.cond_scale,
                                          args.sampler, args.seed, device=args.device)
    report["checkpoint"] = str(args.checkpoint)
    report["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(report, indent=2))
    if args.grid:
        from torchvision.utils import save_image
        k = min(40, args.n)
        save_image(torch.cat([samples[:k], reference[:k]]) * 0.5 + 0.5, args.grid, nrow=10)


if __name__ == "__main__":
    main()
