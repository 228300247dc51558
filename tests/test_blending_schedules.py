import math

import pytest
import torch

from itermix_kdiff import BLENDING_SCHEDULES, blending_schedule


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol)


def test_names_and_dtype():
    assert tuple(BLENDING_SCHEDULES) == ("cosine", "linear", "logistic", "demofusion")
    for name in BLENDING_SCHEDULES:
        c1 = blending_schedule(12, name)
        assert c1.dtype == torch.float32 and c1.shape == (12,)
        assert (c1 >= 0).all() and (c1 <= 1).all()


def test_cosine_hand_values():
    # 0.5 (1 + cos(pi (4 - t) / 4)) for t = 0..3, alpha 1 and 2
    base = [0.0, 0.5 * (1 - math.sqrt(0.5)), 0.5, 0.5 * (1 + math.sqrt(0.5))]
    assert close(blending_schedule(4, "cosine", alpha_1=1.0), base)
    assert close(blending_schedule(4, "cosine", alpha_1=2.0), [b * b for b in base])
    assert blending_schedule(4)[0] == 0  # exactly zero: the sampler may skip this step


def test_cosine_is_reference_float32():
    # the reference's float32 expression with integer steps, evaluated independently
    n, a = 7, 2.4
    t = torch.arange(n)
    expected = (0.5 * (1 + torch.cos(torch.pi * (n - t) / n))) ** a
    assert torch.equal(blending_schedule(n, alpha_1=a), expected)


def test_cosine_stop_ignores_start():
    c1 = blending_schedule(10, "cosine", alpha_1=1.0, stop_blending_at_pct=0.5, start_blending_at_pct=0.3)
    T = 5
    expected = [0.5 * (1 + math.cos(math.pi * (T - t) / T)) if t <= T else 1.0 for t in range(10)]
    assert close(c1, expected)
    assert c1[0] == 0


def test_linear_start_stop():
    c1 = blending_schedule(10, "linear", start_blending_at_pct=0.3, stop_blending_at_pct=0.8)
    expected = [0, 0, 0, 3 / 8, 4 / 8, 5 / 8, 6 / 8, 7 / 8, 1, 1]
    assert close(c1, expected)


def test_percent_conversion_is_python_int_of_float():
    # int(0.29 * 100) == 28 in Python floats (0.29 * 100 = 28.999999999999996)
    c1 = blending_schedule(100, "linear", start_blending_at_pct=0.29)
    assert c1[27] == 0 and c1[28] > 0


def test_logistic_values():
    n, a = 11, 1.0
    c1 = blending_schedule(n, "logistic", alpha_1=a, start_blending_at_pct=0.2, stop_blending_at_pct=0.9)
    m, start, stop = 10, 2, 9
    mid = (stop + start) / 2 / m
    expected = []
    for t in range(n):
        u = t / m
        v = 1 / (1 + math.exp(-5 * a * (u - mid)))
        v = 1.0 if u > stop / m else v
        v = 0.0 if u < start / m else v
        expected.append(v)
    assert close(c1, expected)


def test_demofusion_schedule():
    n, a = 8, 3.0
    c1 = blending_schedule(n, "demofusion", alpha_1=a)
    expected = [1 - (0.5 * (1 + math.cos(math.pi * t / n))) ** a for t in range(n)]
    assert close(c1, expected)
    p = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert close(blending_schedule(4, "demofusion", alpha_1=1.0, progress=p),
                 [0.0, 0.5 - 0.5 * math.sqrt(0.5), 0.5, 1.0])


def test_clamp_min_max():
    c1 = blending_schedule(10, "linear", clamp_blending_at_pct=0.5, blend_min=0.2, blend_max=0.6)
    raw = [t / 10 for t in range(5)] + [1.0] * 5
    assert close(c1, [0.2 + r * 0.4 for r in raw])
    off = blending_schedule(10, blend_min=1.0, blend_max=1.0)
    assert torch.equal(off, torch.ones(10))


def test_none_percentages_mean_defaults():
    assert torch.equal(blending_schedule(9, start_blending_at_pct=None, stop_blending_at_pct=None,
                                         clamp_blending_at_pct=None), blending_schedule(9))


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps"),
    (dict(steps=2.5), "steps"),
    (dict(steps=5, schedule="sigmoid"), "blending_schedule"),
    (dict(steps=5, stop_blending_at_pct=0.1), "stop_blending_at_pct"),
    (dict(steps=5, schedule="linear", stop_blending_at_pct=0.0), "stop_blending_at_pct"),
    (dict(steps=1, schedule="logistic"), "logistic"),
    (dict(steps=5, alpha_1=float("nan")), "alpha_1"),
    (dict(steps=5, alpha_1=-1.0), "alpha_1"),
    (dict(steps=5, blend_max=1.5), "blend_max"),
    (dict(steps=5, clamp_blending_at_pct=-0.1), "clamp_blending_at_pct"),
    (dict(steps=4, schedule="demofusion", progress=torch.zeros(3)), "progress"),
])
def test_errors(kwargs, match):
    steps = kwargs.pop("steps")
    with pytest.raises((ValueError, TypeError), match=match):
        blending_schedule(steps, **kwargs)
