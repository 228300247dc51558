"""Sigma schedules (itermix_kdiff.sigmas) against k-diffusion, hand-worked values for
Stable Diffusion's table, the reference scheduler nodes' slicing, and the split-run
blending helper."""

import math

import k_diffusion as K
import pytest
import torch

from itermix_kdiff import sigmas as S
from itermix_kdiff.options import make_options
from itermix_kdiff.blending_schedules import sampler_weights
from itermix_kdiff.sampling import sample_itermix_euler
from itermix_kdiff.blending_schedules import blending_schedule
from .kd_models import TinyEps, discrete_denoiser, sd_alphas_cumprod

# Stable Diffusion's well-known sigma range (sqrt((1 - a)/a) at the table's two ends, float32).
SD_SIGMA_MIN = 0.0291675
SD_SIGMA_MAX = 14.614642


class CompVisStub(torch.nn.Module):
    """The two things k_diffusion.external.CompVisDenoiser reads from an LDM model."""

    def __init__(self):
        super().__init__()
        self.alphas_cumprod = sd_alphas_cumprod()

    def apply_model(self, x, t, cond=None):
        return torch.zeros_like(x)


@pytest.fixture(scope="module")
def sd():
    return K.external.CompVisDenoiser(CompVisStub())


def table(model):
    return model.sigmas.double()


def log_interp(model, t):
    """sigma at fractional timestep t: log sigma linear between table entries (float64)."""
    ls = table(model).log()
    lo, hi = math.floor(t), math.ceil(t)
    w = t - lo
    return math.exp((1 - w) * ls[lo] + w * ls[hi])


# ---------------------------------------------------------------- k-diffusion equality

def test_sd_range(sd):
    assert S.sigma_range(sd) == pytest.approx((SD_SIGMA_MIN, SD_SIGMA_MAX), rel=1e-5)


@pytest.mark.parametrize("n", [1, 2, 10, 25, 1000])
def test_range_schedules_equal_k_diffusion(sd, n):
    lo, hi = sd.sigmas[0].item(), sd.sigmas[-1].item()
    assert torch.equal(S.get_sigmas(sd, "karras", n), K.sampling.get_sigmas_karras(n, lo, hi))
    assert torch.equal(S.get_sigmas(sd, "exponential", n), K.sampling.get_sigmas_exponential(n, lo, hi))
    assert torch.equal(S.get_sigmas(sd, "polyexponential", n), K.sampling.get_sigmas_polyexponential(n, lo, hi))
    assert torch.equal(S.get_sigmas(sd, "vp", n), K.sampling.get_sigmas_vp(n))


@pytest.mark.parametrize("n", [1, 2, 10, 37, 999, 1000, 1500])
def test_normal_equals_discrete_schedule(sd, n):
    ours = S.get_sigmas(sd, "normal", n)
    assert ours.shape == (n + 1,) and ours.dtype == torch.float32 and ours[-1] == 0
    torch.testing.assert_close(ours, sd.get_sigmas(n), atol=1e-6, rtol=0)
    # A1111's "Uniform" is k-diffusion's get_sigmas; a quantizing wrapper changes nothing.
    assert torch.equal(S.get_sigmas(sd, "Uniform", n), ours)
    quantized = K.external.DiscreteEpsDDPMDenoiser(TinyEps(), sd_alphas_cumprod(), quantize=True)
    assert torch.equal(S.get_sigmas(quantized, "normal", n), ours)


def test_continuous_models_and_pairs():
    denoiser = K.layers.Denoiser(TinyEps(), sigma_data=0.5)
    expected = K.sampling.get_sigmas_karras(12, 0.01, 80.0)
    assert torch.equal(S.get_sigmas(denoiser, "karras", 12, sigma_min=0.01, sigma_max=80.0), expected)
    assert torch.equal(S.get_sigmas((0.01, 80.0), "karras", 12), expected)
    config = {"model": {"type": "image_v1", "sigma_min": 0.01, "sigma_max": 80.0}}
    assert torch.equal(S.get_sigmas(denoiser, "karras", 12, config=config), expected)
    # explicit values override the model's range
    assert torch.equal(S.get_sigmas((0.5, 2.0), "exponential", 5, sigma_max=80.0),
                       K.sampling.get_sigmas_exponential(5, 0.5, 80.0))
    with pytest.raises(ValueError, match="sigma range"):
        S.get_sigmas(denoiser, "karras", 12)
    for name in S.TABLE_SCHEDULERS:
        with pytest.raises(ValueError, match="discrete model"):
            S.get_sigmas((0.01, 80.0), name, 12)
        with pytest.raises(ValueError, match="discrete model"):
            S.get_sigmas(K.external.VDenoiser(TinyEps()), name, 12, sigma_min=0.01, sigma_max=80.0)


