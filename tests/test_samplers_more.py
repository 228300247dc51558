"""The reference's other samplers: euler_perlin (A7), dpmpp_2m and lcm (A9)."""

import functools

import k_diffusion as K
import pytest
import torch

from itermix_kdiff import sample_itermix_euler
from itermix_kdiff.perlin import perlin_masks
from itermix_kdiff.sampling import sample_itermix_dpmpp_2m, sample_itermix_euler_perlin, sample_itermix_lcm

from .kd_models import discrete_denoiser, seeded_setup
from .reference_loop import a7_euler_perlin, a9_dpmpp_2m, a9_lcm
from .test_sampling import Counter


@pytest.fixture
def model():
    return discrete_denoiser()


setup = functools.partial(seeded_setup, n=6)


def test_dpmpp_2m_mixing_off_equals_k_diffusion(model):
    x0, sigmas, stack = setup(model)
    ours = sample_itermix_dpmpp_2m(model, x0, sigmas, noised_latents=stack, blend_min=1.0, blend_max=1.0, disable=True)
    assert torch.equal(ours, K.sampling.sample_dpmpp_2m(model, stack[0], sigmas, disable=True))


def test_dpmpp_2m_matches_a9(model):
    x0, sigmas, stack = setup(model)
    ours = sample_itermix_dpmpp_2m(model, x0, sigmas, noised_latents=stack, disable=True)
    ref = a9_dpmpp_2m(model, x0, sigmas, stack=stack)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert not torch.allclose(ours, sample_itermix_euler(model, x0, sigmas, noised_latents=stack, disable=True))


def test_lcm_matches_a9_and_noise_sampler(model):
    x0, sigmas, stack = setup(model)
    noise = torch.randn(len(sigmas), *x0.shape, generator=torch.Generator().manual_seed(2))
    calls = iter(noise)
    counted = Counter(model)
    ours = sample_itermix_lcm(counted, x0, sigmas, noised_latents=stack, noise_sampler=lambda s, sn: next(calls),
                              disable=True)
    ref = a9_lcm(model, x0, sigmas, stack=stack, noise=noise)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert counted.calls == len(sigmas) - 2  # step 0 has c1 == 0: no model call, noise still drawn


def test_lcm_default_noise_reproduces_with_generator(model):
    x0, sigmas, _ = setup(model)
    a = sample_itermix_lcm(model, x0, sigmas, generator=torch.Generator().manual_seed(3), disable=True)
    b = sample_itermix_lcm(model, x0, sigmas, generator=torch.Generator().manual_seed(3), disable=True)
    c = sample_itermix_lcm(model, x0, sigmas, generator=torch.Generator().manual_seed(4), disable=True)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("mode", ["masks", "latents", "matched_noise"])
def test_perlin_modes_match_a7(model, mode):
    x0, sigmas, stack = setup(model)
    n = len(sigmas) - 1
    counted = Counter(model)
    ours = sample_itermix_euler_perlin(counted, x0, sigmas, noised_latents=stack, perlin_mode=mode,
                                       perlin_strength=0.6, perlin_scale=4.0, seed=5, disable=True)
    P = perlin_masks(n, 8, 8, seed=5, scale=4.0)
    ref, ref_calls = a7_euler_perlin(model, x0, sigmas, P, stack=stack, mode=mode, strength=0.6)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert counted.calls == ref_calls == (2 * n - 1 if mode == "masks" else n)


@pytest.mark.parametrize("mode", ["masks", "latents", "matched_noise"])
def test_perlin_strength_zero_reduces_to_core(model, mode):
    x0, sigmas, stack = setup(model)
    core = sample_itermix_euler(model, x0, sigmas, noised_latents=stack, disable=True)
    ours = sample_itermix_euler_perlin(model, x0, sigmas, noised_latents=stack, perlin_mode=mode,
                                       perlin_strength=0.0, disable=True)
    if mode == "masks":  # x (1 - P) + x P rounds, and the extra model call's share is zero
        assert torch.allclose(ours, core, atol=1e-5)
    else:
        assert torch.equal(ours, core)


def test_perlin_batch_shares_one_mask_set_unless_per_row(model):
    x0, sigmas, stack = setup(model, shape=(2, 4, 8, 8))
    both = sample_itermix_euler_perlin(model, x0, sigmas, noised_latents=stack, perlin_mode="matched_noise",
                                       disable=True)
    for b in range(2):
        one = sample_itermix_euler_perlin(model, x0[b:b + 1], sigmas, noised_latents=stack[:, b:b + 1],
                                          perlin_mode="matched_noise", disable=True)
        assert torch.allclose(both[b:b + 1], one, atol=1e-6)
    per_row = sample_itermix_euler_perlin(model, x0, sigmas, noised_latents=stack, perlin_mode="matched_noise",
                                          perlin_per_row=True, disable=True)
    assert torch.allclose(per_row[:1], both[:1], atol=1e-6) and not torch.allclose(per_row[1:], both[1:])


@pytest.mark.parametrize("sampler", [sample_itermix_euler_perlin, sample_itermix_dpmpp_2m, sample_itermix_lcm])
def test_options_rewind_masks_before_step_batches(model, sampler):
    x0, sigmas, _ = setup(model, n=8, shape=(2, 4, 8, 8))
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 4:] = 1
    kwargs = dict(generator=torch.Generator().manual_seed(0), disable=True)
    out = sampler(model, x0, sigmas, rewind=True, denoise_mask=mask, mix="before_step",
                  blending_function="slerp", mixing_masks=torch.ones(8, 1, 8, 8), **kwargs)
    assert out.shape == x0.shape and torch.isfinite(out).all()
    keep = (mask == 0).expand_as(x0)
    assert torch.equal(out[keep], x0[keep])
    x_keep = x0.clone()
    sampler(model, x0, sigmas, **kwargs)
    assert torch.equal(x0, x_keep)


@pytest.mark.parametrize("kwargs, match", [
    (dict(perlin_mode="clouds"), "perlin_mode"),
    (dict(perlin_strength=1.5), "perlin_strength"),
    (dict(perlin_scale=0.0), "perlin_scale"),
    (dict(seed=-1), "seed"),
    (dict(blending_function="nope"), "blending_function"),
])
def test_perlin_errors(model, kwargs, match):
    x0, sigmas, _ = setup(model)
    with pytest.raises((ValueError, TypeError), match=match):
        sample_itermix_euler_perlin(model, x0, sigmas, disable=True, **kwargs)
