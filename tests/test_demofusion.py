import math
from collections import namedtuple

import pytest
import torch
from torch import nn

from k_diffusion.external import DiscreteEpsDDPMDenoiser
from k_diffusion.layers import Denoiser
from k_diffusion.sampling import get_sigmas_karras

from itermix_kdiff import demofusion as df

from .kd_models import discrete_denoiser, sd_alphas_cumprod


class PointwiseNet(nn.Module):
    """Acts on every pixel alone (1x1 convolutions): translation-equivariant without borders.

    Optional conditioning: `cond` (B, D), added per channel; `mask` (B, 1, H, W), concatenated.
    """

    def __init__(self, channels=4, cond_dim=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Conv2d(channels + 1, 16, 1)
        self.out = nn.Conv2d(16, channels, 1)
        self.cond = nn.Linear(cond_dim, 16)

    def forward(self, x, sigma, cond=None, mask=None):
        mask = torch.zeros_like(x[:, :1]) if mask is None else mask
        h = self.inp(torch.cat([x, mask], 1)) + sigma.reshape(-1, 1, 1, 1).log()
        if cond is not None:
            h = h + self.cond(cond)[:, :, None, None]
        return self.out(torch.tanh(h))


class ConvNet(nn.Module):
    """3x3 convolutions: sees neighbours, so tiling changes its output near window borders."""

    def __init__(self, channels=4):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, channels, 3, padding=1))

    def forward(self, x, sigma):
        return self.net(x)


class CFGWrapper(nn.Module):
    """A minimal classifier-free-guidance wrapper in the usual k-diffusion style."""

    def __init__(self, inner_model):
        super().__init__()
        self.inner_model = inner_model

    def forward(self, x, sigma, cond_scale=1.0):
        return self.inner_model(x, sigma)


class CountingModel(nn.Module):
    def __init__(self, inner_model):
        super().__init__()
        self.inner_model = inner_model
        self.batches = []
        self.inputs = []

    def forward(self, x, sigma, **kwargs):
        self.batches.append(x.shape[0])
        self.inputs.append(x.clone())
        return self.inner_model(x, sigma, **kwargs)


def karras_model(net=None):
    return Denoiser(PointwiseNet() if net is None else net, sigma_data=0.5)


def make_x(b=1, c=4, h=13, w=19, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g) * 3


def sigma_for(x, value=2.5):
    return torch.full((x.shape[0],), value)


# 1. Tiled denoising

@pytest.mark.parametrize("jitter", [False, True])
@pytest.mark.parametrize("size,window,stride", [((13, 19), 8, 3), ((16, 16), 8, 4), ((9, 30), (6, 10), (5, 1)),
                                                  ((7, 7), 4, 4), ((5, 11), 8, 2)])
def test_views_cover_every_pixel_inside_the_padded_frame(size, window, stride, jitter):
    h, w = size
    views, (pad_h, pad_w) = df.window_views(h, w, window, stride, jitter, torch.Generator().manual_seed(3))
    win_h, win_w = df._pair(window, "window")
    covered = torch.zeros(h + 2 * pad_h, w + 2 * pad_w)
    for h0, h1, w0, w1 in views:
        assert (h1 - h0, w1 - w0) == (min(win_h, h), min(win_w, w))
        assert 0 <= h0 and h1 <= h + 2 * pad_h and 0 <= w0 and w1 <= w + 2 * pad_w
        covered[h0:h1, w0:w1] += 1
    assert (covered[pad_h:pad_h + h, pad_w:pad_w + w] > 0).all()
    if not jitter:
        assert (pad_h, pad_w) == (0, 0)


