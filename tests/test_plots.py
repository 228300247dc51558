"""itermix_kdiff.plots: figures come back as PIL images of the promised size, and the
diagnostic numbers (Shapiro-Wilk p-value, mean, std, cosine similarity) are right."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from scipy import stats

from itermix_kdiff import plots


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def is_drawn(image: Image.Image) -> bool:
    """Not a blank canvas: more than a handful of colours."""
    return len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10


@pytest.mark.parametrize("make, figsize, dpi", [
    (lambda fs, dpi: plots.plot_alpha_1_schedules(alphas=(0.5, 1.0, 2.4), steps=20, figsize=fs, dpi=dpi), (6, 4), 50),
    (lambda fs, dpi: plots.plot_schedule_conventions(steps=20, figsize=fs, dpi=dpi), (9, 3), 40),
    (lambda fs, dpi: plots.plot_schedule_options(steps=20, figsize=fs, dpi=dpi), (9, 6), 40),
    (lambda fs, dpi: plots.plot_blending_functions_2d(figsize=fs, dpi=dpi), (9, 3), 40),
])
def test_schedule_and_blending_figures_have_the_requested_size(make, figsize, dpi):
    image = make(figsize, dpi)
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.size == (round(figsize[0] * dpi), round(figsize[1] * dpi))
    assert is_drawn(image)


def test_blending_on_images_figure():
    x = torch.rand(3, 8, 8, generator=g(0)) * 2 - 1
    noised = x + torch.randn(3, 8, 8, generator=g(1))
    image = plots.plot_blending_on_images(noised[None], x[None], weights=(0, 0.5, 1), figsize=(6, 4), dpi=50)
    assert image.size == (300, 200) and is_drawn(image)
    with pytest.raises(ValueError, match="one shape"):
        plots.plot_blending_on_images(noised, x[:, :4])


def test_latent_batch_statistics_on_known_inputs():
    normal = torch.randn(2, 4, 10, 10, generator=g(2))
    uniform = torch.rand(2, 4, 10, 10, generator=g(3))
    batch = torch.cat([normal, uniform * 4 + 3])
    s = plots.latent_batch_statistics(batch)
    rows = batch.double().reshape(4, -1)
    torch.testing.assert_close(s["means"], rows.mean(1))
    expected_std = ((rows - rows.mean(1, keepdim=True)) ** 2).mean(1).sqrt()  # population std
    torch.testing.assert_close(s["stds"], expected_std)
    assert s["means"][2:].sub(5).abs().max() < 0.2  # uniform on [3, 7]
    assert s["stds"][2:].sub(4 / math.sqrt(12)).abs().max() < 0.1
    for i in range(4):
        assert s["p_values"][i].item() == pytest.approx(stats.shapiro(rows[i].numpy()).pvalue)
    assert (s["p_values"][:2] > 0.01).all()  # 400 normal draws: normal
    assert (s["p_values"][2:] < 1e-4).all()  # 400 uniform draws: clearly not
    constant_shift = plots.latent_batch_statistics(batch + 10)
    torch.testing.assert_close(constant_shift["p_values"], s["p_values"], atol=1e-6, rtol=1e-4)
    with pytest.raises(ValueError, match="at least 3 values"):
        plots.latent_batch_statistics(torch.zeros(2, 2))


def test_cosine_similarity_matrix_on_known_inputs():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]).view(3, 2, 1, 1)
    b = torch.tensor([[3.0, 0.0], [-1.0, 1.0]]).view(2, 2, 1, 1)
    sim = plots.cosine_similarity_matrix(a, b)
    r = 1 / math.sqrt(2)
    expected = torch.tensor([[1.0, -r], [0.0, r], [r, 0.0]])
    torch.testing.assert_close(sim, expected)
    x = torch.randn(4, 3, 5, 5, generator=g(4))
    self_sim = plots.cosine_similarity_matrix(x, x)
    torch.testing.assert_close(self_sim.diagonal(), torch.ones(4))
    torch.testing.assert_close(self_sim, self_sim.T)
    torch.testing.assert_close(plots.cosine_similarity_matrix(x, -2 * x).diagonal(), -torch.ones(4))
    with pytest.raises(ValueError, match="one shape"):
        plots.cosine_similarity_matrix(x, torch.zeros(4, 3, 5, 4))


def test_diagnostic_plots_have_the_requested_size():
    batch = torch.randn(5, 3, 6, 6, generator=g(5))
    stats_image = plots.plot_latent_batch_statistics(batch, labels=[f"k={k}" for k in range(5)],
                                                     figsize=(5, 6), dpi=40)
    assert stats_image.size == (200, 240) and is_drawn(stats_image)
    cos_image = plots.plot_cosine_similarity(batch, batch.flip(0), figsize=(5, 4), dpi=40)
    assert cos_image.size == (200, 160) and is_drawn(cos_image)

