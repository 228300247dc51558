"""The procedural shapes dataset: one continuous scene, consistent renders at every size."""

import torch
import pytest

from itermix_kdiff.demo import metrics, shapes


def test_same_scene_at_every_size():
    x32, labels = shapes.render(range(12), 32, seed=3)
    x64, _ = shapes.render(range(12), 64, seed=3)
    x128, _ = shapes.render(range(12), 128, seed=3)
    assert x32.shape == (12, 3, 32, 32) and x128.shape == (12, 3, 128, 128)
    # Box-downsampled larger renders match the small render to within anti-aliasing error...
    assert metrics.psnr(metrics.downsample(x128, 32), x32).min() > 35
    assert metrics.psnr(metrics.downsample(x64, 32), x32).min() > 35
    assert metrics.psnr(metrics.downsample(x128, 64), x64).min() > 35
    # ...while other scenes are nowhere near.
    other, _ = shapes.render(range(12), 32, seed=4)
    assert metrics.psnr(other, x32).max() < 25
    assert labels.dtype == torch.long and set(labels.tolist()) <= set(range(shapes.NUM_CLASSES))


def test_deterministic_per_seed_and_index_and_in_range():
    a, la = shapes.render([5, 6, 7], 32, seed=11)
    b, lb = shapes.render([7, 6, 5], 32, seed=11)
    assert torch.equal(a, b.flip(0)) and torch.equal(la, lb.flip(0))
    c, _ = shapes.render([5, 6, 7], 32, seed=12)
    assert not torch.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1
    # Training batches are scenes step * batch_size ... of the dataset.
    x, labels = shapes.batch(11, 2, 4, 32)
    y, m = shapes.render(range(8, 12), 32, seed=11)
    assert torch.equal(x, y) and torch.equal(labels, m)


def test_class_override_changes_only_the_object():
    free = shapes.scene_params(range(10), seed=2)
    forced = shapes.scene_params(range(10), seed=2, classes=[3] * 10)
    assert forced["label"].tolist() == [3] * 10
    for key in ("bg_mid", "center", "radius", "color", "striped"):
        assert torch.equal(free[key], forced[key])
    # A ring leaves its centre showing the background; a disk covers it.
    disk = shapes.scene_params([0], seed=2, classes=[0])
    ring = shapes.scene_params([0], seed=2, classes=[3])
    for p in (disk, ring):
        p["striped"] = torch.zeros(1)
    size = 64
    cx, cy = ((disk["center"][0] + 1) * size / 2).long().tolist()
    img_disk = shapes.render_scenes(disk, size)[0, :, cy, cx]
    img_ring = shapes.render_scenes(ring, size)[0, :, cy, cx]
    assert torch.allclose(img_disk, disk["color"][0], atol=1e-5)
    assert not torch.allclose(img_ring, ring["color"][0], atol=0.1)


def test_classes_look_different_and_edges_are_antialiased():
    x, labels = shapes.render(range(50), 32, seed=0, classes=torch.arange(50) % 5)
    # Object coverage (area) differs by class: ring and plus cover less than the disk.
    params = shapes.scene_params(range(50), seed=0, classes=torch.arange(50) % 5)
    params["striped"] = torch.zeros(50)
    params["bg_grad"] = torch.zeros(50, 3)
    flat = shapes.render_scenes(params, 64)
    covered = ((flat - params["bg_mid"][:, :, None, None]).abs().sum(1) > 0.05).float().mean((1, 2))
    area = covered / params["radius"] ** 2
    by_class = torch.stack([area[labels == k].mean() for k in range(5)])
    assert by_class[0] > by_class[3] and by_class[0] > by_class[4]
    # Anti-aliasing: renders contain intermediate values on edges, and sharpness is the same
    # (per-pixel edge rise) at every size.
    s32 = metrics.edge_sharpness(x).mean()
    s128 = metrics.edge_sharpness(shapes.render(range(50), 128, seed=0, classes=torch.arange(50) % 5)[0]).mean()
    assert abs(s32 - s128) / s128 < 0.1


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        shapes.render([0], 0)
    with pytest.raises(ValueError, match="classes"):
        shapes.scene_params([0, 1], classes=[0])
    with pytest.raises(ValueError, match="classes"):
        shapes.scene_params([0], classes=[7])


def test_metrics_respond_to_blur_and_noise():
    x, _ = shapes.render(range(40), 32, seed=1)
    g = torch.Generator().manual_seed(0)
    noisy = x + 0.05 * torch.randn(x.shape, generator=g)
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    assert metrics.edge_sharpness(blurred).mean() < 0.6 * metrics.edge_sharpness(x).mean()
    assert metrics.grain(noisy).mean() > 1.25 * metrics.grain(x).mean()
    assert metrics.grain(blurred).mean() < metrics.grain(x).mean()
    assert metrics.high_frequency_energy(blurred).mean() < metrics.high_frequency_energy(x).mean()
    # A planar ramp has no grain: the 3x3 median of a plane is its centre.
    ramp = torch.linspace(-1, 1, 32).view(1, 1, 1, 32) + torch.linspace(-0.5, 0.5, 32).view(1, 1, 32, 1)
    assert metrics.grain(ramp.expand(1, 3, 32, 32).contiguous()).item() < 1e-6
    assert metrics.psnr(x, x).min() > 100
    assert not x.requires_grad and torch.equal(metrics.downsample(x, 32), x)
