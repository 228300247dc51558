import functools
import inspect
import subprocess
import sys

import k_diffusion as K
import pytest
import torch

from itermix_kdiff import DEMOFUSION, noised_latents, sample_itermix_euler
from itermix_kdiff._loop import rewind_starts
from itermix_kdiff.sampling import (sample_itermix_dpmpp_2m, sample_itermix_euler_perlin,
                                    sample_itermix_lcm)
from itermix_kdiff.blending_schedules import blending_schedule
from itermix_kdiff.wrap import KDIFFUSION_SAMPLERS, SAMPLERS, batch_unsample, itermix_ksampler, make_itermix_sampler

from .kd_models import discrete_denoiser, seeded_setup

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torchsde's float rounding notes

KS = K.sampling
OFF = dict(blend_min=1.0, blend_max=1.0)


@pytest.fixture(scope="module")
def model():
    return discrete_denoiser()


setup = functools.partial(seeded_setup, n=8)


def seeded_noise(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(shape, generator=g)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("fn", [KS.sample_euler, KS.sample_heun, KS.sample_dpm_2])
def test_mixing_off_equals_single_step_samplers(model, fn):
    x0, sigmas, stack = setup(model)
    ours = make_itermix_sampler(fn)(model, x0, sigmas, noised_latents=stack, disable=True, **OFF)
    assert torch.equal(ours, fn(model, stack[0], sigmas, disable=True))


@pytest.mark.parametrize("fn", [KS.sample_euler, KS.sample_heun])
def test_mixing_off_with_churn_equals_k_diffusion(model, fn):
    # s_churn is divided by n so each one-step call gets the whole run's gamma
    x0, sigmas, stack = setup(model)
    torch.manual_seed(3)
    ours = make_itermix_sampler(fn)(model, x0, sigmas, noised_latents=stack, s_churn=1.0, disable=True, **OFF)
    torch.manual_seed(3)
    theirs = fn(model, stack[0], sigmas, s_churn=1.0, disable=True)
    assert torch.equal(ours, theirs)
    assert not torch.equal(theirs, fn(model, stack[0], sigmas, disable=True))


def test_mixing_off_equals_sde_and_ancestral_with_the_same_noise(model):
    # one Brownian tree over the whole schedule, and one Gaussian stream over all steps:
    # the segmented run sees exactly the noise of the unsegmented one, never repeated
    x0, sigmas, stack = setup(model)
    tree = KS.BrownianTreeNoiseSampler(stack[0], sigmas[sigmas > 0].min(), sigmas.max(), seed=5)
    ours = make_itermix_sampler(KS.sample_dpmpp_sde)(model, x0, sigmas, noised_latents=stack, seed=5,
                                                     disable=True, **OFF)
    assert torch.equal(ours, KS.sample_dpmpp_sde(model, stack[0], sigmas, noise_sampler=tree, disable=True))
    for fn in (KS.sample_euler_ancestral, KS.sample_dpm_2_ancestral, KS.sample_dpmpp_2s_ancestral):
        ours = make_itermix_sampler(fn)(model, x0, sigmas, noised_latents=stack, seed=5, disable=True, **OFF)
        theirs = fn(model, stack[0], sigmas, noise_sampler=seeded_noise(x0.shape, 5), disable=True)
        assert torch.equal(ours, theirs), fn.__name__


# Relative L2 departure of the one-step-at-a-time run from k-diffusion's own run, mixing
# off, tiny model, 8 steps. Measured (torch 2.x CPU): lms 0.057, dpmpp_2m 0.131,
# dpmpp_2m_sde 0.419, dpmpp_3m_sde 0.387; the bounds leave room for rounding only.
MULTISTEP_BOUNDS = [
    (KS.sample_lms, 0.08),
    (KS.sample_dpmpp_2m, 0.16),
    (KS.sample_dpmpp_2m_sde, 0.5),
    (KS.sample_dpmpp_3m_sde, 0.5),
]


@pytest.mark.parametrize("fn, bound", MULTISTEP_BOUNDS)
def test_multistep_samplers_lose_their_history_within_a_documented_bound(model, fn, bound):
    x0, sigmas, stack = setup(model)
    kw = {}
    if "noise_sampler" in inspect.signature(fn).parameters:
        kw["noise_sampler"] = KS.BrownianTreeNoiseSampler(stack[0], sigmas[sigmas > 0].min(), sigmas.max(), seed=5)
    theirs = fn(model, stack[0], sigmas, disable=True, **kw)
    ours = make_itermix_sampler(fn)(model, x0, sigmas, noised_latents=stack, disable=True, **OFF,
                                    **({"seed": 5} if kw else {}))
    assert 0.01 < rel(ours, theirs) < bound


def test_one_step_at_a_time_multistep_samplers_are_first_order(model):
    x0, sigmas, stack = setup(model)

    def run(fn, **kw):
        return make_itermix_sampler(fn)(model, x0, sigmas, noised_latents=stack, disable=True, **OFF, **kw)

    assert torch.equal(run(KS.sample_lms), run(KS.sample_euler))
    assert torch.allclose(run(KS.sample_dpmpp_2m_sde, eta=0.0, seed=1), run(KS.sample_dpmpp_2m), atol=1e-5)
    m2, m3 = run(KS.sample_dpmpp_2m_sde, seed=5), run(KS.sample_dpmpp_3m_sde, seed=5)
    assert torch.allclose(m2, m3, rtol=1e-5, atol=1e-3)
    assert torch.equal(m2, run(KS.sample_dpmpp_2m_sde, seed=5, solver_type="heun"))


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(blending_function="slerp", blending_schedule="logistic", start_blending_at_pct=0.2),
    dict(blending_function="norm_only", blending_schedule="linear", start_blending_at_pct=0.3),
    dict(mixing_masks="half"),
    dict(denoise_mask="square"),
    dict(generator=7, lazy=True),
    dict(generator=7, **DEMOFUSION),
    dict(generator=7, rewind=True, rewind_min=0.3),
    dict(stop_blending_at_pct=0.6, clamp_blending_at_pct=0.8, alpha_1=1.5),
])
def test_wrapped_euler_equals_sample_itermix_euler(model, kwargs):
    x0, sigmas, _ = setup(model)
    kwargs = dict(kwargs)
    if kwargs.get("mixing_masks") == "half":
        kwargs["mixing_masks"] = torch.zeros(len(sigmas) - 1, 1, 8, 8)
        kwargs["mixing_masks"][..., :4] = 1
    if kwargs.get("denoise_mask") == "square":  # binary mask, addition blend: the masked-d quirk is moot
        kwargs["denoise_mask"] = torch.zeros(1, 1, 8, 8)
        kwargs["denoise_mask"][..., 2:6, 2:6] = 1
    seed = kwargs.pop("generator", None)

    def run(fn):
        torch.manual_seed(11)  # the A1 global noise
        gen = {} if seed is None else {"generator": torch.Generator().manual_seed(seed)}
        seen = []
        out = fn(model, x0, sigmas, callback=lambda d: seen.append(d["i"]), disable=True, **gen, **kwargs)
        return out, seen

    ours, ours_i = run(make_itermix_sampler(KS.sample_euler))
    ref, ref_i = run(sample_itermix_euler)
    assert torch.equal(ours, ref)
    assert ours_i == ref_i


