"""ALGORITHM.md A4/A5 written out literally, step by step, with none of the
package's loop code: the tests compare the package's samplers against it.
It draws noise exactly as A1 says (one global randn per pass, k-major) and never
skips a model call."""

from __future__ import annotations

import torch

from itermix_kdiff.blending import BLENDING_FUNCTIONS
from itermix_kdiff.schedules import blending_schedule


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
