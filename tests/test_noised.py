import pytest
import torch

from itermix_kdiff import LazyNoisedLatents, noised_latents


def sigmas_(n=5):
    return torch.linspace(3.0, 0.0, n + 1)


def test_reference_draw_layout_k_major():
    x0 = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    s = sigmas_()
    torch.manual_seed(123)
    z = noised_latents(x0, s)
    torch.manual_seed(123)
    eps = torch.randn(len(s) * 2, 4, 3, 3)
    assert z.shape == (len(s), 2, 4, 3, 3)
    for k in range(len(s)):
        for b in range(2):
            assert torch.equal(z[k, b], x0[b] + eps[k * 2 + b] * s[k])
    assert torch.equal(z[-1], x0)  # sigma_n = 0


def test_statistics():
    x0 = torch.full((1, 4, 64, 64), 0.7)
    s = torch.tensor([5.0, 2.0, 0.5, 0.0])
    z = noised_latents(x0, s, generator=torch.Generator().manual_seed(1))
    for k in range(4):
        assert abs(z[k].mean().item() - 0.7) < 0.05 * max(s[k].item(), 0.1)
        assert abs(z[k].std().item() - s[k].item()) < 0.03 * max(s[k].item(), 1e-3) + 1e-6


def test_generator_leaves_global_rng_alone_and_reproduces():
    x0 = torch.zeros(1, 4, 8, 8)
    state = torch.random.get_rng_state()
    a = noised_latents(x0, sigmas_(), generator=torch.Generator().manual_seed(5))
    b = noised_latents(x0, sigmas_(), generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b)
    c = noised_latents(x0, sigmas_(), generator=torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)
    # independent: different steps carry different noise
    assert not torch.allclose(a[0] / 3.0, a[1] / 2.4)


@pytest.mark.parametrize("noise", ["independent", "shared"])
def test_lazy_equals_stack(noise):
    x0 = torch.randn(2, 4, 6, 5, generator=torch.Generator().manual_seed(2))
    s = sigmas_(7)
    stack = noised_latents(x0, s, noise=noise, generator=torch.Generator().manual_seed(9))
    lazy = noised_latents(x0, s, noise=noise, generator=torch.Generator().manual_seed(9), lazy=True)
    assert isinstance(lazy, LazyNoisedLatents)
    assert len(lazy) == len(s) and lazy.shape == stack.shape
    for k in list(range(len(s))) + [-1]:
        assert torch.equal(lazy[k], stack[k])
    with pytest.raises(IndexError):
        lazy[len(s)]


def test_shared_noise_is_one_eps():
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    s = torch.tensor([4.0, 2.0, 1.0, 0.0])
    z = noised_latents(x0, s, noise="shared", generator=torch.Generator().manual_seed(4))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    for k in range(4):
        assert torch.allclose(z[k], x0 + eps * s[k])


def latent_bytes(src):
    return sum(t.numel() * t.element_size() for t in vars(src).values()
               if isinstance(t, torch.Tensor) and t.ndim > 1)


@pytest.mark.parametrize("noise", ["independent", "shared"])
def test_lazy_holds_constant_memory(noise):
    x0 = torch.zeros(1, 4, 32, 32)
    held = [latent_bytes(noised_latents(x0, torch.linspace(5, 0, n + 1), noise=noise, lazy=True))
            for n in (10, 100, 1000)]
    assert held[0] == held[1] == held[2] <= 2 * x0.numel() * 4


def test_half_precision_keeps_dtype():
    x0 = torch.randn(1, 4, 8, 8).half()
    for lazy in (False, True):
        z = noised_latents(x0, sigmas_(), generator=torch.Generator().manual_seed(0), lazy=lazy)
        assert z[0].dtype == torch.float16


def test_input_untouched_and_errors():
    x0 = torch.randn(1, 4, 4, 4)
    keep = x0.clone()
    noised_latents(x0, sigmas_())
    assert torch.equal(x0, keep)
    with pytest.raises(ValueError, match="noise"):
        noised_latents(x0, sigmas_(), noise="pink")
    with pytest.raises(TypeError, match="generator"):
        noised_latents(x0, sigmas_(), generator=5)
    with pytest.raises(ValueError, match="sigmas"):
        noised_latents(x0, torch.ones(2, 2))
    with pytest.raises(TypeError, match="x0"):
        noised_latents(torch.ones(4, dtype=torch.long), sigmas_())
