"""Perlin power-fractal masks (docs/algorithm.md A8) and mixing-mask batches (B3)."""

import math

import pytest
import torch

from itermix_kdiff.perlin import (
    LATTICE_PERIOD,
    gradient_table,
    improved_noise,
    mixing_masks,
    permutation_tables,
    perlin_masks,
)


# --- an independent scalar implementation, written from the definition -------------

def scalar_noise(p, x, y, z):
    """Improved noise at one point, in Python floats: hash chain, gradients, lerps."""
    def fade(t):
        return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3

    def lerp(t, a, b):
        return a + t * (b - a)

    def grad(h, dx, dy, dz):
        h &= 15
        first = dx if h < 8 else dy
        second = dy if h < 4 else (dx if h in (12, 14) else dz)
        return (-first if h & 1 else first) + (-second if h & 2 else second)

    X, Y, Z = (math.floor(c) % 255 for c in (x, y, z))
    x, y, z = x - math.floor(x), y - math.floor(y), z - math.floor(z)
    A, B = p[X] + Y, p[X + 1] + Y
    AA, AB, BA, BB = p[A] + Z, p[A + 1] + Z, p[B] + Z, p[B + 1] + Z
    u, v, w = fade(x), fade(y), fade(z)
    return lerp(w,
                lerp(v, lerp(u, grad(p[AA], x, y, z), grad(p[BA], x - 1, y, z)),
                     lerp(u, grad(p[AB], x, y - 1, z), grad(p[BB], x - 1, y - 1, z))),
                lerp(v, lerp(u, grad(p[AA + 1], x, y, z - 1), grad(p[BA + 1], x - 1, y, z - 1)),
                     lerp(u, grad(p[AB + 1], x, y - 1, z - 1), grad(p[BB + 1], x - 1, y - 1, z - 1))))


def float32(value):
    return torch.tensor(value, dtype=torch.float32)


