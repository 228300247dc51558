"""Perlin power-fractal masks (docs/algorithm.md A8) and mixing-mask batches (B3).

``perlin_masks`` gives the same numbers as the reference node pack's
``utils/noise.py`` for the same seed, but builds the whole batch in one pass of
tensor operations: the per-mask permutations come from a local
``torch.Generator`` (the global RNG is never touched), hashes and gradients are
looked up once per lattice point for all masks together, and the interpolation
runs on ``(batch, height, width)`` tensors. On the CPU the result is bit-identical
to the reference's except for an occasional last-bit difference (torch.pow rounds
differently in its vectorised and scalar kernels).

Quirks of the reference kept on purpose, so its masks can be reproduced:

- lattice coordinates wrap modulo 255 (Ken Perlin's noise uses 256);
- each mask's hash table is a permutation of ``max(W, H)**2`` entries, not 256;
- octave ``o`` is weighted by ``a**exponent * a`` with ``a = persistence**o``;
- brightness and contrast act after the min-max normalisation and the result is
  not renormalised (the reference's second normalisation maps the tensor onto its
  own minimum and maximum, which changes nothing), so the masks lie in [0, 1]
  only when both are 0 (the defaults).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Union

import torch

from ._checks import check_choice, check_int, check_number

# The reference wraps lattice coordinates with ``% 255``.
LATTICE_PERIOD = 255

#: How ``sample_itermix_euler_perlin`` applies the Perlin tensors (docs/algorithm.md A7).
PERLIN_MODES = ("masks", "latents", "matched_noise")

DeviceLike = Optional[Union[str, torch.device]]


def _check_positive(name: str, value) -> None:
    check_number(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _check_seed(seed) -> None:
    check_int("seed", seed, 0)
    if seed >= 2 ** 64:
        raise ValueError(f"seed must be < 2**64, got {seed}")


def _check_float_dtype(dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")


def _fade(t: torch.Tensor) -> torch.Tensor:
    """Perlin's quintic fade curve 6t^5 - 15t^4 + 10t^3."""
    return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3


def _lerp_(t: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + t (b - a), in the storage of ``b`` (always a temporary of ``improved_noise``,
    to save memory traffic). Written out, not torch.lerp, to round like the reference."""
    return b.sub_(a).mul_(t).add_(a)


def gradient_table() -> torch.Tensor:
    """The 16 gradients of improved noise as rows ``(g_x, g_y, g_z)``, so that
    ``grad(h, x, y, z) = g_x x + g_y y + g_z z`` for ``h = hash & 15``.

    Perlin's rule: ``u = x if h < 8 else y``; ``v = y if h < 4 else (x if h in
    {12, 14} else z)``; ``grad = (u if bit 0 of h is 0 else -u) + (v if bit 1 is 0
    else -v)``. u and v are always different axes, so each row holds exactly two
    entries of +-1 and one 0, and the dot product rounds exactly like ``+-u +-v``.
    """
    rows = []
    for h in range(16):
        u_axis = 0 if h < 8 else 1
        v_axis = 1 if h < 4 else (0 if h in (12, 14) else 2)
        row = [0.0, 0.0, 0.0]
        row[u_axis] = -1.0 if h & 1 else 1.0
        row[v_axis] = -1.0 if h & 2 else 1.0
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32)


def permutation_tables(batch_size: int, size: int, seed: int) -> torch.Tensor:
    """One hash table per mask, drawn as the reference draws them (A8): a generator
    seeded with ``seed`` gives ``randperm(size, int32)`` for mask 0, 1, ... in order.

    Each row is extended to ``size + LATTICE_PERIOD`` entries with ``p[i] =
    perm[i % size]``: the largest index the hash chain can reach is ``size - 1 +
    LATTICE_PERIOD`` (a permutation value plus a wrapped lattice coordinate plus 1),
    so no lookup needs a modulo. Where ``size >= 255`` this equals the reference's
    ``concat(perm, perm)`` on every index it reads; for masks under 16 pixels on
    both sides the reference indexes past its table and fails, and this wraps.
    Returns an int32 CPU tensor of shape (batch_size, size + LATTICE_PERIOD).
    """
    generator = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(size, dtype=torch.int32, generator=generator)
                         for _ in range(batch_size)])
    copies = -(-(size + LATTICE_PERIOD) // size)
    return torch.cat([perms] * copies, dim=1)[:, :size + LATTICE_PERIOD].contiguous()


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[b, index[b, ...]]`` for every mask b; index broadcasts against (B, 1, 1)."""
    batch = table.shape[0]
    index = index.expand(batch, *index.shape[1:])
    return table.gather(1, index.reshape(batch, -1)).view(index.shape)


