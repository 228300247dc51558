"""Garbage in gives a clear error, never NaN or a quietly wrong picture; randomness follows the
generators it is given; the callback cannot change the caller's tensors."""

import math
from pathlib import Path

import pytest
import torch

from itermix_kdiff import SAMPLERS, ItermixOptions, noised_latents
from itermix_kdiff.demofusion import DilatedDenoiser
from itermix_kdiff.noised import LazyNoisedLatents
from itermix_kdiff.sigmas import get_sigmas
from itermix_kdiff.statistics import match_statistics

from .kd_models import discrete_denoiser, sd_alphas_cumprod

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # torchsde's float rounding notes


@pytest.fixture(scope="module")
def model():
    return discrete_denoiser()


def setup(model, n=6, batch=1):
    x0 = torch.randn((batch, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    return x0, model.get_sigmas(n)


def generator(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- sigmas


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("sigmas", [[10.0, 1.0, 0.0, 0.0], [10.0, 5.0, 5.0, 1.0, 0.0], [10.0, 0.0, 1.0]])
def test_sigmas_with_a_zero_before_the_end_or_a_repeat_are_refused(model, name, sigmas):
    x0, _ = setup(model)
    with pytest.raises(ValueError, match=r"sigmas must be strictly decreasing, 0 only at the end"):
        SAMPLERS[name](model, x0, torch.tensor(sigmas), disable=True, generator=generator(0))


def test_get_sigmas_never_gives_a_schedule_the_samplers_refuse(model):
    table_model = discrete_denoiser()
    assert len(table_model.sigmas) == len(sd_alphas_cumprod())
    with pytest.raises(ValueError, match=r"'simple' gives 200 repeated sigma\(s\) for steps=1200"):
        get_sigmas(table_model, "simple", 1200)
    sigmas = get_sigmas(table_model, "simple", 1000)
    assert (sigmas[1:] < sigmas[:-1]).all()
    with pytest.raises(ValueError, match="floating-point"):
        SAMPLERS["euler"](model, setup(model)[0], torch.tensor([10, 1, 0]), disable=True)


# ---------------------------------------------------------------- noised latents


class Source:
    """A caller's own lazy source: only len and indexing."""

    def __init__(self, stack):
        self.stack = stack

    def __len__(self):
        return len(self.stack)

    def __getitem__(self, k):
        return self.stack[k]


def test_noised_latents_are_checked_for_values_shapes_and_dtype(model):
    x0, sigmas = setup(model)
    euler = SAMPLERS["euler"]
    stack = noised_latents(x0, sigmas, generator=generator(1))
    bad = stack.clone()
    bad[2, 0, 0, 0, 0] = float("nan")
    cases = [
        (bad, "noised_latents contain NaN or inf"),
        ([torch.zeros(1, 4, 1, 1)] * len(sigmas), r"latent 0 has shape \(1, 4, 1, 1\)"),
        (stack.double(), "must have x's dtype and device"),
        (iter(stack), "got tuple_iterator"),
        (Source(stack.double()), "must have x's dtype"),
        (Source(stack[:, :, :2]), r"noised_latents\[0\] has shape"),
    ]
    for given, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            euler(model, x0, sigmas, noised_latents=given, disable=True)
    for same in (list(stack), Source(stack)):
        assert torch.equal(euler(model, x0, sigmas, noised_latents=same, disable=True),
                           euler(model, x0, sigmas, noised_latents=stack, disable=True))
    with pytest.raises(ValueError, match="sigmas must be finite"):
        noised_latents(x0, torch.tensor([1.0, float("nan"), 0.0]))
    with pytest.raises(ValueError, match="x0 contains NaN"):
        noised_latents(torch.full_like(x0, float("inf")), sigmas)
    with pytest.raises(TypeError, match="lazy must be True or False, got 'no'"):
        noised_latents(x0, sigmas, lazy="no")


def test_a_list_of_noised_latents_must_hold_only_tensors_each_checked(model):
    x0, sigmas = setup(model)
    stack = noised_latents(x0, sigmas, generator=generator(1))
    bad = stack.clone()
    bad[2] = float("nan")
    cases = [
        (list(bad)[:-1] + [None], TypeError, "noised_latents must be .* hold only tensors, latent 6 is NoneType"),
        ([torch.zeros(1, 4, 1, 1)] * (len(sigmas) - 1) + [0], TypeError, "latent 6 is int"),
        ([0.0] * len(sigmas), TypeError, "latent 0 is float"),
        (tuple(bad), ValueError, "noised_latents contain NaN or inf"),
    ]
    for given, error, message in cases:
        with pytest.raises(error, match=message):
            SAMPLERS["euler"](model, x0, sigmas, noised_latents=given, disable=True)


def test_a_lazy_source_built_directly_checks_its_sigmas_and_noise():
    x0 = torch.randn((1, 4, 8, 8), generator=generator(0))
    sigmas = torch.tensor([10.0, 1.0, 0.0])
    cases = [
        (dict(sigmas=torch.tensor([10.0, float("nan"), 0.0]), base_seed=1), "sigmas must be finite"),
        (dict(sigmas=torch.tensor([10.0, -1.0, 0.0]), base_seed=1), "sigmas must be finite and >= 0"),
        (dict(sigmas=sigmas, shared_noise=torch.full_like(x0, float("nan"))), "shared_noise contains NaN"),
        (dict(sigmas=sigmas, shared_noise=torch.zeros(1, 4, 1, 1)), "shared_noise must be a tensor of x0's shape"),
        (dict(sigmas=sigmas, shared_noise=torch.zeros_like(x0).double()), "x0's shape, dtype and device"),
        (dict(sigmas=sigmas, base_seed=[1, 2]), "base_seed holds 2 seeds for a batch of 1"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            LazyNoisedLatents(x0, **kwargs)
    with pytest.raises(TypeError, match="base_seed must be an int"):
        LazyNoisedLatents(x0, sigmas, base_seed=1.5)
    with pytest.raises(ValueError, match="x0 contains NaN"):
        LazyNoisedLatents(torch.full_like(x0, float("nan")), sigmas, base_seed=1)


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("value, message", [(float("nan"), "and NaN"), (5.0, "values from 0 to 5")])
def test_mask_values_must_lie_in_zero_one(model, value, message):
    x0, sigmas = setup(model)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 0, 0] = value
    with pytest.raises(ValueError, match=f"denoise_mask must hold values in \\[0, 1\\].*{message}"):
        SAMPLERS["euler"](model, x0, sigmas, denoise_mask=mask, disable=True)
    masks = torch.ones(len(sigmas) - 1, 1, 1, 8, 8)
    masks[3] = mask
    with pytest.raises(ValueError, match=f"mixing_masks must hold values in \\[0, 1\\].*{message}"):
        SAMPLERS["heun"](model, x0, sigmas, mixing_masks=masks, disable=True)

    def drift(sigma, m):
        return m * 1.5

    with pytest.raises(ValueError, match=r"denoise_mask_fn's result must hold values in \[0, 1\]"):
        SAMPLERS["euler"](model, x0, sigmas, denoise_mask=torch.ones(1, 1, 8, 8), denoise_mask_fn=drift,
                          disable=True)


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m", "heun"])
def test_the_mask_dtype_never_changes_the_runs_dtype(model, name):
    x0, sigmas = setup(model)
    mask = torch.ones(1, 1, 8, 8)
    mask[..., :4] = 0.0
    run = SAMPLERS[name]
    out = run(model, x0, sigmas, denoise_mask=mask, generator=generator(2), disable=True)
    wide = run(model, x0, sigmas, denoise_mask=mask.double(), generator=generator(2), disable=True)
    assert wide.dtype == torch.float32
    torch.testing.assert_close(wide, out)

    def half_model(x, sigma, **kwargs):  # as a webui runs a float32 model on a half latent
        return model(x.float(), sigma, **kwargs).to(x.dtype)

    half = run(half_model, x0.half(), sigmas, denoise_mask=mask, generator=generator(2), disable=True)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert torch.equal(half[..., :4], x0.half()[..., :4])  # kept where the mask is 0


# ---------------------------------------------------------------- option relations


def test_option_relations_are_checked_where_the_options_are_made(model):
    with pytest.raises(ValueError, match="blend_min must be <= blend_max"):
        ItermixOptions(blend_min=0.8, blend_max=0.2)
    for schedule in ("linear", "logistic"):
        with pytest.raises(ValueError, match="start_blending_at_pct must be < 1 with the"):
            ItermixOptions(blending_schedule=schedule, start_blending_at_pct=1.0)
    ItermixOptions(blending_schedule="cosine", start_blending_at_pct=1.0)  # cosine ignores start, as the reference
    x0, sigmas = setup(model)
    with pytest.raises(ValueError, match="blend_min must be <= blend_max"):
        SAMPLERS["dpmpp_2m"](model, x0, sigmas, blend_min=0.9, blend_max=0.1, disable=True)


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m", "lcm", "euler_perlin", "heun"])
@pytest.mark.parametrize("n, options, cause", [
    (6, dict(blend_max=0.0), r"blend_max=0\)"),
    (6, dict(alpha_1=1e6), r"alpha_1=1000000.0 with the cosine schedule"),
    (1, dict(), r"steps=1: the cosine schedule's c1 starts at 0"),
    (1, dict(blending_schedule="linear"), r"steps=1: the linear schedule's c1 starts at 0"),
    (6, dict(blending_schedule="linear", start_blending_at_pct=0.5, schedule_steps=20),
     r"start_blending_at_pct=0.5: c1 is 0 before step 10"),
])
def test_a_run_whose_every_step_the_blend_throws_away_is_refused(model, name, n, options, cause):
    x0, sigmas = setup(model, n=n)
    model.inner_model.calls = 0
    with pytest.raises(ValueError, match=f"every c1 is 0 for this run of {n} step\\(s\\) \\({cause}.*no step would be"):
        SAMPLERS[name](model, x0, sigmas, generator=generator(0), disable=True, **options)
    assert model.inner_model.calls == 0
    # mixing before the step, or only where a mixing mask lets it, still samples
    SAMPLERS[name](model, x0, sigmas, generator=generator(0), disable=True, **options, mix="before_step")
    SAMPLERS[name](model, x0, sigmas, generator=generator(0), disable=True, **options,
                   mixing_masks=torch.zeros(1, 1, 1, 8, 8))
    assert model.inner_model.calls > 0


def test_start_blending_at_pct_is_ignored_by_cosine_and_demofusion_as_the_readme_says(model):
    from itermix_kdiff.blending_schedules import blending_schedule

    for schedule in ("cosine", "demofusion"):
        assert torch.equal(blending_schedule(10, schedule, start_blending_at_pct=0.6), blending_schedule(10, schedule))
    assert not torch.equal(blending_schedule(10, "linear", start_blending_at_pct=0.6), blending_schedule(10, "linear"))
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert ("| `start_blending_at_pct` | 0.0 | before `int(pct * n)`, `c1 = 0` (`linear`, `logistic`; "
            "`cosine` and `demofusion` ignore it") in readme


def test_wrapped_samplers_check_their_own_keywords(model):
    x0, sigmas = setup(model)
    for name, value, error, message in [("euler_ancestral", float("nan"), ValueError, "eta must be finite"),
                                        ("euler_ancestral", "abc", TypeError, "eta must be a number, got str"),
                                        ("dpmpp_sde", 0.0, ValueError, r"r must be in \[1e-06, 1.0\]"),
                                        ("dpmpp_2m_sde", "rk4", ValueError, "solver_type must be one of")]:
        keyword = {"euler_ancestral": "eta", "dpmpp_sde": "r", "dpmpp_2m_sde": "solver_type"}[name]
        with pytest.raises(error, match=message):
            SAMPLERS[name](model, x0, sigmas, disable=True, **{keyword: value})


@pytest.mark.parametrize("name", ["euler_ancestral", "dpmpp_sde", "dpmpp_2m_sde"])
def test_a_wrapped_sampler_refuses_seed_with_its_own_noise_sampler(model, name):
    x0, sigmas = setup(model)

    def noise_sampler(sigma, sigma_next):
        return torch.zeros_like(x0)

    with pytest.raises(TypeError, match="give seed or noise_sampler, not both"):
        SAMPLERS[name](model, x0, sigmas, noise_sampler=noise_sampler, seed=3, disable=True)
    SAMPLERS[name](model, x0, sigmas, noise_sampler=noise_sampler, disable=True)
    SAMPLERS[name](model, x0, sigmas, seed=3, disable=True)


@pytest.mark.parametrize("name", ["dpmpp_2m", "lcm"])
@pytest.mark.parametrize("option", ["s_churn", "s_noise", "s_tmin", "s_tmax"])
def test_samplers_without_churn_refuse_the_churn_options(model, name, option):
    x0, sigmas = setup(model)
    with pytest.raises(TypeError, match=option):
        SAMPLERS[name](model, x0, sigmas, disable=True, **{option: 1.0})


def test_dilated_denoiser_keeps_a_constant_latent_finite():
    # a zero latent stays constant through the zero-padded blur, so its std is exactly 0
    zero = torch.zeros((1, 4, 16, 16))
    out = DilatedDenoiser(lambda x, sigma: x * 0.5, factor=2, blur_sigma=0.8)(zero, torch.tensor([1.0]))
    assert torch.equal(out, zero)
    like = torch.randn((2, 4, 3, 3), generator=generator(0))
    matched = match_statistics(torch.full((2, 4, 3, 3), 0.25), like)
    torch.testing.assert_close(matched, like.mean((1, 2, 3), keepdim=True).expand_as(like))


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m"])
def test_normalize_on_mean_on_a_one_pixel_latent_gives_no_nan(model, name):
    x0 = torch.randn((1, 4, 1, 1), generator=generator(0))
    sigmas = model.get_sigmas(4)
    with pytest.warns(DeprecationWarning, match="normalize_on_mean"):
        out = SAMPLERS[name](model, x0, sigmas, normalize_on_mean=True, generator=generator(1), disable=True)
    assert torch.equal(out, x0)  # one value per channel: matched to the input's, which it is
    x = torch.randn((2, 3, 1, 1), generator=generator(2))
    assert torch.equal(match_statistics(x, x0[:, :3].expand(2, 3, 1, 1), dims=(2, 3)), x0[:, :3].expand(2, 3, 1, 1))


# ---------------------------------------------------------------- randomness


def test_wrapped_churn_noise_comes_from_the_generator_and_leaves_the_global_rng_alone(model):
    x0, sigmas = setup(model)
    for name in ("heun", "dpm_2"):
        outs = []
        for global_seed in (1, 2):
            torch.manual_seed(global_seed)
            state = torch.get_rng_state()
            outs.append(SAMPLERS[name](model, x0, sigmas, s_churn=2.0, generator=generator(5), disable=True))
            assert torch.equal(torch.get_rng_state(), state), name
        assert torch.equal(*outs), name
        other = SAMPLERS[name](model, x0, sigmas, s_churn=2.0, generator=generator(6), disable=True)
        assert not torch.equal(outs[0], other)
        plain = SAMPLERS[name](model, x0, sigmas, generator=generator(5), disable=True)
        assert not torch.equal(outs[0], plain)  # the churn noise is used


#: Every sampler with the keywords that make its randomness per row.
PER_ROW = [
    ("euler", {"s_churn": 1.0, "rewind": True}),
    ("euler", {"noise": "shared", "lazy": True}),
    ("euler_perlin", {"perlin_mode": "masks"}),
    ("lcm", {}),
    ("dpmpp_2m", {"rewind": True}),
    ("euler_ancestral", {"rewind": True}),
    ("heun", {"s_churn": 1.0}),
    ("dpmpp_sde", {}),
    ("dpmpp_2m_sde", {"rewind": True}),
]


@pytest.mark.parametrize("name, kwargs", PER_ROW)
def test_each_row_of_a_batch_follows_its_own_generator_and_seed(model, name, kwargs):
    x0, sigmas = setup(model, batch=3)
    seeds = [11, 12, 13]
    params = SAMPLERS[name].__signature__.parameters

    def run(rows):
        extra = {"seed": [seeds[r] for r in rows]} if "seed" in params else {}
        return SAMPLERS[name](model, x0[rows], sigmas, generator=[generator(100 + r) for r in rows],
                              disable=True, **extra, **kwargs)

    batch = run([0, 1, 2])
    for r in range(3):
        torch.testing.assert_close(batch[r:r + 1], run([r]), rtol=1e-5, atol=1e-5)  # conv batching rounds
    assert not torch.allclose(batch[0], batch[1])
    with pytest.raises(ValueError, match="give one per batch row"):
        SAMPLERS[name](model, x0, sigmas, generator=[generator(1)] * 2, disable=True, **kwargs)


def test_one_generator_in_a_list_is_the_same_as_that_generator(model):
    x0, sigmas = setup(model)
    for name in ("euler", "lcm", "euler_ancestral"):
        a = SAMPLERS[name](model, x0, sigmas, generator=generator(3), s_churn=0.0, disable=True) \
            if name == "euler" else SAMPLERS[name](model, x0, sigmas, generator=generator(3), disable=True)
        b = SAMPLERS[name](model, x0, sigmas, generator=[generator(3)], disable=True)
        assert torch.equal(a, b), name


# ---------------------------------------------------------------- the callback


@pytest.mark.parametrize("name", ["euler", "euler_perlin", "dpmpp_2m", "lcm", "heun"])
def test_a_callback_that_clamps_in_place_changes_nothing_of_the_callers(model, name):
    x0, sigmas = setup(model)
    stack = noised_latents(x0, sigmas, generator=generator(1))
    given = (x0.clone(), sigmas.clone(), stack.clone())

    def clamp(d):
        for key in ("x", "denoised", "sigma", "sigma_hat"):
            d[key].clamp_(-0.01, 0.01)

    quiet = SAMPLERS[name](model, x0, sigmas, noised_latents=stack, generator=generator(2), disable=True)
    loud = SAMPLERS[name](model, x0, sigmas, noised_latents=stack, generator=generator(2), callback=clamp,
                          disable=True)
    assert all(torch.equal(a, b) for a, b in zip(given, (x0, sigmas, stack)))
    assert torch.equal(quiet, loud) and math.isfinite(loud.sum().item())
