"""A procedural dataset of simple scenes, rendered anti-aliased at any resolution.

Each scene is a gradient background with one object (disk, square, triangle,
ring or plus) of random colour, size, position and rotation, optionally filled
with a stripe texture. A scene is a handful of numbers in continuous image
coordinates (u, v in [-1, 1], u to the right, v downwards), so the same scene
renders at 32x32, 64x64 or 128x128 and the benchmark has ground truth at every
size.

Anti-aliasing is analytic: every edge is a signed distance ``d`` (in the
normalised units above) and a pixel of width ``2 / size`` is covered by
``clamp(0.5 - d / (2 / size), 0, 1)`` of the object, a one-pixel linear ramp,
i.e. box-filter coverage of a straight edge.

Scenes are deterministic per ``(seed, index)``: the parameters of scene ``i``
come from a ``torch.Generator`` seeded with ``seed * 1_000_003 + i``.
"""

import math
from typing import Dict, Optional, Sequence, Union

import torch

CLASSES = ("disk", "square", "triangle", "ring", "plus")
"""Object classes; a scene's class label is its index in this tuple."""

NUM_CLASSES = len(CLASSES)

STRIPE_PROB = 0.3
"""Fraction of scenes whose object is filled with stripes."""

_N_UNIFORMS = 20


def _scene_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index) % (2 ** 63)


