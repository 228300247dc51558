"""The shipped demo model makes recognisable shapes; the shipped classifier knows true renders."""

import json

import torch
import k_diffusion as K

from itermix_kdiff import models
from itermix_kdiff.demo import classifier, metrics, shapes
from itermix_kdiff.demo.train import sample_images


def test_shipped_files_are_kdiffusion_inference_format():
    config = json.loads(models.DEMO_CONFIG.read_text())
    assert config["model"]["type"] == "image_v1"
    assert models.read_safetensors_config(models.DEMO_CHECKPOINT) == config
    assert models.DEMO_CHECKPOINT.stat().st_size < 20e6
    model = models.load_kdiffusion_model(None, models.DEMO_CHECKPOINT)
    assert isinstance(model, K.layers.Denoiser) and model.sigma_data == config["model"]["sigma_data"]


def test_classifier_labels_true_renders():
    images, labels = shapes.render(range(100), 32, seed=123_457)
    clf = classifier.load_classifier()
    assert classifier.accuracy(images, labels, clf) >= 0.95
    # Larger renders are downsampled to 32x32 before classification.
    big, _ = shapes.render(range(20), 64, seed=123_457)
    assert classifier.accuracy(big, labels[:20], clf) >= 0.9


def test_demo_samples_are_recognisable():
    denoiser, config = models.load_demo_model()
    labels = torch.arange(20) % shapes.NUM_CLASSES
    g = torch.Generator().manual_seed(1)
    samples = sample_images(denoiser, labels, size=32, steps=12, cond_scale=2.0,
                            sigma_min=config["model"]["sigma_min"], sigma_max=config["model"]["sigma_max"],
                            generator=g)
    assert samples.shape == (20, 3, 32, 32) and torch.isfinite(samples).all()
    # Chance is 0.2 (P(>= 15 of 20 right by chance) < 1e-6); the shipped weights score 95% here
    # and 90.5% on the bar's 200 samples (scripts/eval_demo_model.py).
    assert classifier.accuracy(samples, labels) >= 0.75
    # Samples are images, not noise or mush: grain and sharpness near true renders'.
    reference, _ = shapes.render(range(20), 32, seed=5, classes=labels)
    report = metrics.quality_report(samples, reference)
    assert report["grain_gap"] < 0.6 and report["sharpness_gap"] < 0.5


def test_restore_starts_from_noised_true_renders():
    """sample_images(restore=..., sigma_start=...): from a little noise the model gives the
    render back; from more it drifts further; the two arguments go together."""
    import pytest

    denoiser, _ = models.load_demo_model()
    labels = torch.arange(5)
    reference, _ = shapes.render(range(5), 32, seed=9, classes=labels)
    errors = []
    for sigma_start in (0.05, 2.0):
        out = sample_images(denoiser, labels, steps=12, generator=torch.Generator().manual_seed(0),
                            restore=reference, sigma_start=sigma_start)
        errors.append((out - reference).abs().mean().item())
    assert errors[0] < 0.03 < errors[1]
    with pytest.raises(ValueError, match="go together"):
        sample_images(denoiser, labels, restore=reference)
    with pytest.raises(ValueError, match="restore must have shape"):
        sample_images(denoiser, labels, restore=reference[:2], sigma_start=1.0)