# ---------------------------------------------------------------- table schedules, by hand

def test_simple_hand_indices(sd):
    # stride L/steps = 1000/3: indices 999 - int(i * 333.33) = 999, 666, 333
    expected = [table(sd)[k] for k in (999, 666, 333)] + [0.0]
    torch.testing.assert_close(S.get_sigmas(sd, "simple", 3).double(), torch.tensor(expected, dtype=torch.float64))
    # stride 100: 999, 899, ..., 99
    ten = S.get_sigmas(sd, "simple", 10)
    torch.testing.assert_close(ten[:-1].double(), table(sd)[list(range(999, 0, -100))])
    assert ten[0].item() == pytest.approx(SD_SIGMA_MAX, rel=1e-6)
    # stride 1000/7 = 142.86 (a float): 999 - int(i * 142.86) = 999, 857, 714, 571, 428, 285, 142
    seven = S.get_sigmas(sd, "simple", 7)
    torch.testing.assert_close(seven[:-1].double(), table(sd)[[999, 857, 714, 571, 428, 285, 142]])


def test_ddim_uniform_hand_indices(sd):
    # stride 1000 // 10 = 100: indices 1, 101, ..., 901, highest first
    ten = S.get_sigmas(sd, "ddim_uniform", 10)
    torch.testing.assert_close(ten.double(), torch.cat([table(sd)[list(range(901, 0, -100))],
                                                        torch.zeros(1, dtype=torch.float64)]))
    # ComfyUI's length quirk: stride 1000 // 30 = 33 gives indices 1, 34, ..., 991 (31 of them)
    thirty = S.get_sigmas(sd, "ddim_uniform", 30)
    assert len(thirty) == 32
    torch.testing.assert_close(thirty[:-1].double(), table(sd)[list(range(991, 0, -33))])
    # A1111's name
    assert torch.equal(S.get_sigmas(sd, "DDIM", 30), thirty)


def test_sgm_uniform_hand_timesteps(sd):
    # linspace(999, 0, 5)[:-1] = 999, 749.25, 499.5, 249.75, sigmas log-interpolated
    expected = [log_interp(sd, t) for t in (999, 749.25, 499.5, 249.75)] + [0.0]
    torch.testing.assert_close(S.get_sigmas(sd, "SGM Uniform", 4).double(),
                               torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-7)
    # normal keeps both ends: 999, 666, 333, 0
    expected = [log_interp(sd, t) for t in (999, 666, 333, 0)] + [0.0]
    torch.testing.assert_close(S.get_sigmas(sd, "normal", 4).double(),
                               torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-7)


# Timesteps rint(999 * F^-1(1 - i/steps)) for Beta(0.6, 0.6), F^-1 worked out with mpmath
# (betainc(0.6, 0.6, 0, x, regularized=True) solved by findroot at 40 digits), e.g. for 4 steps
# 999 * F^-1 = 999, 823.4953, 499.5, 175.5047: rint rounds 499.5 to the even 500.
BETA_TIMESTEPS = {
    2: [999, 500],
    4: [999, 823, 500, 176],
    7: [999, 928, 782, 598, 401, 217, 71],
    10: [999, 959, 876, 765, 637, 500, 362, 234, 123, 40],
}


@pytest.mark.parametrize("steps", sorted(BETA_TIMESTEPS))
def test_beta_hand_timesteps(sd, steps):
    expected = torch.cat([table(sd)[BETA_TIMESTEPS[steps]], torch.zeros(1, dtype=torch.float64)])
    torch.testing.assert_close(S.get_sigmas(sd, "beta", steps).double(), expected)


def test_beta_skips_repeated_timesteps(sd):
    # 2000 steps over 1000 table entries must repeat timesteps; ComfyUI drops the repeats
    sigmas = S.get_sigmas(sd, "beta", 2000)
    assert len(sigmas) < 2001
    assert (sigmas[1:] < sigmas[:-1]).all()
    assert sigmas[0] == sd.sigmas[-1] and sigmas[-2] == sd.sigmas[0]