def scene_params(indices: Union[Sequence[int], torch.Tensor], seed: int = 0,
                 classes: Optional[Union[Sequence[int], torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
    """Parameters of the scenes ``indices`` of the dataset ``seed`` (float32, CPU).

    ``classes`` (same length as ``indices``) overrides the object class of each
    scene and leaves every other parameter as it was. Returned keys, each with
    a leading batch dimension:

    - ``label``: class index (long); ``bg_mid``, ``bg_grad``: background colour
      ``bg_mid + bg_grad * s`` with ``s = (u cos a + v sin a) / sqrt(2)``, ``a = bg_angle``;
    - ``center`` (u, v), ``radius`` (circumradius, normalised units), ``angle``;
    - ``color`` (object), ``stripe_color``, ``striped`` (0/1), ``stripe_period``,
      ``stripe_angle``, ``stripe_phase``.
    """
    indices = [int(i) for i in (indices.tolist() if torch.is_tensor(indices) else indices)]
    if classes is not None:
        classes = [int(c) for c in (classes.tolist() if torch.is_tensor(classes) else classes)]
        if len(classes) != len(indices):
            raise ValueError(f"classes has {len(classes)} entries, indices has {len(indices)}")
        if any(c < 0 or c >= NUM_CLASSES for c in classes):
            raise ValueError(f"classes must lie in [0, {NUM_CLASSES})")
    draws = []
    for i in indices:
        g = torch.Generator().manual_seed(_scene_seed(seed, i))
        draws.append(torch.rand(_N_UNIFORMS, generator=g, dtype=torch.float64))
    r = torch.stack(draws) if draws else torch.zeros(0, _N_UNIFORMS, dtype=torch.float64)
    label = (r[:, 0] * NUM_CLASSES).long().clamp(max=NUM_CLASSES - 1)
    if classes is not None:
        label = torch.tensor(classes, dtype=torch.long)
    bg_mid = r[:, 1:4] * 1.2 - 0.6
    bg_grad = r[:, 4:7] * 0.8 - 0.4
    bg_angle = r[:, 7] * 2 * math.pi
    radius = 0.45 + 0.3 * r[:, 8]
    # Keep the object (mostly) inside the frame: its centre moves at most 0.95 - radius.
    reach = 0.95 - radius
    center = (r[:, 9:11] * 2 - 1) * reach[:, None]
    angle = r[:, 11] * 2 * math.pi
    color = r[:, 12:15] * 1.8 - 0.9
    # An object too close in colour to the background mean jumps by 1 per channel, away from it.
    too_close = (color - bg_mid).norm(dim=1) < 0.8
    pushed = torch.where(bg_mid > 0, bg_mid - 1, bg_mid + 1)
    color = torch.where(too_close[:, None], pushed, color)
    stripe_color = torch.where(color > 0, color - 0.9, color + 0.9)
    striped = (r[:, 15] < STRIPE_PROB).double()
    stripe_period = 0.35 + 0.15 * r[:, 16]
    stripe_angle = r[:, 17] * math.pi
    stripe_phase = r[:, 18]
    out = dict(label=label, bg_mid=bg_mid, bg_grad=bg_grad, bg_angle=bg_angle, center=center,
               radius=radius, angle=angle, color=color, stripe_color=stripe_color, striped=striped,
               stripe_period=stripe_period, stripe_angle=stripe_angle, stripe_phase=stripe_phase)
    return {k: (v if k == "label" else v.float()) for k, v in out.items()}


def _box_sd(x: torch.Tensor, y: torch.Tensor, half_w, half_h) -> torch.Tensor:
    # Exact signed distance to an axis-aligned box centred at the origin.
    qx = x.abs() - half_w
    qy = y.abs() - half_h
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    inside = torch.maximum(qx, qy).clamp(max=0)
    return outside + inside


def _triangle_sd(x: torch.Tensor, y: torch.Tensor, r) -> torch.Tensor:
    # Equilateral triangle with circumradius r, one vertex pointing up (-v):
    # the largest of the three edge half-plane distances (exact near the edges).
    apothem = r / 2
    d = None
    for k in range(3):
        phi = math.pi / 2 + k * 2 * math.pi / 3
        edge = x * math.cos(phi) + y * math.sin(phi) - apothem
        d = edge if d is None else torch.maximum(d, edge)
    return d


def _object_sd(label: torch.Tensor, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside) of every class, picked per scene by ``label``."""
    rho = torch.sqrt(x ** 2 + y ** 2)
    disk = rho - r
    square = _box_sd(x, y, 0.75 * r, 0.75 * r)
    triangle = _triangle_sd(x, y, 1.2 * r)
    ring_w = 0.35 * r
    ring = (rho - (r - ring_w / 2)).abs() - ring_w / 2
    arm = 0.33 * r
    plus = torch.minimum(_box_sd(x, y, r, arm), _box_sd(x, y, arm, r))
    all_sd = torch.stack([disk, square, triangle, ring, plus])
    index = label.view(1, -1, 1, 1).expand(1, *disk.shape)
    return all_sd.gather(0, index)[0]


def render_scenes(params: Dict[str, torch.Tensor], size: int, *, device=None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Render scenes from ``scene_params`` as a (B, 3, size, size) tensor in [-1, 1].

    Pixel ``(i, j)`` samples the point ``u = (2 j + 1) / size - 1``,
    ``v = (2 i + 1) / size - 1``; coverage of every edge is
    ``clamp(0.5 - d * size / 2, 0, 1)`` for the signed distance ``d``.
    """
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    size = int(size)
    p = {k: v.to(device) for k, v in params.items()}
    p = {k: (v if k == "label" else v.to(torch.float32)) for k, v in p.items()}
    coords = (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    u, v = u[None], v[None]
    px = 2.0 / size

    def col(t):
        return t[:, :, None, None]

    def sc(t):
        return t[:, None, None]

    s = (u * torch.cos(sc(p["bg_angle"])) + v * torch.sin(sc(p["bg_angle"]))) / math.sqrt(2)
    background = col(p["bg_mid"]) + col(p["bg_grad"]) * s[:, None]

    du = u - sc(p["center"][:, 0])
    dv = v - sc(p["center"][:, 1])
    ca, sa = torch.cos(sc(p["angle"])), torch.sin(sc(p["angle"]))
    x = ca * du + sa * dv
    y = -sa * du + ca * dv
    sd = _object_sd(p["label"], x, y, sc(p["radius"]))
    cover = (0.5 - sd / px).clamp(0, 1)[:, None]

    t = (du * torch.cos(sc(p["stripe_angle"])) + dv * torch.sin(sc(p["stripe_angle"]))) / sc(p["stripe_period"])
    t = t + sc(p["stripe_phase"])
    tri = (t - torch.floor(t) - 0.5).abs()
    stripe_sd = (tri - 0.25) * sc(p["stripe_period"])
    stripe = (0.5 - stripe_sd / px).clamp(0, 1) * sc(p["striped"])
    fill = col(p["color"]) + (col(p["stripe_color"]) - col(p["color"])) * stripe[:, None]

    image = background + (fill - background) * cover
    return image.clamp(-1, 1).to(dtype)


def render(indices: Union[Sequence[int], torch.Tensor], size: int, seed: int = 0,
           classes: Optional[Union[Sequence[int], torch.Tensor]] = None, *, device=None,
           dtype: torch.dtype = torch.float32):
    """Render scenes ``indices`` of dataset ``seed`` at ``size``; returns ``(images, labels)``."""
    params = scene_params(indices, seed, classes)
    return render_scenes(params, size, device=device, dtype=dtype), params["label"].to(device)


def batch(seed: int, step: int, batch_size: int, size: int, *, device=None,
          dtype: torch.dtype = torch.float32):
    """Training batch ``step``: scenes ``step * batch_size ...`` of dataset ``seed``."""
    start = step * batch_size
    return render(range(start, start + batch_size), size, seed, device=device, dtype=dtype)
