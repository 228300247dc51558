"""docs/algorithm.md A4/A5 written out literally, step by step, with none of the
package's loop code: the tests compare the package's samplers against it.
It draws noise exactly as A1 says (one global randn per pass, k-major) and never
skips a model call."""

from __future__ import annotations

import torch

from itermix_kdiff.blending import BLENDING_FUNCTIONS
from itermix_kdiff.blending_schedules import blending_schedule


def a1_stack(x0, sigmas):
    n1, B = len(sigmas), x0.shape[0]
    eps = torch.randn((n1 * B, *x0.shape[1:]), dtype=x0.dtype)
    return torch.stack([x0 + eps[k * B:(k + 1) * B] * sigmas[k] for k in range(n1)])


def a4_euler(model, x0, sigmas, *, stack=None, blend="addition", mask=None, mask_fn=None,
             rewind_starts=(0,), **schedule_kwargs):
    n = len(sigmas) - 1
    c1 = blending_schedule(n, **schedule_kwargs)
    f = BLENDING_FUNCTIONS[blend]
    s_in = x0.new_ones([x0.shape[0]])

    def m_at(sigma):
        if mask is None:
            return None
        return mask if mask_fn is None else mask_fn(sigma.reshape(1), mask)

    x = x0
    for s in rewind_starts:
        z = stack if (s == 0 and stack is not None) else a1_stack(x, sigmas[s:])
        z = [z[k] for k in range(len(z))]
        if mask is not None:  # the reference multiplies with the compounded mask
            running = mask
            for k in range(len(z)):
                running = running if mask_fn is None else mask_fn(sigmas[s + k].reshape(1), running)
                z[k] = z[k] * running
        x = z[0].expand(x0.shape)
        for j, i in enumerate(range(s, n)):
            m = m_at(sigmas[i])
            if m is None:
                x_m, z_m = x, z[j].expand(x0.shape)
            else:
                x_m = x * m + x0 * (1. - m)
                z_m = z[j] * m + x0 * (1. - m)
            den = model(x_m, sigmas[i] * s_in)
            d = (x - den) / sigmas[i]
            x = x_m + d * (sigmas[i + 1] - sigmas[i])
            x = f(z_m, x, c1[i])
            if m is not None:
                x = x * m + x0 * (1. - m)
    return x


def a7_euler_perlin(model, x0, sigmas, P, *, stack, mode, strength, **schedule_kwargs):
    """A7 literally, for B = 1, no mask, no churn. ``P`` is ``(n, H, W, 1)``."""
    n = len(sigmas) - 1
    c1 = blending_schedule(n, **schedule_kwargs)
    c1p = 1.0 + strength * (c1 - 1.0)
    s_in = x0.new_ones([1])
    calls = 0

    def step(v, j):
        nonlocal calls
        calls += 1
        den = model(v, sigmas[j] * s_in)
        return v + (v - den) / sigmas[j] * (sigmas[j + 1] - sigmas[j])

    x = stack[0]
    for i in range(n):
        x = step(x, i)
        x = (1 - c1[i]) * stack[i] + c1[i] * x
        p = P[i].permute(2, 0, 1).unsqueeze(0)
        if mode == "latents":
            x = x * c1p[i] + p.expand_as(x) * (1. - c1p[i]) * x
        elif mode == "masks" and i < n - 1:
            x_p = step(x, i + 1)
            x = x * (1. - p) + (x * c1p[i + 1] + x_p * (1. - c1p[i + 1])) * p
        elif mode == "matched_noise":
            x = x * c1p[i] + p * (1. - c1p[i])
    return x, calls


def a9_lcm(model, x0, sigmas, *, stack, noise, **schedule_kwargs):
    """A9 lcm literally; ``noise[i]`` is the noise added after step i."""
    n = len(sigmas) - 1
    c1 = blending_schedule(n, **schedule_kwargs)
    s_in = x0.new_ones([x0.shape[0]])
    x = stack[0]
    for i in range(n):
        den = model(x, sigmas[i] * s_in)
        x = (1 - c1[i]) * stack[i] + c1[i] * den
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise[i]
    return x


def a9_dpmpp_2m(model, x0, sigmas, *, stack, **schedule_kwargs):
    """A9 dpmpp_2m literally (no mask): k-diffusion's update, then the blend."""
    n = len(sigmas) - 1
    c1 = blending_schedule(n, **schedule_kwargs)
    s_in = x0.new_ones([x0.shape[0]])
    x, old = stack[0], None
    for i in range(n):
        den = model(x, sigmas[i] * s_in)
        t, tn = -sigmas[i].log(), -sigmas[i + 1].log()
        h = tn - t
        if old is None or sigmas[i + 1] == 0:
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * den
        else:
            r = (t + sigmas[i - 1].log()) / h
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * ((1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old)
        x = (1 - c1[i]) * stack[i] + c1[i] * x
        old = den
    return x