def test_linear_quadratic_hand_values(sd):
    # 4 steps: k = 2 linear steps of 0.025/2, then q = 1.9/8, l = 0.0125 - 0.95, c = 0.95:
    # u = 0, 0.0125, 0.025, 0.275, 1 -> sigma = (1 - u) sigma_max
    expected = torch.tensor([1.0, 0.9875, 0.975, 0.725, 0.0]) * sd.sigmas[-1]
    torch.testing.assert_close(S.get_sigmas(sd, "linear_quadratic", 4), expected)
    # 5 steps: k = 2, d = 1.875, q = 1.875/18, l = 0.0125 - 3.75/9, c = 4q:
    # u = 0, 0.0125, 0.025, 17/120, 7/15, 1
    expected = torch.tensor([1.0, 0.9875, 0.975, 103 / 120, 8 / 15, 0.0]) * sd.sigmas[-1]
    torch.testing.assert_close(S.get_sigmas(sd, "linear_quadratic", 5), expected)
    torch.testing.assert_close(S.get_sigmas((0.1, 10.0), "linear_quadratic", 1), torch.tensor([10.0, 0.0]))


def test_kl_optimal_hand_values(sd):
    lo, hi = SD_SIGMA_MIN, SD_SIGMA_MAX
    mid = math.tan((math.atan(lo) + math.atan(hi)) / 2)
    torch.testing.assert_close(S.get_sigmas(sd, "KL Optimal", 3).double(),
                               torch.tensor([hi, mid, lo, 0.0], dtype=torch.float64), rtol=2e-6, atol=0)
    # one step: ComfyUI's 0/0 would give NaN; we give [sigma_max, 0]
    torch.testing.assert_close(S.get_sigmas(sd, "kl_optimal", 1), torch.tensor([sd.sigmas[-1].item(), 0.0]))


def test_comfyui_zero_sigma_end():
    # A table starting within 1e-5 of 0: ComfyUI's normal spaces steps + 1 timesteps and appends no
    # 0; its ddim_uniform uses steps + 1 for the stride and appends no 0.
    sigmas = torch.cat([torch.tensor([2e-6, 4e-6]), torch.linspace(0.01, 10.0, 98)])
    model = K.external.DiscreteSchedule(sigmas, False)
    normal = S.get_sigmas(model, "normal", 5)
    assert len(normal) == 6 and normal[-1].item() == pytest.approx(2e-6, rel=1e-5)
    assert normal[0].item() == pytest.approx(10.0, rel=1e-6)
    ddim = S.get_sigmas(model, "ddim_uniform", 4)  # stride 100 // 5 = 20: indices 81, 61, 41, 21, 1
    torch.testing.assert_close(ddim, sigmas[[81, 61, 41, 21, 1]])


# ---------------------------------------------------------------- denoise and slicing

def test_denoise(sd):
    full = S.get_sigmas(sd, "karras", 20)
    half = S.get_sigmas(sd, "karras", 10, denoise=0.5)
    assert torch.equal(half, full[-11:])
    assert len(half) == 11 and half[0] < full[0] and half[-1] == 0
    # int(10 / 0.6) = 16 steps (not 17), the last 11 kept
    assert torch.equal(S.get_sigmas(sd, "normal", 10, denoise=0.6), S.get_sigmas(sd, "normal", 16)[-11:])
    assert torch.equal(S.get_sigmas(sd, "normal", 10, denoise=0.99995), S.get_sigmas(sd, "normal", 10))
    empty = S.get_sigmas(sd, "normal", 10, denoise=0.0)
    assert empty.shape == (0,) and empty.dtype == torch.float32
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="denoise"):
            S.get_sigmas(sd, "normal", 10, denoise=bad)


def test_advanced_slicing(sd):
    full = S.get_sigmas(sd, "karras", 40)
    first = S.get_sigmas_advanced(sd, "karras", 40, 0, 20)
    second = S.get_sigmas_advanced(sd, "karras", 40, 20)
    assert torch.equal(first, full[:21]) and torch.equal(second, full[20:])
    assert first[0] == full[0] and first[-1] == full[20] and second[-1] == 0
    assert torch.equal(S.get_sigmas_advanced(sd, "karras", 40, 20, 30), full[20:31])
    assert torch.equal(S.get_sigmas_advanced(sd, "karras", 40, 0, 40), full)  # end not < len - 1
    assert torch.equal(S.get_sigmas_advanced(sd, "karras", 40), full)
    for start, end in ((40, 10000), (25, 20), (20, 20), (100, 10000)):
        cut = S.get_sigmas_advanced(sd, "karras", 40, start, end)
        assert cut.shape == (0,) and cut.dtype == torch.float32
    # denoise first, then the cut
    assert torch.equal(S.get_sigmas_advanced(sd, "normal", 10, 2, 6, denoise=0.5),
                       S.get_sigmas(sd, "normal", 20)[-11:][2:7])