def test_callback_i_counts_over_the_run_and_rewind(model):
    x0, sigmas, _ = setup(model, n=10)
    seen = []
    make_itermix_sampler(KS.sample_heun)(model, x0, sigmas, rewind=True, callback=lambda d: seen.append(d),
                                         generator=torch.Generator().manual_seed(0), disable=True)
    starts = rewind_starts(10, 0.5, 0.8)
    assert [d["i"] for d in seen] == [i for s in starts for i in range(s, 10)]
    assert set(seen[1]) == {"x", "i", "sigma", "sigma_hat", "denoised"}
    assert torch.equal(seen[3]["sigma"], sigmas[3])


def test_a_sampler_reporting_other_keys_and_defaulting_to_unknown_names_runs(model):
    # as ComfyUI's UniPC and DPM-Solver report, and its exp_heun_2_x0 defaults solver_type
    def sample_terse(model, x, sigmas, extra_args=None, callback=None, disable=None, solver_type="phi_2"):
        x = KS.sample_euler(model, x, sigmas, extra_args=extra_args, disable=True)
        if callback is not None:
            callback({"x": x, "i": 0, "sigma": sigmas[0]})
        return x

    x0, sigmas, _ = setup(model)
    seen = []
    out = make_itermix_sampler(sample_terse)(model, x0, sigmas, callback=seen.append,
                                             generator=torch.Generator().manual_seed(0), disable=True)
    euler = make_itermix_sampler(KS.sample_euler)(model, x0, sigmas, generator=torch.Generator().manual_seed(0),
                                                  disable=True)
    assert torch.equal(out, euler)
    # only the skipped first step (c1 = 0) is reported: the sampler's own reports lack what the dict needs
    assert [d["i"] for d in seen] == [0] and torch.equal(seen[0]["denoised"], x0)
    with pytest.raises(ValueError, match="solver_type must be one of midpoint, heun"):
        make_itermix_sampler(sample_terse)(model, x0, sigmas, solver_type="phi_1")