def _spread_columns(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """(B, R, lattice columns) -> (B, R, pixel columns): pixel column w takes entry columns[w]."""
    return rows.gather(2, columns.expand(*rows.shape[:2], -1))


def _lattice_axis(coords: torch.Tensor):
    """The lattice along one axis, for rising 1-D coordinates.

    Returns the lattice points in use (the wrapped cells ``floor(c) mod 255`` and the
    points one above them, sorted), for every coordinate the positions of its lower and
    upper corner among those points, and the fractional part ``c - floor(c)``.
    """
    floor = coords.floor()
    cells, which = torch.unique_consecutive(floor, return_inverse=True)
    cells = (cells % LATTICE_PERIOD).long()
    points = torch.unique(torch.cat([cells, cells + 1]))
    lower = torch.searchsorted(points, cells)[which]
    upper = torch.searchsorted(points, cells + 1)[which]
    return points, lower, upper, coords - floor


def improved_noise(p: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Ken Perlin's improved noise for a batch of hash tables, on a separable grid.

    ``p`` (B, N) integer hash tables, ``x`` (W,) and ``y`` (H,) rising float
    coordinates, ``z`` (B,) (mask b is the slice at height ``z[b]``). Returns (B, H, W):

        X, Y, Z = floor(.) mod 255;  x, y, z -= floor(.);  u, v, w = fade(x, y, z)
        A = p[X] + Y, AA = p[A] + Z, AB = p[A+1] + Z
        B = p[X+1] + Y, BA = p[B] + Z, BB = p[B+1] + Z
        noise = lerp(w, lerp(v, lerp(u, grad(p[AA], x, y, z), grad(p[BA], x-1, y, z)),
                                lerp(u, grad(p[AB], x, y-1, z), grad(p[BB], x-1, y-1, z))),
                        (the same with AA+1, BA+1, AB+1, BB+1 and z-1))

    Corner (X+i, Y+j, Z+k) takes the gradient of ``p[p[p[X+i] + Y+j] + Z+k]`` (for
    example BA+1 = p[p[X+1] + Y] + Z + 1), which depends only on that lattice point:
    gradients are looked up once per lattice point and shared by the cells around it.
    Each dot product is taken as ``(g_x dx + g_z dz) + g_y dy``; one of the three
    terms is zero, so it rounds exactly like Perlin's ``+-u +-v``.
    """
    X, x_lower, x_upper, x = _lattice_axis(x)
    Y, y_lower, y_upper, y = _lattice_axis(y)
    Z, z = (z.floor() % LATTICE_PERIOD).long().view(-1, 1, 1), (z - z.floor()).view(-1, 1, 1)

    # p[p[X] + Y] + Z at every lattice point, (B, len(Y), len(X)); layer Z + 1 adds 1.
    hashes = _lookup(p, _lookup(p, X.view(1, 1, -1)) + Y.view(1, -1, 1)) + Z
    gradients = gradient_table().to(x.device).T.contiguous()
    layers = []
    for k in (0, 1):
        h = (_lookup(p, hashes + k) & 15).flatten()
        layers.append([axis.index_select(0, h).view(hashes.shape) for axis in gradients])

    # The x and z terms of every corner on every lattice row at every pixel column, kept
    # per (i, k) and shared by j = 0 and 1. g * d is exact (g is 0 or +-1), so each
    # addcmul rounds like a separate multiply and add.
    terms = {}
    for i, columns in enumerate((x_lower, x_upper)):
        for k, (g_x, g_y, g_z) in enumerate(layers):
            xz = _spread_columns(g_z * (z - k), columns).addcmul_(_spread_columns(g_x, columns), x - i)
            terms[i, k] = xz, _spread_columns(g_y, columns)

    def corner(i, j, k):
        xz, g_y = terms[i, k]
        rows = (y_lower, y_upper)[j]
        return xz.index_select(1, rows).addcmul_(g_y.index_select(1, rows), (y - j).view(-1, 1))

    u, v, w = _fade(x), _fade(y).view(-1, 1), _fade(z)

    def lerp_x(j, k):
        return _lerp_(u, corner(0, j, k), corner(1, j, k))

    near_z = _lerp_(v, lerp_x(0, 0), lerp_x(1, 0))
    far_z = _lerp_(v, lerp_x(0, 1), lerp_x(1, 1))
    return _lerp_(w, near_z, far_z)


def _normalize_each(m: torch.Tensor) -> torch.Tensor:
    """Min-max normalise every mask of a (B, H, W) batch to [0, 1]; a constant mask
    (where the reference divides 0 by 0) becomes 0."""
    low = m.amin(dim=(1, 2), keepdim=True)
    span = m.amax(dim=(1, 2), keepdim=True) - low
    return (m - low) / torch.where(span > 0, span, torch.ones_like(span))


@torch.no_grad()
def perlin_masks(batch_size: int, width: int, height: int, *, seed: int = 0, scale: float = 10.0,
                 octaves: int = 4, persistence: float = 0.5, lacunarity: float = 2.0,
                 exponent: float = 4.0, evolution: float = 0.1, brightness: float = 0.0,
                 contrast: float = 0.0, device: DeviceLike = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A batch of Perlin power-fractal masks, shape (batch_size, height, width, 1) (A8).

    Mask b is the improved-noise fractal over pixel coordinates ``x = 0..W-1``,
    ``y = 0..H-1`` at height ``z = evolution * b``, with its own hash table ``p_b``
    from ``permutation_tables`` (so the masks are independent of each other;
    ``evolution`` only picks which slice of each mask's noise volume is taken)::

        n_b = sum_{o < octaves} noise(x f/scale, y f/scale, z f/scale; p_b) * a**exponent * a,
              f = lacunarity**o,  a = persistence**o
        m_b = (normalize(n_b) + brightness) * (1 + contrast)

    where ``normalize`` maps each mask's minimum to 0 and maximum to 1. With the
    default brightness = contrast = 0 the masks span exactly [0, 1]. Larger
    ``scale`` gives larger blobs. Same seed, same masks as the reference (to float32
    rounding) on any device; the noise is computed in float32 on ``device`` (default
    CPU) and cast to ``dtype`` at the end. The whole batch is built at once: peak
    memory is about 25 float32 tensors of shape (batch_size, height, width), e.g.
    160 MB for 100 masks of 128 x 128.
    """
    check_int("batch_size", batch_size, 1)
    check_int("width", width, 1)
    check_int("height", height, 1)
    _check_seed(seed)
    _check_positive("scale", scale)
    check_int("octaves", octaves, 1)
    _check_positive("persistence", persistence)
    _check_positive("lacunarity", lacunarity)
    for name, value in (("exponent", exponent), ("evolution", evolution),
                        ("brightness", brightness), ("contrast", contrast)):
        check_number(name, value)
    _check_float_dtype(dtype)
    device = torch.device("cpu") if device is None else torch.device(device)

    # Permutations are drawn on the CPU so every device gets the reference's numbers.
    p = permutation_tables(batch_size, max(width, height) ** 2, seed).to(device)

    x = torch.arange(width, dtype=torch.float32, device=device)
    y = torch.arange(height, dtype=torch.float32, device=device)
    # evolution * b is rounded once from double to float32, as in the reference.
    z = (torch.arange(batch_size, dtype=torch.float64) * evolution).to(torch.float32).to(device)

    total = torch.zeros(batch_size, height, width, dtype=torch.float32, device=device)
    for octave in range(octaves):
        frequency = lacunarity ** octave
        amplitude = persistence ** octave
        noise = improved_noise(p, x / scale * frequency, y / scale * frequency,
                               z / scale * frequency)
        total += noise.mul_(amplitude ** exponent).mul_(amplitude)

    masks = (_normalize_each(total) + brightness) * (1.0 + contrast)
    return masks.unsqueeze(-1).to(dtype)


def _perlin_mixing_masks(batch_size: int, width: int, height: int, seed: int, scale: float,
                         device: DeviceLike, dtype: torch.dtype) -> torch.Tensor:
    masks = perlin_masks(batch_size, width, height, seed=seed, scale=scale, device=device, dtype=dtype)
    return masks.permute(0, 3, 1, 2)


def _random_mixing_masks(batch_size: int, width: int, height: int, seed: int, scale: float,
                         device: DeviceLike, dtype: torch.dtype) -> torch.Tensor:
    # Standard normal values, as the reference draws them (not confined to [0, 1]).
    generator = torch.Generator().manual_seed(seed)
    masks = torch.randn(batch_size, 1, height, width, generator=generator)
    return masks.to(device=device, dtype=dtype)


MIXING_MASK_KINDS: Dict[str, Callable[..., torch.Tensor]] = {
    "perlin": _perlin_mixing_masks,
    "random": _random_mixing_masks,
}


@torch.no_grad()
def mixing_masks(kind: str, batch_size: int, width: int, height: int, *, seed: int = 0,
                 scale: float = 10.0, device: DeviceLike = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A batch of mixing masks of shape (batch_size, 1, height, width) for the
    samplers' ``mixing_masks`` argument (B3): mask i weights step i's mix,
    ``x = blend(z'_i, x, c1[i]) * m_i + x * (1 - m_i)``, and broadcasts over the
    latent's batch and channels.

    ``width`` and ``height`` are LATENT sizes (the reference's MixingMaskGenerator
    took pixel sizes and divided them by 8). ``kind``:

    - ``"perlin"``: ``perlin_masks(batch_size, width, height, seed=seed, scale=scale)``
      moved to channel-first, values in [0, 1] (A8);
    - ``"random"``: independent standard-normal values per latent pixel, as the
      reference draws them (so NOT confined to [0, 1]), from a CPU generator seeded
      with ``seed``; ``scale`` is not used.
    """
    check_choice("kind", kind, tuple(MIXING_MASK_KINDS))
    check_int("batch_size", batch_size, 1)
    check_int("width", width, 1)
    check_int("height", height, 1)
    _check_seed(seed)
    _check_positive("scale", scale)
    _check_float_dtype(dtype)
    device = torch.device("cpu") if device is None else torch.device(device)
    return MIXING_MASK_KINDS[kind](batch_size, width, height, seed, scale, device, dtype)


# ---------------------------------------------------------------- the sampler's Perlin tensors (A7)

def check_perlin_keywords(perlin_mode: str, perlin_strength: float, perlin_scale: float,
                          seed: Union[int, Sequence[int]], perlin_per_row: bool) -> None:
    """Check ``sample_itermix_euler_perlin``'s own keywords (A7): ``seed`` is one seed, or a
    list of one seed per batch row."""
    check_choice("perlin_mode", perlin_mode, PERLIN_MODES)
    check_number("perlin_strength", perlin_strength, low=0.0, high=1.0)
    _check_positive("perlin_scale", perlin_scale)
    for s in (seed if isinstance(seed, (list, tuple)) and seed else [seed]):
        _check_seed(s)
    if not isinstance(perlin_per_row, bool):
        raise TypeError(f"perlin_per_row must be True or False, got {perlin_per_row!r}")


def perlin_tensors(mode: str, count: int, x: torch.Tensor, seed: Union[int, Sequence[int]], scale: float,
                   per_row: bool) -> torch.Tensor:
    """A7's Perlin tensors ``P_0 .. P_{count-1}`` (A8 masks of the latent's H x W), shaped to
    broadcast against ``x``: ``(count, 1|B, C|1, H, W)``. ``latents`` mode repeats each mask
    over the channels. One mask set serves the whole batch, unless ``per_row`` (row r takes
    the masks ``r*count .. (r+1)*count - 1`` of the seed's sequence) or ``seed`` is a list of
    one seed per row (row r takes the set of seed r, as when it is sampled alone)."""
    B, C, H, W = x.shape
    if isinstance(seed, (list, tuple)):
        if len(seed) != B:
            raise ValueError(f"seed holds {len(seed)} seeds for a batch of {B}: give one per batch row")
        masks = torch.cat([perlin_masks(count, W, H, seed=s, scale=scale, device=x.device, dtype=x.dtype)
                           for s in seed])
        rows = B
    else:
        rows = B if per_row else 1
        masks = perlin_masks(count * rows, W, H, seed=seed, scale=scale, device=x.device, dtype=x.dtype)
    # row r takes masks r*count .. (r+1)*count - 1, so row 0 sees the shared set
    masks = masks.permute(0, 3, 1, 2).reshape(rows, count, 1, H, W).transpose(0, 1)
    return masks.expand(count, rows, C, H, W) if mode == "latents" else masks