def test_bad_arguments(sd):
    with pytest.raises(ValueError, match="scheduler must be one of"):
        S.get_sigmas(sd, "cosine", 10)
    with pytest.raises(TypeError, match="scheduler"):
        S.get_sigmas(sd, None, 10)
    with pytest.raises(ValueError, match="steps"):
        S.get_sigmas(sd, "normal", 0)
    with pytest.raises(TypeError, match="steps"):
        S.get_sigmas(sd, "normal", 10.0)
    with pytest.raises(ValueError, match="start_at_step"):
        S.get_sigmas_advanced(sd, "normal", 10, -1)
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        S.get_sigmas((10.0, 1.0), "karras", 5)
    with pytest.raises(ValueError, match="sigma_min must be > 0"):
        S.get_sigmas((0.0, 1.0), "exponential", 5)


@pytest.mark.parametrize("scheduler", ["karras", "kl_optimal"])
def test_a_zero_sigma_min_is_named_for_the_schedules_that_reach_it(sd, scheduler):
    for model, kwargs in (((0.0, 14.6), {}), (sd, {"sigma_min": 0.0})):
        for steps in (2, 10):
            with pytest.raises(ValueError, match=f"scheduler '{scheduler}' reaches sigma_min=0 before its final 0.*"
                                                 f"give sigma_min > 0 \\(fewer steps do not help\\)"):
                S.get_sigmas(model, scheduler, steps, **kwargs)


def test_empty_schedules_are_refused_by_the_samplers_as_documented(sd):
    empty = S.get_sigmas(sd, "karras", 10, denoise=0.0)
    assert torch.equal(S.get_sigmas_advanced(sd, "karras", 10, 10), empty)
    with pytest.raises(ValueError, match="sigmas must be a 1-D floating-point tensor of at least 2 values"):
        sample_itermix_euler(discrete_denoiser(), torch.zeros(1, 4, 8, 8), empty, disable=True)
    for function in (S.get_sigmas, S.get_sigmas_advanced):
        assert "the samplers refuse" in " ".join(function.__doc__.split()) or \
            "Every sampler here refuses" in function.__doc__


def test_device_dtype_and_no_mutation(sd):
    before = sd.sigmas.clone()
    for name in S.SCHEDULERS:
        out = S.get_sigmas(sd, name, 8, device="cpu")
        assert out.dtype == torch.float32 and out.device.type == "cpu" and out[-1] == 0
        assert (out[1:] <= out[:-1]).all(), name
    assert torch.equal(sd.sigmas, before)


# ---------------------------------------------------------------- split runs

PCT_CASES = [
    dict(),
    dict(stop_blending_at_pct=0.75, clamp_blending_at_pct=0.9),
    dict(start_blending_at_pct=0.2, stop_blending_at_pct=0.29, clamp_blending_at_pct=0.5),
    dict(start_blending_at_pct=None, stop_blending_at_pct=None, clamp_blending_at_pct=None),
    dict(stop_blending_at_pct=1.7, clamp_blending_at_pct=1.0),
    dict(stop_blending_at_pct=1.25, clamp_blending_at_pct=0.9),
]
SPLITS = [(40, [(0, 20), (20, 10000)]), (30, [(0, 7), (7, 19), (19, 30)]), (100, [(0, 58), (58, 100)]),
          (25, [(0, 25)]), (12, [(0, 11), (11, 12)])]


def split_c1(steps, start, end, schedule, pcts):
    """c1 of one slice's run, as the sampler computes it from the helper's keywords."""
    kw = S.blending_args_for_split(steps, start, end, blending_schedule=schedule, **pcts)
    n = min(end, steps) - start
    total = kw.pop("schedule_steps", n)
    offset = kw.pop("schedule_offset", 0)
    return kw, blending_schedule(total, schedule, alpha_1=3.0, **kw)[offset:offset + n]