def scalar_masks(batch, width, height, seed, scale, octaves=4, persistence=0.5, lacunarity=2.0,
                 exponent=4.0, evolution=0.1):
    """A8 pixel by pixel; coordinates rounded to float32 like the reference's tensors."""
    generator = torch.Generator().manual_seed(seed)
    size = max(width, height) ** 2
    masks = []
    for b in range(batch):
        perm = torch.randperm(size, dtype=torch.int32, generator=generator).tolist()
        p = perm * (1 + -(-LATTICE_PERIOD // size))
        total = [[0.0] * width for _ in range(height)]
        z = float32(evolution * b)
        for o in range(octaves):
            f, a = lacunarity ** o, persistence ** o
            for j in range(height):
                for i in range(width):
                    n = scalar_noise(p, float(float32(i) / scale * f), float(float32(j) / scale * f),
                                     float(z / scale * f))
                    total[j][i] += n * a ** exponent * a
        lo = min(min(row) for row in total)
        hi = max(max(row) for row in total)
        masks.append([[(t - lo) / (hi - lo) for t in row] for row in total])
    return torch.tensor(masks, dtype=torch.float64).unsqueeze(-1)


# --- improved noise ----------------------------------------------------------------

def test_gradient_table_is_perlins_sixteen_gradients():
    # Ken Perlin's 2002 table: the 12 cube-edge directions plus 4 repeats.
    expected = [(1, 1, 0), (-1, 1, 0), (1, -1, 0), (-1, -1, 0),
                (1, 0, 1), (-1, 0, 1), (1, 0, -1), (-1, 0, -1),
                (0, 1, 1), (0, -1, 1), (0, 1, -1), (0, -1, -1),
                (1, 1, 0), (0, -1, 1), (-1, 1, 0), (0, -1, -1)]
    assert gradient_table().tolist() == [list(map(float, row)) for row in expected]


def noise_grid(p, x, y, z):
    p = torch.as_tensor(p).view(1, -1)
    return improved_noise(p, torch.tensor(x), torch.tensor(y), torch.tensor([z]))[0]


def test_noise_by_hand_with_the_identity_permutation():
    # p[i] = i: in cell (0, 0, 0) the chain gives A = 0, B = 1, AA = 0, AB = 1, BA = 1,
    # BB = 2, so the corner hashes are 000:0 100:1 010:1 110:2 001:1 101:2 011:2 111:3,
    # i.e. gradients x+y, -x+y, -x+y, x-y, -x+y, x-y, x-y, -x-y.
    # At (0.5, 0.5, 0.5): corners give 1, 1, -1, 0 (z = 0) and 0, -1, 1, 1 (z = 1);
    # u = v = w = 1/2, so lerp(v, 1, -1/2) = 1/4 and lerp(v, -1/2, 1) = 1/4 -> 1/4.
    # At (0, 0, .5): u = v = 0 picks corners 000 and 001: 0 + 0 and -0 + 0 -> 0.
    # At (.5, 0, .5): (.5 + .5)/2 = .5 below, (-.5 - .5)/2 = -.5 above -> 0.
    # At (0, .5, .5): (.5 - .5)/2 = 0 below, (.5 + .5)/2 = .5 above -> 1/4.
    identity = list(range(256)) + list(range(255))
    noise = noise_grid(identity, [0.0, 0.5], [0.0, 0.5], 0.5)
    assert noise.tolist() == [[0.0, 0.0], [0.25, 0.25]]


def test_noise_is_zero_on_lattice_points_and_matches_the_scalar_definition():
    p = permutation_tables(1, 300, seed=3)[0]
    # Rising coordinates across the mod-255 wrap: cell 254's upper corner is lattice
    # point 255, not the 0 that the next cell starts from.
    x = [0.0, 0.3, 1.7, 2.0, 5.25, 253.5, 254.2, 254.9, 255.3, 256.1, 300.9]
    y = [0.0, 0.45, 3.999, 7.5, 254.7, 255.2, 260.1]
    for z in (0.0, 0.6, 13.2):
        noise = noise_grid(p, x, y, z)
        expected = [[scalar_noise(p.tolist(), float(float32(xi)), float(float32(yi)), float(float32(z)))
                     for xi in x] for yi in y]
        torch.testing.assert_close(noise, torch.tensor(expected, dtype=torch.float32), atol=2e-6, rtol=0)
    assert noise_grid(p, [0.0, 1.0, 4.0], [2.0, 9.0], 3.0).abs().max() == 0


# --- perlin_masks ------------------------------------------------------------------

def test_masks_match_a_pixel_by_pixel_implementation_non_square():
    for width, height, scale in ((7, 5, 2.5), (4, 9, 1.7)):
        masks = perlin_masks(3, width, height, seed=11, scale=scale)
        assert masks.shape == (3, height, width, 1) and masks.dtype == torch.float32
        expected = scalar_masks(3, width, height, seed=11, scale=scale)
        torch.testing.assert_close(masks.double(), expected, atol=1e-5, rtol=0)


def test_each_mask_is_min_max_normalised():
    masks = perlin_masks(6, 40, 24, seed=5)
    assert torch.equal(masks.amin(dim=(1, 2, 3)), torch.zeros(6))
    assert torch.equal(masks.amax(dim=(1, 2, 3)), torch.ones(6))


def test_octave_weights_are_amplitude_to_the_exponent_plus_one():
    persistence, exponent, lacunarity, scale, seed = 0.6, 2.5, 3.0, 7.0, 4
    p = permutation_tables(2, 20 * 20, seed)
    x, y = torch.arange(20.0), torch.arange(12.0)
    z = torch.tensor([0.0, 0.1])
    octave = [improved_noise(p, x / scale * f, y / scale * f, z / scale * f)
              for f in (1.0, lacunarity)]

    def normalised(total):
        low = total.amin(dim=(1, 2), keepdim=True)
        return (total - low) / (total.amax(dim=(1, 2), keepdim=True) - low)

    masks = perlin_masks(2, 20, 12, seed=seed, scale=scale, octaves=2, persistence=persistence,
                         lacunarity=lacunarity, exponent=exponent)[..., 0]
    right = normalised(octave[0] + octave[1] * persistence ** (exponent + 1))
    wrong = normalised(octave[0] + octave[1] * persistence ** exponent)
    torch.testing.assert_close(masks, right, atol=1e-6, rtol=0)
    assert (masks - wrong).abs().max() > 1e-3


def test_brightness_and_contrast_act_after_normalisation():
    plain = perlin_masks(2, 16, 16, seed=9)
    shifted = perlin_masks(2, 16, 16, seed=9, brightness=0.25, contrast=-0.5)
    torch.testing.assert_close(shifted, (plain + 0.25) * 0.5)


def test_same_seed_same_masks_and_the_global_rng_is_untouched():
    state = torch.random.get_rng_state()
    first = perlin_masks(4, 24, 24, seed=123)
    second = perlin_masks(4, 24, 24, seed=123)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, second)
    assert not torch.allclose(first, perlin_masks(4, 24, 24, seed=124))
    # The first masks do not depend on how many follow them.
    assert torch.equal(perlin_masks(2, 24, 24, seed=123), first[:2])


def test_non_square_masks_are_crops_of_the_square_field():
    # Rows are y and columns are x; the hash table size depends only on max(W, H), so a
    # (W, H) mask is the renormalised crop of the max-sized square mask.
    square = perlin_masks(2, 24, 24, seed=8)
    for width, height in ((24, 16), (16, 24)):
        crop = square[:, :height, :width]
        low = crop.amin(dim=(1, 2), keepdim=True)
        crop = (crop - low) / (crop.amax(dim=(1, 2), keepdim=True) - low)
        masks = perlin_masks(2, width, height, seed=8)
        assert masks.shape == (2, height, width, 1)
        torch.testing.assert_close(masks, crop, atol=1e-6, rtol=0)


def test_dtype_and_device_are_honoured():
    reference = perlin_masks(2, 20, 12, seed=1)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        masks = perlin_masks(2, 20, 12, seed=1, dtype=dtype, device="cpu")
        assert masks.dtype == dtype and masks.device == torch.device("cpu")
        assert torch.equal(masks, reference.to(dtype))
    assert perlin_masks(1, 8, 8, device=torch.device("cpu")).device.type == "cpu"


def test_tiny_masks_wrap_the_hash_table_and_constant_masks_are_zero():
    masks = perlin_masks(3, 2, 3, seed=0, scale=0.7)
    assert masks.shape == (3, 3, 2, 1) and torch.isfinite(masks).all()
    assert masks.amax() == 1
    # One pixel at z = 0 sits on a lattice point: noise 0 everywhere, reported as 0, not NaN.
    assert torch.equal(perlin_masks(1, 1, 1), torch.zeros(1, 1, 1, 1))


@pytest.mark.parametrize("kwargs, error", [
    (dict(batch_size=0), ValueError), (dict(width=0), ValueError), (dict(height=-3), ValueError),
    (dict(width=8.0), TypeError), (dict(batch_size=True), TypeError),
    (dict(seed=-1), ValueError), (dict(seed=2 ** 64), ValueError), (dict(seed=1.5), TypeError),
    (dict(scale=0.0), ValueError), (dict(scale=-2.0), ValueError), (dict(scale=float("nan")), ValueError),
    (dict(scale="10"), TypeError), (dict(octaves=0), ValueError), (dict(persistence=0.0), ValueError),
    (dict(lacunarity=-2.0), ValueError), (dict(exponent=float("inf")), ValueError),
    (dict(evolution=None), TypeError), (dict(dtype=torch.int64), TypeError),
    (dict(dtype="float32"), TypeError),
])
def test_argument_errors_name_the_argument(kwargs, error):
    arguments = dict(batch_size=2, width=8, height=8)
    arguments.update(kwargs)
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        perlin_masks(arguments.pop("batch_size"), arguments.pop("width"), arguments.pop("height"),
                     **arguments)


# --- mixing_masks ------------------------------------------------------------------

def test_perlin_mixing_masks_are_channel_first_perlin_masks_for_latent_sizes():
    masks = mixing_masks("perlin", 5, 12, 8, seed=3, scale=4.0)
    assert masks.shape == (5, 1, 8, 12)
    assert torch.equal(masks, perlin_masks(5, 12, 8, seed=3, scale=4.0).permute(0, 3, 1, 2))
    # Mask i broadcasts against a latent batch (B, C, H, W), as the samplers' mixing_masks need.
    latent = torch.randn(2, 4, 8, 12)
    assert (masks[2] * latent).shape == latent.shape


def test_random_mixing_masks_are_seeded_standard_normal_draws():
    state = torch.random.get_rng_state()
    masks = mixing_masks("random", 16, 32, 24, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert masks.shape == (16, 1, 24, 32)
    assert torch.equal(masks, mixing_masks("random", 16, 32, 24, seed=7))
    assert not torch.equal(masks, mixing_masks("random", 16, 32, 24, seed=8))
    assert abs(masks.mean().item()) < 0.05 and abs(masks.std().item() - 1) < 0.05


def test_mixing_masks_honour_dtype_and_device_and_check_arguments():
    masks = mixing_masks("perlin", 2, 8, 8, dtype=torch.float16, device="cpu")
    assert masks.dtype == torch.float16 and masks.device.type == "cpu"
    with pytest.raises(ValueError, match="kind"):
        mixing_masks("simplex", 2, 8, 8)
    with pytest.raises(ValueError, match="width"):
        mixing_masks("random", 2, 0, 8)
    with pytest.raises(ValueError, match="scale"):
        mixing_masks("perlin", 2, 8, 8, scale=0.0)
