import math

import pytest
import torch

from itermix_kdiff.blending import BLENDING_FUNCTIONS, blend_addition, blend_norm_only, blend_slerp


def test_registry():
    assert set(BLENDING_FUNCTIONS) == {"addition", "slerp", "norm_only"}


def test_addition():
    z, x = torch.full((1, 2, 2, 2), 2.0), torch.full((1, 2, 2, 2), 4.0)
    assert torch.equal(blend_addition(z, x, torch.tensor(0.25)), torch.full((1, 2, 2, 2), 2.5))  # 0.75*2 + 0.25*4


def test_slerp_orthogonal_hand_value():
    z = torch.tensor([[1.0, 0.0]]).view(1, 2, 1, 1)
    x = torch.tensor([[0.0, 2.0]]).view(1, 2, 1, 1)
    out = blend_slerp(z, x, torch.tensor(0.5)).flatten()
    s = math.sin(math.pi / 4)  # omega = pi/2, sin(omega) = 1
    assert torch.allclose(out, torch.tensor([s, 2 * s]), atol=1e-6)


def test_slerp_matches_formula_per_row():
    g = torch.Generator().manual_seed(1)
    z, x = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
    w = torch.tensor(0.3)
    out = blend_slerp(z, x, w)
    for b in range(3):
        a, c = z[b].flatten().double(), x[b].flatten().double()
        omega = torch.acos(torch.dot(a / a.norm(), c / c.norm()))
        ref = torch.sin(0.7 * omega) / torch.sin(omega) * a + torch.sin(0.3 * omega) / torch.sin(omega) * c
        assert torch.allclose(out[b].flatten().double(), ref, atol=1e-5)


def test_slerp_parallel_falls_back_to_addition():
    z = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    x = z.clone()
    x[1] = 3 * z[1]  # row 1 parallel, different norm
    out = blend_slerp(z, x, torch.tensor(0.4))
    assert torch.isfinite(out).all()
    assert torch.allclose(out, blend_addition(z, x, torch.tensor(0.4)), atol=1e-6)


def test_slerp_zero_row_is_finite():
    z = torch.zeros(1, 4, 2, 2)
    x = torch.ones(1, 4, 2, 2)
    assert torch.isfinite(blend_slerp(z, x, torch.tensor(0.5))).all()


def test_half_inputs_use_float32_internals():
    # a half row whose squared norm overflows float16 (16384 * 16 > 65504)
    z = torch.full((1, 4, 64, 64), 4.0, dtype=torch.float16)
    x = torch.full((1, 4, 64, 64), -4.0, dtype=torch.float16)
    x[0, 0] = 4.0
    for name, f in BLENDING_FUNCTIONS.items():
        out = f(z, x, torch.tensor(0.5))
        assert out.dtype == torch.float16, name
        assert torch.isfinite(out).all(), name
        ref = f(z.float(), x.float(), torch.tensor(0.5))
        assert torch.allclose(out.float(), ref, atol=1e-2), name


def test_norm_only_keeps_noised_norm_and_turns_to_x():
    g = torch.Generator().manual_seed(3)
    z, x = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g) * 5
    out1 = blend_norm_only(z, x, 1.0)
    for b in range(2):
        assert torch.allclose(out1[b].norm(), z[b].norm(), rtol=1e-5)
        assert torch.allclose(out1[b] / out1[b].norm(), x[b] / x[b].norm(), atol=1e-6)
    assert torch.equal(blend_norm_only(z, x, 0.0), z)


@pytest.mark.parametrize("name", ["addition", "slerp", "norm_only"])
def test_inputs_untouched(name):
    g = torch.Generator().manual_seed(4)
    z, x = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    z0, x0 = z.clone(), x.clone()
    BLENDING_FUNCTIONS[name](z, x, torch.tensor(0.5))
    assert torch.equal(z, z0) and torch.equal(x, x0)
