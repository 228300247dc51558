import inspect
import pydoc
import subprocess
import sys

import k_diffusion as K
import pytest
import torch

from itermix_kdiff import DEMOFUSION, ItermixOptions, noised_latents, sample_itermix_euler
from itermix_kdiff.options import make_options
from itermix_kdiff._loop import rewind_starts
from itermix_kdiff.blending_schedules import sampler_weights

from .kd_models import discrete_denoiser
from .reference_loop import a1_stack, a4_euler

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def model():
    return discrete_denoiser()


def setup(model, n=8, shape=(1, 4, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g)
    sigmas = model.get_sigmas(n)
    return x0, sigmas


class Counter:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.model(*args, **kwargs)


def test_mixing_off_equals_k_diffusion_euler(model):
    x0, sigmas = setup(model)
    stack = noised_latents(x0, sigmas, generator=torch.Generator().manual_seed(1))
    ours = sample_itermix_euler(model, x0, sigmas, noised_latents=stack, blend_min=1.0, blend_max=1.0, disable=True)
    theirs = K.sampling.sample_euler(model, stack[0], sigmas, disable=True)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("blend", ["addition", "slerp", "norm_only"])
@pytest.mark.parametrize("schedule", ["cosine", "linear", "logistic"])
def test_matches_a4_with_reference_random_numbers(model, blend, schedule):
    x0, sigmas = setup(model, n=6)
    torch.manual_seed(42)
    ours = sample_itermix_euler(model, x0, sigmas, blending_function=blend, blending_schedule=schedule,
                                start_blending_at_pct=0.2, disable=True)
    torch.manual_seed(42)
    ref = a4_euler(model, x0, sigmas, blend=blend, schedule=schedule, start_blending_at_pct=0.2)
    assert torch.equal(ours, ref)


def test_skip_where_c1_is_zero_same_tensor_fewer_calls(model):
    x0, sigmas = setup(model, n=10)
    stack = a1_stack(x0, sigmas)
    counted = Counter(model)
    seen = []
    ours = sample_itermix_euler(counted, x0, sigmas, noised_latents=stack, blending_schedule="linear",
                                start_blending_at_pct=0.3, callback=lambda d: seen.append(d), disable=True)
    ref_counted = Counter(model)
    ref = a4_euler(ref_counted, x0, sigmas, stack=stack, schedule="linear", start_blending_at_pct=0.3)
    assert torch.equal(ours, ref)
    assert ref_counted.calls == 10 and counted.calls == 7  # c1 = 0 at t = 0, 1, 2
    assert [d["i"] for d in seen] == list(range(10))
    assert torch.equal(seen[0]["denoised"], x0)


def test_batch_of_three_equals_three_single_runs(model):
    x0, sigmas = setup(model, shape=(3, 4, 8, 8))
    stack = noised_latents(x0, sigmas, generator=torch.Generator().manual_seed(3))
    for blend in ("addition", "slerp", "norm_only"):
        batch = sample_itermix_euler(model, x0, sigmas, noised_latents=stack, blending_function=blend, disable=True)
        for b in range(3):
            one = sample_itermix_euler(model, x0[b:b + 1], sigmas, noised_latents=stack[:, b:b + 1],
                                       blending_function=blend, disable=True)
            assert torch.allclose(batch[b:b + 1], one, atol=1e-6), blend


def test_unbatched_stack_is_shared_by_rows(model):
    x0, sigmas = setup(model, shape=(1, 4, 8, 8))
    stack = noised_latents(x0, sigmas, generator=torch.Generator().manual_seed(3))
    a = sample_itermix_euler(model, x0, sigmas, noised_latents=stack[:, 0], disable=True)
    b = sample_itermix_euler(model, x0, sigmas, noised_latents=stack, disable=True)
    assert torch.equal(a, b)


def test_denoise_mask_keeps_x0_and_matches_a4(model):
    x0, sigmas = setup(model)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0
    stack = a1_stack(x0, sigmas)
    ours = sample_itermix_euler(model, x0, sigmas, noised_latents=stack, denoise_mask=mask, disable=True)
    ref = a4_euler(model, x0, sigmas, stack=stack, mask=mask)
    assert torch.equal(ours, ref)
    keep = (mask == 0).expand_as(x0)
    assert torch.equal(ours[keep], x0[keep])
    assert not torch.allclose(ours[~keep], x0[~keep])


def test_denoise_mask_fn_compounds_as_the_reference(model):
    x0, sigmas = setup(model)
    mask = torch.linspace(0, 1, 64).view(1, 1, 8, 8)

    def differential(sigma, m):  # differential diffusion's threshold rule
        thr = (sigma / sigmas[0]).item()
        return (m >= thr).to(m.dtype)

    stack = a1_stack(x0, sigmas)
    ours = sample_itermix_euler(model, x0, sigmas, noised_latents=stack, denoise_mask=mask,
                                denoise_mask_fn=differential, disable=True)
    ref = a4_euler(model, x0, sigmas, stack=stack, mask=mask, mask_fn=differential)
    assert torch.equal(ours, ref)


def test_mixing_masks(model):
    x0, sigmas = setup(model)
    stack = a1_stack(x0, sigmas)
    n = len(sigmas) - 1
    zero = sample_itermix_euler(model, x0, sigmas, noised_latents=stack, mixing_masks=torch.zeros(n, 1, 8, 8),
                                disable=True)
    assert torch.equal(zero, K.sampling.sample_euler(model, stack[0], sigmas, disable=True))
    ones = sample_itermix_euler(model, x0, sigmas, noised_latents=stack, mixing_masks=torch.ones(1, 1, 8, 8),
                                disable=True)
    assert torch.allclose(ones, sample_itermix_euler(model, x0, sigmas, noised_latents=stack, disable=True), atol=1e-6)
    half = torch.zeros(n, 1, 8, 8)
    half[..., :4] = 1
    out = sample_itermix_euler(model, x0, sigmas, noised_latents=stack, mixing_masks=half, disable=True)
    assert not torch.allclose(out, zero) and not torch.allclose(out, ones)


@pytest.mark.parametrize("n, r, R, expected", [
    (20, 0.5, 0.8, [0, 10, 15]),
    (10, 0.5, 0.8, [0, 5, 7, 8]),
    (4, 0.5, 0.8, [0, 2, 3]),
    (10, 0.0, 0.8, [0]),
    (30, 0.3, 1.0, [0, 9, 15, 19, 22, 24, 25, 26, 27]),  # 27 + int(0.9) = 27 stops
])
def test_rewind_ranges(n, r, R, expected):
    assert rewind_starts(n, r, R) == expected


def test_rewind_matches_a5(model):
    x0, sigmas = setup(model, n=10)
    counted = Counter(model)
    seen = []
    torch.manual_seed(7)
    ours = sample_itermix_euler(counted, x0, sigmas, rewind=True, callback=lambda d: seen.append(d["i"]), disable=True)
    torch.manual_seed(7)
    ref = a4_euler(model, x0, sigmas, rewind_starts=(0, 5, 7, 8))
    assert torch.equal(ours, ref)
    assert seen == list(range(10)) + list(range(5, 10)) + list(range(7, 10)) + list(range(8, 10))
    assert counted.calls == 10 + 5 + 3 + 2 - 1  # only the very first step has c1 == 0


def test_normalize_on_mean_warns_and_matches_statistics(model):
    x0, sigmas = setup(model)
    with pytest.warns(DeprecationWarning, match="normalize_on_mean"):
        out = sample_itermix_euler(model, x0, sigmas, normalize_on_mean=True, disable=True)
    assert torch.allclose(out.mean(dim=(2, 3)), x0.mean(dim=(2, 3)), atol=1e-5)
    assert torch.allclose(out.std(dim=(2, 3)), x0.std(dim=(2, 3)), atol=1e-5)


def test_demofusion_mode_leaves_no_residual_noise():
    target = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    class Oracle(torch.nn.Module):  # an ideal denoiser for a one-point data set
        def forward(self, x, sigma):
            return target.expand_as(x)

    sigmas = K.sampling.get_sigmas_karras(8, 0.03, 10.0)
    x0 = target + 0.1
    g = torch.Generator().manual_seed(1)
    demo = sample_itermix_euler(Oracle(), x0, sigmas, generator=g, disable=True, **DEMOFUSION)
    assert torch.allclose(demo, target, atol=1e-5)
    ref = sample_itermix_euler(Oracle(), x0, sigmas, generator=g, disable=True)
    assert (ref - target).abs().max() > 1e-3  # the reference mixes noised z'_{n-1} in after the last step


def test_demofusion_schedule_uses_model_timesteps(model):
    x0, sigmas = setup(model, n=5)
    seen = {}

    def fake_blend(z, x, w):
        seen.setdefault("w", []).append(float(w))
        return (1 - w) * z + w * x

    from itermix_kdiff import blending
    original = blending.BLENDING_FUNCTIONS["addition"]
    blending.BLENDING_FUNCTIONS["addition"] = fake_blend
    try:
        sample_itermix_euler(model, x0, sigmas, generator=torch.Generator().manual_seed(0), disable=True, **DEMOFUSION)
    finally:
        blending.BLENDING_FUNCTIONS["addition"] = original
    t = model.sigma_to_t(sigmas[:-1])
    p = (1000 - t) / 1000
    expected = 1 - (0.5 * (1 + torch.cos(torch.pi * p))) ** 3.0
    assert torch.allclose(torch.tensor(seen["w"]), expected, atol=1e-6)


def test_lazy_and_generator_reproduce(model):
    x0, sigmas = setup(model)
    a = sample_itermix_euler(model, x0, sigmas, generator=torch.Generator().manual_seed(4), lazy=True, disable=True)
    b = sample_itermix_euler(model, x0, sigmas, generator=torch.Generator().manual_seed(4), disable=True)
    c = sample_itermix_euler(model, x0, sigmas, generator=torch.Generator().manual_seed(5), disable=True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_schedule_offset_uses_full_curve(model):
    x0, sigmas = setup(model, n=10)
    full = sampler_weights(model, sigmas, make_options())
    second = sampler_weights(model, sigmas[4:], make_options(schedule_steps=10, schedule_offset=4))
    assert torch.equal(second, full[4:])
    with pytest.raises(ValueError, match="schedule_offset"):
        sample_itermix_euler(model, x0, sigmas[4:], schedule_steps=10, schedule_offset=5, disable=True)


def test_inputs_untouched(model):
    x0, sigmas = setup(model)
    stack = a1_stack(x0, sigmas)
    mask = torch.ones(1, 1, 8, 8)
    keep = [t.clone() for t in (x0, sigmas, stack, mask)]
    sample_itermix_euler(model, x0, sigmas, noised_latents=stack, denoise_mask=mask, rewind=True, disable=True)
    for t, k in zip((x0, sigmas, stack, mask), keep):
        assert torch.equal(t, k)


def test_half_precision(model):
    x0, sigmas = setup(model)

    def half_model(x, sigma):
        return model(x.float(), sigma).half()

    for blend in ("addition", "slerp", "norm_only"):
        out = sample_itermix_euler(half_model, x0.half(), sigmas, blending_function=blend,
                                   generator=torch.Generator().manual_seed(0), disable=True)
        ref = sample_itermix_euler(model, x0, sigmas, blending_function=blend,
                                   generator=torch.Generator().manual_seed(0), disable=True)
        assert out.dtype == torch.float16 and torch.isfinite(out).all()
        assert (out.float() - ref).abs().max() < 0.05


def test_extra_args_reach_model_and_callback_keys(model):
    x0, sigmas = setup(model)
    got = []

    def m(x, sigma, cond=None):
        got.append(cond)
        return model(x, sigma)

    keys = []
    sample_itermix_euler(m, x0, sigmas, extra_args={"cond": "c"}, callback=lambda d: keys.append(set(d)), disable=True)
    assert got and all(c == "c" for c in got)
    assert keys[0] == {"x", "i", "sigma", "sigma_hat", "denoised"}


def test_signature_defaults_match_options():
    params = inspect.signature(sample_itermix_euler).parameters
    for name, field in ItermixOptions.__dataclass_fields__.items():
        assert params[name].default == field.default, name
    assert list(params)[:7] == ["model", "x", "sigmas", "extra_args", "callback", "disable", "noised_latents"]


def bad_cases(x0, sigmas):
    n = len(sigmas) - 1
    return [
        (dict(blending_schedule="nope"), "blending_schedule"),
        (dict(blending_function="nope"), "blending_function"),
        (dict(mix="sideways"), "mix"),
        (dict(noise="pink"), "noise"),
        (dict(noised_latents=torch.zeros(n, *x0.shape)), "noised_latents"),
        (dict(noised_latents=torch.zeros(n + 1, 1, 4, 9, 8)), "noised_latents"),
        (dict(sigmas=sigmas.flip(0)), "strictly decreasing"),
        (dict(sigmas=sigmas[None]), "1-D"),
        (dict(sigmas=sigmas[:1]), "sigmas"),
        (dict(stop_blending_at_pct=0.05), "stop_blending_at_pct"),
        (dict(rewind=True, rewind_min=0.8, rewind_max=0.5), "rewind_min"),
        (dict(rewind=True, rewind_max=1.5), "rewind_max"),
        (dict(rewind_min=-0.1), "rewind_min"),
        (dict(denoise_mask=torch.ones(1, 1, 7, 8)), "denoise_mask"),
        (dict(denoise_mask_fn=lambda s, m: m), "denoise_mask"),
        (dict(mixing_masks=torch.ones(n + 2, 1, 8, 8)), "mixing_masks"),
        (dict(mixing_masks=torch.ones(n, 1, 5, 8)), "mixing_masks"),
        (dict(x=torch.full_like(x0, float("nan"))), "x"),
        (dict(sigmas=torch.tensor([float("inf"), 1.0, 0.0])), "sigmas"),
        (dict(generator=3), "generator"),
        (dict(alpha_1="big"), "alpha_1"),
        (dict(unknown_option=1), "unknown_option"),
        (dict(schedule_steps=0), "schedule_steps"),
    ]


def test_errors(model):
    x0, sigmas = setup(model)
    for kwargs, match in bad_cases(x0, sigmas):
        kwargs = dict(kwargs)
        x = kwargs.pop("x", x0)
        s = kwargs.pop("sigmas", sigmas)
        with pytest.raises((ValueError, TypeError), match=match):
            sample_itermix_euler(model, x, s, disable=True, **kwargs)


def test_core_imports_only_torch():
    # whatever torch itself pulls in is fine; the package may add nothing else
    code = ("import sys, torch; before = {m.split('.')[0] for m in sys.modules}; import itermix_kdiff; "
            "new = {m.split('.')[0] for m in sys.modules} - before - {'itermix_kdiff'}; "
            "print(sorted(new)); sys.exit(1 if new else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_demofusion_progress_respects_schedule_offset_and_clamp(model):
    sigmas = model.get_sigmas(40)
    kw = dict(blending_schedule="demofusion", alpha_1=3.0, clamp_blending_at_pct=0.75)
    full = sampler_weights(model, sigmas, make_options(**kw))
    second = sampler_weights(model, sigmas[20:], make_options(schedule_steps=40, schedule_offset=20, **kw))
    assert torch.equal(second, full[20:])
    assert (full[30:] == 1).all() and (full[:30] < 1).all()


def test_threads_set_by_a_test_do_not_leak_to_the_next_one_part_1():
    torch.set_num_threads(THREADS_AT_IMPORT + 1)
    assert torch.get_num_threads() == THREADS_AT_IMPORT + 1


def test_threads_set_by_a_test_do_not_leak_to_the_next_one_part_2():
    # runs after part 1 (pytest keeps file order): the conftest fixture restored the count
    assert torch.get_num_threads() == THREADS_AT_IMPORT


THREADS_AT_IMPORT = torch.get_num_threads()


def test_options_check_themselves_where_they_are_made():
    from itermix_kdiff import ItermixOptions

    with pytest.raises(ValueError, match=r"alpha_1 must be >= 0.0, got -3.0"):
        ItermixOptions(alpha_1=-3.0)
    with pytest.raises(ValueError, match=r"blending_function must be one of addition, slerp, norm_only; got 'nope'"):
        ItermixOptions(blending_function="nope")
    with pytest.raises(ValueError, match=r"blending_schedule must be one of cosine, linear, logistic, demofusion"):
        ItermixOptions(blending_schedule="karras")
    assert ItermixOptions().blend is ItermixOptions(blending_function="addition").blend


def test_a_preset_goes_over_the_options_and_under_what_the_user_chose():
    from itermix_kdiff.options import apply_preset

    options = {"alpha_1": 1.5, "mix": "after_step", "blending_function": "slerp"}
    assert apply_preset("reference", options) == options
    assert apply_preset("demofusion", options) == {**options, **DEMOFUSION}
    assert apply_preset("demofusion", options, chosen=["mix", "rewind"]) == {**options, **DEMOFUSION,
                                                                            "mix": "after_step"}
    with pytest.raises(ValueError, match="preset must be one of reference, demofusion"):
        apply_preset("fast", options)


def test_every_native_sampler_shows_the_options_with_their_defaults():
    import dataclasses

    from itermix_kdiff import ItermixOptions, sample_itermix_dpmpp_2m, sample_itermix_euler_perlin, sample_itermix_lcm
    from itermix_kdiff.options import CHURN_OPTIONS

    defaults = {f.name: f.default for f in dataclasses.fields(ItermixOptions)}
    for fn, churn in ((sample_itermix_euler, True), (sample_itermix_euler_perlin, True),
                      (sample_itermix_dpmpp_2m, False), (sample_itermix_lcm, False)):
        params = inspect.signature(fn).parameters
        shown = {name: p.default for name, p in params.items() if name in defaults}
        expected = {name: d for name, d in defaults.items() if churn or name not in CHURN_OPTIONS}
        assert shown == expected, fn.__name__
        assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in shown)
        assert "alpha_1=2.4" in pydoc.render_doc(fn)  # what help() shows
    assert "perlin_scale=10.0" in str(inspect.signature(sample_itermix_euler_perlin))
    assert list(inspect.signature(sample_itermix_lcm).parameters)[7] == "noise_sampler"
    with pytest.raises(TypeError, match="s_churn"):
        sample_itermix_dpmpp_2m(lambda x, s: x, torch.zeros(1, 1, 2, 2), torch.tensor([1.0, 0.0]), s_churn=1.0)