def test_a1111_style_call(model):
    # A1111: f(model, x, extra_args=..., disable=False, callback=..., **{sigmas, eta if declared})
    x0, sigmas, _ = setup(model)
    got = []

    def cfg_model(x, sigma, cond=None):
        got.append(cond)
        return model(x, sigma)

    for name in ("heun", "euler_ancestral"):
        fn = SAMPLERS[name]
        params = inspect.signature(fn).parameters
        kwargs = {"sigmas": sigmas} if "sigmas" in params else {}
        if "eta" in params:
            kwargs["eta"] = 0.5
        if "seed" in params:
            kwargs["seed"] = 1
        steps = []
        out = fn(cfg_model, x0, extra_args={"cond": "c"}, disable=False, callback=lambda d: steps.append(d["i"]),
                 **kwargs)
        assert out.shape == x0.shape and torch.isfinite(out).all()
        assert steps == list(range(8)) and set(got) == {"c"}


def test_signatures():
    heun = inspect.signature(make_itermix_sampler(KS.sample_heun)).parameters
    anc = inspect.signature(make_itermix_sampler(KS.sample_euler_ancestral)).parameters
    dpm = inspect.signature(make_itermix_sampler(KS.sample_dpmpp_2m)).parameters
    for params in (heun, anc, dpm):
        assert list(params)[:7] == ["model", "x", "sigmas", "extra_args", "callback", "disable", "noised_latents"]
        assert "alpha_1" in params and params["alpha_1"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "noise_sampler" in anc and "seed" in anc and "eta" in anc
    assert "noise_sampler" not in heun and "seed" not in heun and "s_churn" in heun
    assert "s_churn" not in dpm and "s_noise" not in dpm and "noise_sampler" not in dpm
    assert make_itermix_sampler(KS.sample_heun).__name__ == "sample_itermix_heun"


def test_defaults_change_signature_and_behaviour(model):
    x0, sigmas, stack = setup(model)
    off = make_itermix_sampler(KS.sample_euler, blend_min=1.0, blend_max=1.0, disable=True)
    assert inspect.signature(off).parameters["blend_min"].default == 1.0
    assert torch.equal(off(model, x0, sigmas, noised_latents=stack), KS.sample_euler(model, stack[0], sigmas,
                                                                                    disable=True))
    eta = make_itermix_sampler(KS.sample_euler_ancestral, eta=0.0)
    assert torch.equal(eta(model, x0, sigmas, noised_latents=stack, disable=True, seed=1),
                       eta(model, x0, sigmas, noised_latents=stack, disable=True, seed=2))  # eta 0: no noise


def test_registry_entries_and_their_signatures(model):
    assert SAMPLERS["euler"] is sample_itermix_euler
    assert SAMPLERS["euler_perlin"] is sample_itermix_euler_perlin
    assert SAMPLERS["dpmpp_2m"] is sample_itermix_dpmpp_2m
    assert SAMPLERS["lcm"] is sample_itermix_lcm
    for name, (function, _, _) in KDIFFUSION_SAMPLERS.items():
        real = make_itermix_sampler(getattr(KS, function))
        assert inspect.signature(SAMPLERS[name]) == inspect.signature(real), name
        assert SAMPLERS[name].__name__ == real.__name__
    x0, sigmas, stack = setup(model, n=5)
    for name, fn in SAMPLERS.items():
        out = fn(model, x0, sigmas, generator=torch.Generator().manual_seed(0), disable=True)
        assert out.shape == x0.shape and torch.isfinite(out).all(), name
    lazy = SAMPLERS["dpmpp_sde"](model, x0, sigmas, noised_latents=stack, seed=2, disable=True)
    assert torch.equal(lazy, make_itermix_sampler(KS.sample_dpmpp_sde)(model, x0, sigmas, noised_latents=stack,
                                                                        seed=2, disable=True))


def test_wrap_module_does_not_import_k_diffusion():
    code = ("import sys, itermix_kdiff.wrap as w; w.SAMPLERS['heun']; w.make_itermix_sampler; "
            "sys.exit(1 if 'k_diffusion' in sys.modules or 'torchsde' in sys.modules else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def recording_sampler(seen):
    """A user-written sampler with k-diffusion's signature that keeps the noise it was given."""

    def sample_record(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
        if sigmas[1] > 0:  # k-diffusion's samplers add no noise on a step to sigma = 0
            seen.append((sigmas.clone(), noise_sampler(sigmas[0], sigmas[1])))
        return x

    return sample_record


@pytest.mark.parametrize("brownian", [False, True])
def test_noise_spans_the_run_and_rewind_passes_never_repeat_it(model, brownian):
    x0, sigmas, _ = setup(model, n=10)
    seen = []
    make_itermix_sampler(recording_sampler(seen), brownian_noise=brownian)(
        model, x0, sigmas, rewind=True, seed=3, generator=torch.Generator().manual_seed(0), disable=True)
    starts = rewind_starts(10, 0.5, 0.8)
    assert len(seen) == sum(9 - s for s in starts) - 1  # the very first step has c1 == 0: skipped
    noises = [z for _, z in seen]
    for a in range(len(noises)):
        for b in range(a):
            assert not torch.allclose(noises[a], noises[b]), (a, b)
    if brownian:  # the first pass reads the tree over the whole schedule, seeded `seed`
        tree = KS.BrownianTreeNoiseSampler(x0, sigmas[sigmas > 0].min(), sigmas.max(), seed=3)
        for seg, z in seen[:8]:
            assert torch.allclose(z, tree(seg[0], seg[1]), atol=1e-6)
    else:
        expected = seeded_noise(x0.shape, 3)
        for _, z in seen:
            assert torch.equal(z, expected(None, None))


@pytest.mark.parametrize("fn", [KS.sample_euler_ancestral, KS.sample_dpmpp_2m_sde])
def test_noisy_samplers_reproduce_for_a_seed(model, fn):
    x0, sigmas, _ = setup(model)
    wrapped = make_itermix_sampler(fn)

    def run(**kw):
        return wrapped(model, x0, sigmas, disable=True, **kw)

    g = torch.Generator
    assert torch.equal(run(generator=g().manual_seed(1), seed=4), run(generator=g().manual_seed(1), seed=4))
    assert not torch.equal(run(generator=g().manual_seed(1), seed=4), run(generator=g().manual_seed(1), seed=5))
    assert torch.equal(run(generator=g().manual_seed(1)), run(generator=g().manual_seed(1)))
    assert not torch.equal(run(generator=g().manual_seed(1)), run(generator=g().manual_seed(2)))
    torch.manual_seed(8)
    a = run()
    torch.manual_seed(8)
    assert torch.equal(a, run())


def test_batch_and_half_precision(model):
    x0, sigmas, _ = setup(model, shape=(3, 4, 8, 8))
    stack = noised_latents(x0, sigmas, generator=torch.Generator().manual_seed(1))
    heun = make_itermix_sampler(KS.sample_heun)
    batch = heun(model, x0, sigmas, noised_latents=stack, disable=True)
    for b in range(3):
        one = heun(model, x0[b:b + 1], sigmas, noised_latents=stack[:, b:b + 1], disable=True)
        assert torch.allclose(batch[b:b + 1], one, atol=1e-5)

    def half_model(x, sigma):
        return model(x.float(), sigma).half()

    for fn in (KS.sample_heun, KS.sample_dpmpp_2m_sde):
        wrapped = make_itermix_sampler(fn)
        kw = {"seed": 1} if "seed" in inspect.signature(wrapped).parameters else {}
        out = wrapped(half_model, x0.half(), sigmas, generator=torch.Generator().manual_seed(0), disable=True,
                      **kw)
        ref = wrapped(model, x0, sigmas, generator=torch.Generator().manual_seed(0), disable=True, **kw)
        assert out.dtype == torch.float16 and torch.isfinite(out).all()
        assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()


def test_denoise_mask_keeps_x0_with_any_wrapped_sampler(model):
    x0, sigmas, _ = setup(model)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1
    keep = (mask == 0).expand_as(x0)
    for fn in (KS.sample_heun, KS.sample_dpmpp_2m_sde):
        out = make_itermix_sampler(fn)(model, x0, sigmas, denoise_mask=mask, blending_function="slerp",
                                       generator=torch.Generator().manual_seed(0), disable=True)
        assert torch.equal(out[keep], x0[keep]) and not torch.allclose(out[~keep], x0[~keep])


def test_inputs_untouched(model):
    x0, sigmas, stack = setup(model)
    mask = torch.ones(1, 1, 8, 8)
    keep = [t.clone() for t in (x0, sigmas, stack, mask)]
    make_itermix_sampler(KS.sample_dpmpp_sde)(model, x0, sigmas, noised_latents=stack, denoise_mask=mask,
                                              rewind=True, disable=True)
    itermix_ksampler(KS.sample_heun, model, stack, sigmas, disable=True)
    for t, k in zip((x0, sigmas, stack, mask), keep):
        assert torch.equal(t, k)


def test_batch_unsample_order_numbers_and_scale(model):
    x0, sigmas, _ = setup(model)
    n = len(sigmas) - 1
    torch.manual_seed(4)
    out = batch_unsample(x0, sigmas)
    torch.manual_seed(4)  # the reference node: one randn over the flipped schedule, k-major
    eps = torch.randn(n + 1, *x0.shape[1:])
    ref = x0 + eps * sigmas.flip(0).view(-1, 1, 1, 1)
    assert out.shape == (n + 1, *x0.shape)
    assert torch.equal(out[:, 0], ref)
    assert torch.equal(out[0], x0)  # sigma_n = 0: rising order starts at the clean latent
    g = torch.Generator
    assert torch.equal(batch_unsample(x0, sigmas, generator=g().manual_seed(2)).flip(0),
                       noised_latents(x0, sigmas, generator=g().manual_seed(2)))
    big = torch.zeros(1, 4, 64, 64)
    noise_std = (batch_unsample(big, sigmas, generator=g().manual_seed(3))[1:] - big).flatten(1).std(1)
    ratio = noise_std / sigmas.flip(0)[1:]  # the reference's noise was 1 / 0.18215 = 5.5 times this
    assert ((ratio > 0.97) & (ratio < 1.03)).all()


def test_itermix_ksampler_returns_the_three_batches(model):
    x0, sigmas, _ = setup(model, shape=(2, 4, 8, 8))
    n = len(sigmas) - 1
    batch = batch_unsample(x0, sigmas, generator=torch.Generator().manual_seed(1))
    seen = []
    mixed, noised, inter = itermix_ksampler(KS.sample_heun, model, batch, sigmas,
                                            callback=lambda d: seen.append(d["i"]), disable=True)
    assert mixed.shape == noised.shape == inter.shape == (n + 1, *x0.shape)
    assert torch.equal(noised, batch.flip(0))
    assert torch.equal(mixed[0], noised[0]) and torch.equal(inter[0], torch.zeros_like(x0))
    c1 = blending_schedule(n)
    for i in range(n):
        assert torch.equal(inter[i + 1], KS.sample_heun(model, mixed[i], sigmas[i:i + 2], disable=True))
        assert torch.allclose(mixed[i + 1], (1 - c1[i]) * noised[i] + c1[i] * inter[i + 1], atol=1e-6)
    assert seen == list(range(n))
    wrapped = make_itermix_sampler(KS.sample_heun)(model, x0, sigmas, noised_latents=noised, disable=True)
    assert torch.equal(mixed[-1], wrapped)
    again = itermix_ksampler(KS.sample_heun, model, noised, sigmas, reverse_input_batch=False, disable=True)
    assert all(torch.equal(a, b) for a, b in zip(again, (mixed, noised, inter)))
    # the reference's layout: (n + 1, C, H, W) for one latent
    flat = batch[:, 0]
    one = itermix_ksampler(KS.sample_heun, model, flat[:, None], sigmas, disable=True)
    assert torch.allclose(one[0], mixed[:, :1], atol=1e-5)


def test_itermix_ksampler_with_noise_and_options(model):
    x0, sigmas, _ = setup(model)
    batch = batch_unsample(x0, sigmas, generator=torch.Generator().manual_seed(1))
    a = itermix_ksampler(KS.sample_euler_ancestral, model, batch, sigmas, seed=3, alpha_1=1.0, disable=True)
    b = itermix_ksampler(KS.sample_euler_ancestral, model, batch, sigmas, seed=3, alpha_1=1.0, disable=True)
    c = itermix_ksampler(KS.sample_euler_ancestral, model, batch, sigmas, seed=4, alpha_1=1.0, disable=True)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    before = itermix_ksampler(KS.sample_euler, model, batch, sigmas, mix="before_step", disable=True)
    assert torch.equal(before[0][1:], before[2][1:])


def test_errors(model):
    x0, sigmas, stack = setup(model)
    heun = make_itermix_sampler(KS.sample_heun)
    dpm = make_itermix_sampler(KS.sample_dpmpp_2m)
    cases = [
        (lambda: make_itermix_sampler(3), "sampler_fn"),
        (lambda: make_itermix_sampler(KS.sample_dpm_fast), "sigmas"),
        (lambda: make_itermix_sampler(KS.sample_heun, nope=1), "nope"),
        (lambda: make_itermix_sampler(KS.sample_heun, alpha_1="big"), "alpha_1"),
        (lambda: make_itermix_sampler(KS.sample_heun, seed=1), "seed"),
        (lambda: make_itermix_sampler(KS.sample_heun, brownian_noise="yes"), "brownian_noise"),
        (lambda: make_itermix_sampler(lambda model, x, sigmas, mix=1: x), "mix"),
        (lambda: dpm(model, x0, sigmas, s_churn=1.0), "s_churn"),
        (lambda: heun(model, x0, sigmas, blending_schedule="nope"), "blending_schedule"),
        (lambda: heun(model, x0, sigmas.flip(0)), "strictly decreasing"),
        (lambda: heun(model, x0, sigmas, noised_latents=stack[1:]), "noised_latents"),
        (lambda: make_itermix_sampler(KS.sample_euler_ancestral)(model, x0, sigmas, seed=-1), "seed"),
        (lambda: batch_unsample(x0, sigmas.flip(0)), "strictly decreasing"),
        (lambda: batch_unsample(x0, sigmas, noise="pink"), "noise"),
        (lambda: batch_unsample(x0[0, 0, 0], sigmas), "x0"),
        (lambda: itermix_ksampler(KS.sample_heun, model, stack, sigmas, rewind=True), "rewind"),
        (lambda: itermix_ksampler(KS.sample_heun, model, stack, sigmas, denoise_mask=torch.ones(1)), "denoise_mask"),
        (lambda: itermix_ksampler(KS.sample_heun, model, stack[1:], sigmas), "latent_batch"),
        (lambda: itermix_ksampler(KS.sample_heun, model, stack, sigmas, eta=1.0), "eta"),
    ]
    for call, match in cases:
        with pytest.raises((TypeError, ValueError), match=match):
            call()