@pytest.mark.parametrize("schedule", ["cosine", "linear", "logistic", "demofusion"])
def test_split_runs_keep_full_c1(schedule):
    for pcts in PCT_CASES:
        for steps, slices in SPLITS:
            full = blending_schedule(steps, schedule, alpha_1=3.0, **pcts)
            for start, end in slices:
                kw, c1 = split_c1(steps, start, end, schedule, pcts)
                assert torch.equal(c1, full[start:start + len(c1)]), (schedule, pcts, steps, start, end)
                if start == 0 and schedule != "logistic":
                    # percentages the reference node accepts: no offset, clamp within [0, 1]
                    assert set(kw) == {"start_blending_at_pct", "stop_blending_at_pct", "clamp_blending_at_pct"}
                    assert kw["clamp_blending_at_pct"] is None or kw["clamp_blending_at_pct"] <= 1.0


def test_split_without_helper_differs():
    full = blending_schedule(40, "cosine")
    assert not torch.equal(blending_schedule(20, "cosine"), full[:20])


def test_worked_example():
    assert S.blending_args_for_split(40, 0, 20) == {
        "start_blending_at_pct": 0.0, "stop_blending_at_pct": 2.0, "clamp_blending_at_pct": 1.0}
    assert S.blending_args_for_split(40, 20) == {
        "start_blending_at_pct": 0.0, "stop_blending_at_pct": 1.0, "clamp_blending_at_pct": 1.0,
        "schedule_steps": 40, "schedule_offset": 20}
    # int(0.29 * 100) is 28 in floats: the helper keeps the 28
    kw = S.blending_args_for_split(100, 0, 50, stop_blending_at_pct=0.29)
    assert int(kw["stop_blending_at_pct"] * 50) == 28
    # stop = int(1.25 * 12) = 15 over an 11-step slice: int(15 / 11 * 11) is 14, so the helper
    # must pick another percentage
    kw = S.blending_args_for_split(12, 0, 11, stop_blending_at_pct=1.25)
    assert int(kw["stop_blending_at_pct"] * 11) == 15
    with pytest.raises(ValueError, match="no step"):
        S.blending_args_for_split(40, 40)
    with pytest.raises(ValueError, match="blending_schedule"):
        S.blending_args_for_split(40, 0, 20, blending_schedule="karras")


@pytest.mark.parametrize("schedule", ["cosine", "linear", "logistic", "demofusion"])
def test_sampler_split_uses_full_c1(schedule):
    """The core sampler's own c1 (sampler_weights) for the two slices of a real model's sigmas,
    with the helper's keywords, equals the full run's."""
    model = discrete_denoiser()
    full_sigmas = S.get_sigmas(model, "karras", 40)
    pcts = dict(stop_blending_at_pct=0.8, clamp_blending_at_pct=1.0, start_blending_at_pct=0.1)
    base = dict(blending_schedule=schedule, alpha_1=2.0)
    full = sampler_weights(model, full_sigmas, make_options(**base, **pcts))
    for start, end in ((0, 20), (20, 10000)):
        sigmas = S.get_sigmas_advanced(model, "karras", 40, start, end)
        kw = S.blending_args_for_split(40, start, end, blending_schedule=schedule, **pcts)
        c1 = sampler_weights(model, sigmas, make_options(**base, **kw))
        assert torch.equal(c1, full[start:start + 20]), (schedule, start)


def test_first_slice_run_matches_full_run_state():
    """End to end: with the same noised latents, the first slice's sampler run with the helper's
    percentages ends exactly where the full run is after the same steps; without the helper it
    does not."""
    model = discrete_denoiser()
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(1, 4, 8, 8, generator=g)
    full_sigmas = S.get_sigmas(model, "normal", 16)
    eps = torch.randn(17, 1, 4, 8, 8, generator=g)
    z = x0 + eps * full_sigmas.view(-1, 1, 1, 1, 1)
    states = {}
    sample_itermix_euler(model, x0, full_sigmas, noised_latents=z, disable=True, stop_blending_at_pct=0.9,
                         callback=lambda d: states.setdefault(d["i"], d["x"].clone()))
    sigmas = S.get_sigmas_advanced(model, "normal", 16, 0, 10)
    kw = S.blending_args_for_split(16, 0, 10, stop_blending_at_pct=0.9)
    out = sample_itermix_euler(model, x0, sigmas, noised_latents=z[:11], disable=True, **kw)
    torch.testing.assert_close(out, states[10], rtol=1e-6, atol=1e-6)
    naive = sample_itermix_euler(model, x0, sigmas, noised_latents=z[:11], disable=True, stop_blending_at_pct=0.9)
    assert not torch.allclose(naive, states[10], atol=1e-3)