def test_jitter_range_and_determinism():
    views, pad = df.window_views(40, 40, 16, 8, True, torch.Generator().manual_seed(0))
    assert pad == ((16 - 8) // 4,) * 2
    again, _ = df.window_views(40, 40, 16, 8, True, torch.Generator().manual_seed(0))
    other, _ = df.window_views(40, 40, 16, 8, True, torch.Generator().manual_seed(1))
    plain, _ = df.window_views(40, 40, 16, 8, False)
    assert views == again and views != other
    shifts = [(a[0] - pad[0] - b[0], a[2] - pad[1] - b[2]) for a, b in zip(views, plain)]
    assert all(-2 <= dh <= 2 and -2 <= dw <= 2 for dh, dw in shifts)
    assert any(s != (0, 0) for s in shifts)
    # Windows on the first row/column only move outwards (up/left).
    assert all(dh <= 0 for (dh, _), v in zip(shifts, plain) if v[0] == 0)
    assert all(dw <= 0 for (_, dw), v in zip(shifts, plain) if v[2] == 0)


@pytest.mark.parametrize("weights", ["uniform", "gaussian"])
@pytest.mark.parametrize("jitter", [False, True])
def test_weights_sum_to_one_at_every_pixel(weights, jitter):
    x = make_x(h=15, w=22)

    def ones(v, s):
        return torch.ones_like(v)

    tiled = df.TiledDenoiser(ones, window=8, stride=3, jitter=jitter, weights=weights, seed=5)
    out = tiled(x, sigma_for(x))
    torch.testing.assert_close(out, torch.ones_like(x), rtol=0, atol=1e-6)


def test_gaussian_weight_peaks_in_the_centre():
    w = df.window_weight(7, 9, "gaussian")
    assert w.shape == (7, 9) and w.argmax() == 3 * 9 + 4
    assert w[0, 0] < w[3, 0] < w[3, 4] and torch.allclose(w, w.flip(0)) and torch.allclose(w, w.flip(1))
    assert math.isclose(float(w[3, 0]), math.exp(-2 * (4 / 4.5) ** 2) * 1.0, rel_tol=1e-5)
    assert torch.equal(df.window_weight(3, 5), torch.ones(3, 5))


@pytest.mark.parametrize("weights", ["uniform", "gaussian"])
def test_one_window_covering_the_image_equals_the_plain_model(weights):
    model = karras_model(ConvNet())
    x = make_x(b=2, h=11, w=14)
    sigma = sigma_for(x)
    out = df.TiledDenoiser(model, window=16, stride=8, weights=weights)(x, sigma)
    expected = model(x, sigma)
    if weights == "uniform":
        assert torch.equal(out, expected)
    else:
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("weights", ["uniform", "gaussian"])
@pytest.mark.parametrize("jitter", [False, True])
def test_translation_equivariant_model_is_unchanged_by_tiling_for_any_stride(weights, jitter):
    model = karras_model()
    x = make_x(b=2, h=13, w=19)
    sigma = sigma_for(x, 7.0)
    expected = model(x, sigma)
    for stride in range(1, 9):
        out = df.TiledDenoiser(model, 8, stride, view_batch_size=5, jitter=jitter, weights=weights,
                               seed=stride)(x, sigma)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_extra_args_are_repeated_per_view_and_spatial_ones_cut_like_x():
    model = karras_model()
    x = make_x(b=2, h=12, w=17)
    sigma = sigma_for(x, 1.5)
    cond = torch.randn(2, 3, generator=torch.Generator().manual_seed(2))
    mask = (torch.rand(2, 1, 12, 17, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    expected = model(x, sigma, cond=cond, mask=mask)
    out = df.TiledDenoiser(model, 6, 4, view_batch_size=3, seed=1)(x, sigma, cond=cond, mask=mask)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out = df.DilatedDenoiser(model, 3, view_batch_size=4)(x, sigma, cond=cond, mask=mask)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # The conditioning matters, so passing it through is what made the outputs agree.
    assert not torch.allclose(model(x, sigma, cond=cond), expected, atol=1e-3)


def test_windows_are_batched_view_major():
    counting = CountingModel(karras_model())
    x = make_x(b=2, h=16, w=16)
    df.TiledDenoiser(counting, 8, 4, view_batch_size=4, jitter=False)(x, sigma_for(x))
    assert counting.batches == [8, 8, 2]  # 9 views of 2 rows
    first = counting.inputs[0]
    assert torch.equal(first[0:2], x[..., 0:8, 0:8]) and torch.equal(first[2:4], x[..., 0:8, 4:12])


def test_tiling_changes_a_model_with_a_receptive_field_and_the_seed_matters():
    model = karras_model(ConvNet())
    x = make_x(h=16, w=20)
    sigma = sigma_for(x)
    a = df.TiledDenoiser(model, 8, 4, seed=0)
    b = df.TiledDenoiser(model, 8, 4, seed=0)
    c = df.TiledDenoiser(model, 8, 4, seed=1)
    out_a, out_b, out_c = a(x, sigma), b(x, sigma), c(x, sigma)
    assert torch.equal(out_a, out_b)
    assert not torch.allclose(out_a, out_c)
    assert not torch.allclose(out_a, model(x, sigma), atol=1e-3)
    # The generator advances: the next call draws new offsets.
    assert not torch.equal(a(x, sigma), out_a)


def test_dtype_kept_and_input_untouched():
    x = make_x(h=10, w=13).to(torch.bfloat16)
    before = x.clone()

    def model(v, s):
        return v * 0.5

    out = df.TiledDenoiser(model, 6, 3)(x, sigma_for(x))
    assert out.dtype == torch.bfloat16 and torch.equal(x, before)
    torch.testing.assert_close(out, x * 0.5, rtol=1e-2, atol=1e-2)
    out = df.DemoFusionDenoiser(model, 6, 3, 2, progress_fn=lambda s: 0.5)(x, sigma_for(x))
    assert out.dtype == torch.bfloat16 and torch.equal(x, before)


def test_bad_arguments_raise():
    model = karras_model()
    with pytest.raises(ValueError, match="stride"):
        df.TiledDenoiser(model, 8, 9)
    with pytest.raises(ValueError, match="weights"):
        df.TiledDenoiser(model, 8, 4, weights="cosine")
    with pytest.raises(ValueError, match="view_batch_size"):
        df.TiledDenoiser(model, 8, 4, view_batch_size=0)
    with pytest.raises(TypeError, match="window"):
        df.TiledDenoiser(model, 8.0, 4)
    with pytest.raises(ValueError, match="factor"):
        df.DilatedDenoiser(model, 0)
    with pytest.raises(ValueError, match="blur_sigma"):
        df.DilatedDenoiser(model, 2, blur_sigma=-1)
    with pytest.raises(ValueError, match="sigmas"):
        df.DemoFusionDenoiser(model, 8, 4, 2)


# 2. Dilated denoising

@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_dilated_split_merge_round_trip(factor):
    x = make_x(b=2, h=13, w=10)
    parts = df.dilated_split(x, factor)
    sub_h, sub_w = math.ceil(13 / factor), math.ceil(10 / factor)
    assert parts.shape == (factor * factor, 2, 4, sub_h, sub_w)
    pad_h, pad_w = sub_h * factor - 13, sub_w * factor - 10
    padded = torch.nn.functional.pad(x, (pad_w, 0, pad_h, 0))
    assert torch.equal(parts[factor + factor - 1 if factor > 1 else 0],
                       padded[..., (1 if factor > 1 else 0)::factor, (factor - 1)::factor])
    assert torch.equal(df.dilated_merge(parts, factor, 13, 10), x)


def test_dilated_factor_one_without_blur_equals_the_plain_model():
    model = karras_model(ConvNet())
    x = make_x(b=2, h=9, w=12)
    sigma = sigma_for(x)
    assert torch.equal(df.DilatedDenoiser(model, 1)(x, sigma), model(x, sigma))
    assert torch.equal(df.DilatedDenoiser(model, 1, blur_sigma=0.8)(x, sigma), model(x, sigma))


def test_dilated_runs_the_model_on_interleaved_sub_latents():
    counting = CountingModel(karras_model(ConvNet()))
    x = make_x(h=8, w=8)
    sigma = sigma_for(x)
    out = df.DilatedDenoiser(counting, 2, view_batch_size=3)(x, sigma)
    assert counting.batches == [3, 1]
    seen = torch.cat(counting.inputs)
    assert torch.equal(seen[1:2], x[..., 0::2, 1::2]) and torch.equal(seen[3:4], x[..., 1::2, 1::2])
    expected = counting.inner_model(x[..., 1::2, 0::2], sigma)
    torch.testing.assert_close(out[..., 1::2, 0::2], expected, rtol=1e-6, atol=1e-6)


def test_blur_feeds_the_model_a_renormalised_blurred_latent_and_keeps_the_detail():
    x = make_x(h=10, w=11)
    sigma = sigma_for(x)
    factor, std = 2, 0.9
    padded = torch.nn.functional.pad(x, (1, 0, 0, 0))
    blurred = df.match_statistics(df.gaussian_blur(padded, 3, std), padded)
    dims = (1, 2, 3)
    torch.testing.assert_close(blurred.mean(dims), padded.mean(dims))
    torch.testing.assert_close(blurred.std(dims), padded.std(dims))
    # A denoiser returning zero: D(x_b) + (x - x_b) = x - x_b.
    counting = CountingModel(lambda v, s: torch.zeros_like(v))
    out = df.dilated_denoise(counting, x, sigma, factor=factor, blur_sigma=std)
    torch.testing.assert_close(out, (padded - blurred)[..., :, 1:])
    torch.testing.assert_close(torch.cat(counting.inputs), df.dilated_split(blurred, factor)[:, 0])
    # The identity denoiser (the model's noise prediction is 0) gives back x itself.
    torch.testing.assert_close(df.dilated_denoise(lambda v, s: v, x, sigma, factor=2, blur_sigma=std), x)


def test_gaussian_blur_kernel():
    flat = torch.full((1, 2, 9, 9), 3.0)
    blurred = df.gaussian_blur(flat, 5, 1.0)
    torch.testing.assert_close(blurred[..., 2:-2, 2:-2], flat[..., 2:-2, 2:-2])
    assert (blurred[..., 0, 0] < 3).all()
    x = make_x()
    torch.testing.assert_close(df.gaussian_blur(x, 3, 0.008), x)
    assert not torch.allclose(df.gaussian_blur(x, 3, 1.0), x, atol=1e-2)


# 3. Fusion

def test_progress_from_a_discrete_wrapper_behind_a_cfg_wrapper():
    wrapper = DiscreteEpsDDPMDenoiser(PointwiseNet(), sd_alphas_cumprod(), quantize=False)
    progress = df.sigma_progress(CFGWrapper(wrapper))
    assert math.isclose(progress(wrapper.sigmas[-1:]), 1 / 1000, abs_tol=1e-6)
    assert math.isclose(progress(wrapper.sigmas[499:500]), (1000 - 499) / 1000, abs_tol=1e-6)
    assert progress(wrapper.sigmas[:1]) == 1.0
    sigmas = wrapper.get_sigmas(10)
    ps = [progress(s[None]) for s in sigmas[:-1]]
    assert all(a < b for a, b in zip(ps, ps[1:]))


def test_progress_from_the_schedule_index_without_a_discrete_wrapper():
    sigmas = get_sigmas_karras(8, 0.03, 14.6)
    progress = df.sigma_progress(karras_model(), sigmas)
    assert [progress(s[None]) for s in sigmas[:-1]] == [i / 8 for i in range(8)]
    assert progress(sigmas[3:4] * 1.01) == 3 / 8


def run_demofusion_parts(model, x, sigma, p, **kw):
    fused = df.DemoFusionDenoiser(model, 6, 3, 2, progress_fn=lambda s: p, seed=4, **kw)(x, sigma)
    cf = 0.5 * (1 + math.cos(math.pi * p))
    local = df.tiled_denoise(model, x, sigma, window=6, stride=3, generator=torch.Generator().manual_seed(4))
    c3 = 0.99 * cf ** kw.get("cosine_scale_3", 1.0) + 0.01
    dilated = df.dilated_denoise(model, x, sigma, factor=2, blur_sigma=0.8 * c3)
    return fused, local, dilated, cf


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_demofusion_denoiser_fuses_local_and_global_by_the_cosine_factor(p):
    model = karras_model(ConvNet())
    x = make_x(h=12, w=13)
    sigma = sigma_for(x)
    fused, local, dilated, cf = run_demofusion_parts(model, x, sigma, p, cosine_scale_2=2.0, cosine_scale_3=0.5)
    c2 = cf ** 2.0
    torch.testing.assert_close(fused, local * (1 - c2) + dilated * c2)
    assert not torch.allclose(local, dilated, atol=1e-3)


def test_demofusion_denoiser_skips_a_branch_with_zero_weight():
    counting = CountingModel(karras_model())
    x = make_x(h=12, w=12)
    df.DemoFusionDenoiser(counting, 6, 3, 2, progress_fn=lambda s: 0.0)(x, sigma_for(x))
    assert counting.batches == [4]  # dilated only: 4 sub-latents
    counting.batches.clear()
    df.DemoFusionDenoiser(counting, 6, 3, 2, progress_fn=lambda s: 1.0, jitter=False)(x, sigma_for(x))
    assert counting.batches == [9]  # tiled only: 3 x 3 windows


def test_demofusion_denoiser_in_a_k_diffusion_sampler():
    from k_diffusion.sampling import sample_euler

    wrapper = discrete_denoiser()
    sigmas = wrapper.get_sigmas(4)
    x = make_x(h=12, w=10) * sigmas[0] / 3
    a = sample_euler(df.DemoFusionDenoiser(wrapper, 6, 3, 2, seed=9), x, sigmas, disable=True)
    b = sample_euler(df.DemoFusionDenoiser(wrapper, 6, 3, 2, seed=9), x, sigmas, disable=True)
    assert a.shape == x.shape and torch.isfinite(a).all() and torch.equal(a, b)


# 4. The progressive pipeline

def upscale(model, x0, sigmas, scale=2, seed=0, **kw):
    return df.demofusion_upscale(model, x0, sigmas, scale, generator=torch.Generator().manual_seed(seed),
                                 disable=True, **kw)


def test_upscale_runs_every_phase_at_its_size_with_phase_one_statistics():
    model = discrete_denoiser()
    sigmas = model.get_sigmas(3)
    x0 = make_x(b=2, h=8, w=6)
    seen = []
    phases = upscale(model, x0, sigmas, scale=3, return_phases=True,
                     callback=lambda info: seen.append((info["phase"], info["i"], tuple(info["x"].shape))))
    assert [tuple(p.shape) for p in phases] == [(2, 4, 8, 6), (2, 4, 16, 12), (2, 4, 24, 18)]
    assert phases[0] is x0
    assert seen == [(s, i, (2, 4, 8 * s, 6 * s)) for s in (2, 3) for i in range(3)]
    for p in phases[1:]:
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p.mean((1, 2, 3)), x0.mean((1, 2, 3)), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(p.std((1, 2, 3)), x0.std((1, 2, 3)), rtol=1e-4, atol=1e-4)
    # Each phase starts from the previous one, not from x0.
    up = torch.nn.functional.interpolate(phases[1], size=(24, 18), mode="bicubic")
    from_x0 = torch.nn.functional.interpolate(x0, size=(24, 18), mode="bicubic")
    assert (phases[2] - up).abs().mean() < (phases[2] - from_x0).abs().mean()


def test_upscale_is_deterministic_and_the_low_memory_path_gives_the_same_latent():
    model = CountingModel(discrete_denoiser())
    sigmas = model.inner_model.get_sigmas(4)
    x0 = make_x(h=8, w=12)
    a = upscale(model, x0, sigmas)
    batches = list(model.batches)
    model.batches.clear()
    b = upscale(model, x0, sigmas, low_memory=True)
    assert a.shape == (1, 4, 16, 24)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert max(batches) > 1 and set(model.batches) == {1}
    assert torch.equal(a, upscale(model, x0, sigmas))
    assert not torch.allclose(a, upscale(model, x0, sigmas, seed=1), atol=1e-3)


def test_upscale_rejects_bad_arguments():
    model = discrete_denoiser()
    sigmas = model.get_sigmas(2)
    x0 = make_x(h=8, w=8)
    with pytest.raises(ValueError, match="scale"):
        df.demofusion_upscale(model, x0, sigmas, 1)
    with pytest.raises(TypeError, match="scale"):
        df.demofusion_upscale(model, x0, sigmas, 2.0)
    with pytest.raises(ValueError, match="stride"):
        df.demofusion_upscale(model, x0, sigmas, 2, stride=9)
    with pytest.raises(ValueError, match="cosine_scale_1"):
        df.demofusion_upscale(model, x0, sigmas, 2, cosine_scale_1=-1.0)


# ---------------------------------------------------------------- conditioning objects

#: The shape of A1111's prompt_parser types: a namedtuple, and a class built from named arguments.
Scheduled = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])


class Multicond:
    def __init__(self, shape, batch):
        self.shape = shape
        self.batch = batch


def test_map_tensors_rebuilds_namedtuples_and_leaves_unknown_objects():
    t = torch.arange(6.0).reshape(2, 3)
    multicond = Multicond((2,), [[Scheduled(4, t)]])
    args = {"uncond": [[Scheduled(4, t), Scheduled(8, {"crossattn": t})]], "cond": multicond,
            "pair": (t, 1.0), "cond_scale": 7.0, "image_cond": t}
    out = df._map_tensors(args, lambda v: v * 2)
    first, second = out["uncond"][0]
    assert type(first) is Scheduled and (first.end_at_step, second.end_at_step) == (4, 8)
    assert torch.equal(first.cond, t * 2) and torch.equal(second.cond["crossattn"], t * 2)
    assert type(out["uncond"]) is list and type(out["pair"]) is tuple and torch.equal(out["pair"][0], t * 2)
    assert out["cond"] is multicond and multicond.batch[0][0].cond is t  # left alone, not rebuilt
    assert out["cond_scale"] == 7.0 and torch.equal(out["image_cond"], t * 2)
    assert torch.equal(t, torch.arange(6.0).reshape(2, 3))  # the caller's tensor untouched


@pytest.mark.parametrize("make", [
    lambda m: df.DemoFusionDenoiser(m, 4, 2, 2, view_batch_size=2, sigmas=torch.tensor([2.0, 1.0, 0.0])),
    lambda m: df.TiledDenoiser(m, 4, 2, view_batch_size=2)])
def test_denoisers_pass_namedtuple_conditioning_through(make):
    seen = []

    def model(x, sigma, uncond, cond):
        seen.append((type(uncond[0][0]), cond))
        return x * 0.5

    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    multicond = Multicond((1,), [])
    out = make(model)(x, torch.ones(1), uncond=[[Scheduled(4, torch.zeros(3, 8))]], cond=multicond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert seen and all(kind is Scheduled and cond is multicond for kind, cond in seen)


# ---------------------------------------------------------------- the CLI's pipeline

def test_pipeline_demofusion_stage_keeps_the_base_mean_and_std():
    # The averaged windows and branches lose contrast; as DemoFusion does after every phase,
    # the stage is brought back to the base's statistics, so a chain of stages stays in colour.
    from itermix_kdiff import pipeline
    from itermix_kdiff.demo import shapes
    from itermix_kdiff.options import PRESETS
    from itermix_kdiff.wrap import SAMPLERS

    model = pipeline.load_model()
    base, labels = shapes.render([0], 32, seed=9_100_003)
    run = pipeline.run_upscale(model, base, sampler=SAMPLERS["euler"], steps=3, scale=2, seed=0,
                               extra_args=pipeline.guidance_args(model, labels, 1.0), cleanup_denoise=0.0,
                               hires_denoise=0.0, options=dict(PRESETS["demofusion"]), demofusion=True,
                               disable=True)
    mixed = run["stages"][0]["itermix"]
    assert mixed.shape == (1, 3, 64, 64)
    torch.testing.assert_close(mixed.mean((1, 2, 3)), base.mean((1, 2, 3)), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(mixed.std((1, 2, 3)), base.std((1, 2, 3)), rtol=1e-4, atol=1e-4)
