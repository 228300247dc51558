"""A tiny CNN that tells the shape class of a 32x32 scene; the judge of the demo model's samples.

Trained on rendered scenes only (``itermix_kdiff.demo.shapes``, dataset seed
``CLASSIFIER_DATA_SEED``, disjoint from the diffusion model's), with mild pixel
noise and blur so that it judges shapes, not rendering artefacts. Weights ship as
``weights/shapes_classifier.safetensors``. Images larger than 32x32 are
downsampled (anti-aliased) before classification.

Retrain with ``python -m itermix_kdiff.demo.classifier``.
"""

import argparse
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import metrics, shapes

CLASSIFIER_PATH = Path(__file__).resolve().parent / "weights" / "shapes_classifier.safetensors"
CLASSIFIER_DATA_SEED = 7_000_001
INPUT_SIZE = 32


def make_classifier() -> nn.Sequential:
    """3x3 convs, GroupNorm, GELU: 32 ch at 32x32, 64 at 16x16, 128 at 8x8 and 4x4; mean pool; linear."""
    def block(c_in, c_out, stride=1):
        return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(8, c_out), nn.GELU()]

    return nn.Sequential(
        *block(3, 32),
        *block(32, 64, 2), *block(64, 64),
        *block(64, 128, 2), *block(128, 128, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(128, shapes.NUM_CLASSES),
    )


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image: Gaussian noise of std U(0, 0.05); a 3x3 box blur mixed in with weight U(0, 1) for half of them."""
    b = images.shape[0]
    noise_std = torch.rand(b, 1, 1, 1, generator=generator) * 0.05
    blur_w = torch.rand(b, 1, 1, 1, generator=generator) * (torch.rand(b, 1, 1, 1, generator=generator) < 0.5)
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    out = images + (blurred - images) * blur_w
    return out + noise_std * torch.randn(images.shape, generator=generator)


def train_classifier(steps: int = 2500, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                     log_every: int = 0) -> nn.Sequential:
    """Train ``make_classifier()`` with Adam on scenes ``(CLASSIFIER_DATA_SEED, step)`` plus ``_augment``.

    Cross-entropy loss; learning rate cosine-decayed from ``lr`` to 0.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_classifier()
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for step in range(steps):
        images, labels = shapes.batch(CLASSIFIER_DATA_SEED, step, batch_size, INPUT_SIZE)
        loss = F.cross_entropy(model(_augment(images, generator)), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1} loss {loss.item():.4f}", flush=True)
    return model.eval().requires_grad_(False)


def save_classifier(model: nn.Module, path: Path = CLASSIFIER_PATH) -> None:
    import safetensors.torch

    state = {k: v.detach().cpu().float().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(path), metadata={"classes": ",".join(shapes.CLASSES)})


def load_classifier(path: Optional[Path] = None, device=None) -> nn.Sequential:
    """The shipped classifier (or the one at ``path``), in eval mode without gradients."""
    import safetensors.torch

    model = make_classifier()
    model.load_state_dict(safetensors.torch.load_file(str(path or CLASSIFIER_PATH)))
    return model.to(device).eval().requires_grad_(False)


def _to_input(images: torch.Tensor) -> torch.Tensor:
    metrics._check_images(images)
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 channels, got {images.shape[1]}")
    if images.shape[-1] != INPUT_SIZE or images.shape[-2] != INPUT_SIZE:
        images = metrics.downsample(images.float(), INPUT_SIZE)
    return images.float()


@torch.no_grad()
def predict_logits(images: torch.Tensor, model: Optional[nn.Module] = None) -> torch.Tensor:
    """Class logits ``(B, NUM_CLASSES)`` of images in [-1, 1] (any square size; resized to 32x32)."""
    model = model if model is not None else load_classifier(device=images.device)
    x = _to_input(images).to(next(model.parameters()).device)
    return model(x)


def predict(images: torch.Tensor, model: Optional[nn.Module] = None) -> torch.Tensor:
    """Predicted class index per image, ``(B,)`` long."""
    return predict_logits(images, model).argmax(dim=1)


def accuracy(images: torch.Tensor, labels: torch.Tensor, model: Optional[nn.Module] = None) -> float:
    """Fraction of ``images`` that the classifier labels with ``labels``."""
    return (predict(images, model).cpu() == labels.cpu()).float().mean().item()


def main(argv=None):
    p = argparse.ArgumentParser(description="Train the shapes classifier and save it.")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=CLASSIFIER_PATH)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = train_classifier(args.steps, args.batch_size, seed=args.seed, log_every=100)
    images, labels = shapes.render(range(2000), INPUT_SIZE, seed=CLASSIFIER_DATA_SEED + 1)
    print(f"held-out accuracy on 2000 clean renders: {accuracy(images, labels, model):.4f}")
    save_classifier(model, args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
