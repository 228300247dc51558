"""Time ``perlin_masks`` against a straightforward per-mask loop of the same definition.

Run as ``python -m benchmarks.bench_perlin``. The baseline below computes docs/algorithm.md
A8 one mask at a time, with the textbook improved-noise hash chain and gradient
selection on every pixel; both must give the same masks (up to float32 rounding),
which is asserted before anything is timed. Timings are the best of several
interleaved repeats, measured in this process, so the ratio is what to read.
"""

from __future__ import annotations

import argparse
import time

import torch

from itermix_kdiff.perlin import LATTICE_PERIOD, perlin_masks

SIZES = ((40, 128, 128), (20, 64, 64))


def _fade(t):
    return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3


def _lerp(t, a, b):
    return a + t * (b - a)


def _gradient(h, x, y, z):
    """Perlin's gradient pick: u is x (h < 8) or y; v is y (h < 4), x (h is 12 or 14)
    or z; bits 0 and 1 of h flip the signs of u and v."""
    h = h & 15
    first = torch.where(h < 8, x, y)
    second = torch.where(h < 4, y, torch.where((h == 12) | (h == 14), x, z))
    first = torch.where(h & 1 == 1, -first, first)
    second = torch.where(h & 2 == 2, -second, second)
    return first + second


def _noise(p, x, y, z):
    """Improved noise at every pixel of one mask: x (1, W), y (H, 1), z (1, 1)."""
    X = (x.floor() % LATTICE_PERIOD).long()
    Y = (y.floor() % LATTICE_PERIOD).long()
    Z = (z.floor() % LATTICE_PERIOD).long()
    x, y, z = x - x.floor(), y - y.floor(), z - z.floor()
    u, v, w = _fade(x), _fade(y), _fade(z)
    A = p[X] + Y
    AA, AB = p[A] + Z, p[A + 1] + Z
    B = p[X + 1] + Y
    BA, BB = p[B] + Z, p[B + 1] + Z
    bottom = _lerp(v, _lerp(u, _gradient(p[AA], x, y, z), _gradient(p[BA], x - 1, y, z)),
                   _lerp(u, _gradient(p[AB], x, y - 1, z), _gradient(p[BB], x - 1, y - 1, z)))
    top = _lerp(v, _lerp(u, _gradient(p[AA + 1], x, y, z - 1), _gradient(p[BA + 1], x - 1, y, z - 1)),
                _lerp(u, _gradient(p[AB + 1], x, y - 1, z - 1), _gradient(p[BB + 1], x - 1, y - 1, z - 1)))
    return _lerp(w, bottom, top)


def loop_perlin_masks(batch_size, width, height, *, seed=0, scale=10.0, octaves=4, persistence=0.5,
                      lacunarity=2.0, exponent=4.0, evolution=0.1):
    """The A8 definition, one mask after another (brightness = contrast = 0)."""
    generator = torch.Generator().manual_seed(seed)
    size = max(width, height) ** 2
    masks = []
    for b in range(batch_size):
        perm = torch.randperm(size, dtype=torch.int32, generator=generator).long()
        p = torch.cat([perm] * (1 + -(-LATTICE_PERIOD // size)))
        x = torch.arange(width, dtype=torch.float32).view(1, -1)
        y = torch.arange(height, dtype=torch.float32).view(-1, 1)
        z = torch.full((1, 1), evolution * b, dtype=torch.float32)
        total = torch.zeros(height, width)
        for octave in range(octaves):
            f = lacunarity ** octave
            a = persistence ** octave
            total = total + _noise(p, x / scale * f, y / scale * f, z / scale * f) * a ** exponent * a
        masks.append((total - total.min()) / (total.max() - total.min()))
    return torch.stack(masks).unsqueeze(-1)


def _best_times(functions, repeats):
    """Best wall-clock and best process CPU time of each function, run interleaved."""
    wall = [float("inf")] * len(functions)
    cpu = [float("inf")] * len(functions)
    for _ in range(repeats):
        for i, fn in enumerate(functions):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[i] = min(wall[i], time.perf_counter() - start)
            cpu[i] = min(cpu[i], time.process_time() - start_cpu)
    return wall, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    lines = []
    for batch, width, height in SIZES:
        fast = perlin_masks(batch, width, height, seed=1)
        slow = loop_perlin_masks(batch, width, height, seed=1)
        diff = (fast - slow).abs().max().item()
        assert diff <= 1e-6, f"vectorised and loop masks differ by {diff}"

        (t_fast, t_slow), (c_fast, c_slow) = _best_times(
            [lambda: perlin_masks(batch, width, height, seed=1),
             lambda: loop_perlin_masks(batch, width, height, seed=1)], args.repeats)
        print(f"perlin_masks{(batch, width, height)}: vectorised {t_fast * 1e3:.1f} ms, "
              f"per-mask loop {t_slow * 1e3:.1f} ms, speed-up {t_slow / t_fast:.1f}x "
              f"(CPU time {c_fast * 1e3:.1f} vs {c_slow * 1e3:.1f} ms, {c_slow / c_fast:.1f}x; "
              f"max |diff| {diff:.1e})")
        lines.append(f"| `perlin_masks({batch}, {width}, {height})` | {t_fast * 1e3:.1f} ms "
                     f"| {t_slow * 1e3:.1f} ms | {t_slow / t_fast:.1f}x |")

    print(f"\nMarkdown (CPU, {torch.get_num_threads()} torch threads, best of {args.repeats}):\n")
    print("| masks | vectorised | per-mask loop | speed-up |")
    print("|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
