"""Noised latents ``z'_k = x0 + eps_k * sigma_k`` (docs/algorithm.md A1, B1, B2).

Three ways to get them:

- the reference's stack (A1): independent noise for every k, drawn as ONE
  ``torch.randn((n+1)*B, C, H, W)`` from the global RNG, k-major, so the random
  numbers match the ComfyUI node pack's for the same global seed;
- shared noise (B2, DemoFusion): one ``eps`` for every k, drawn as
  ``torch.randn(x0.shape, generator=generator)``;
- a lazy source (B1) that computes ``z'_k`` on demand and holds O(1) latents.

With a ``generator`` (or ``lazy=True``) independent noise is drawn per step from a
generator seeded with ``base_seed + k``, where ``base_seed`` is read from
``generator`` (or from the global RNG): a stack and a lazy source made from
generators in the same state hold the same numbers.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

NOISE_KINDS = ("independent", "shared")


class LazyNoisedLatents:
    """``z'_k`` computed on access from ``x0``, the sigmas and either one shared noise
    tensor or a base seed (B1). Indexable like the stack (``len(sigmas)`` entries of
    ``x0``'s shape) while holding only ``x0`` and at most one noise tensor."""

    def __init__(self, x0: torch.Tensor, sigmas: torch.Tensor, *,
                 shared_noise: Optional[torch.Tensor] = None, base_seed: Optional[int] = None):
        if (shared_noise is None) == (base_seed is None):
            raise ValueError("give exactly one of shared_noise and base_seed")
        self.x0 = x0
        self.sigmas = sigmas
        self.shared_noise = shared_noise
        self.base_seed = base_seed

    def __len__(self) -> int:
        return len(self.sigmas)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.x0.shape))

    def noise(self, k: int) -> torch.Tensor:
        if self.shared_noise is not None:
            return self.shared_noise
        return step_noise(self.x0, self.base_seed, k)

    def __getitem__(self, k: int) -> torch.Tensor:
        if not -len(self) <= k < len(self):
            raise IndexError(f"noised latent index {k} out of range for {len(self)} sigmas")
        k = k % len(self)
        return add_noise(self.x0, self.noise(k), self.sigmas[k])


#: What a sampler's ``noised_latents`` may be: a stack ``(n+1, B, C, H, W)`` or ``(n+1, C, H, W)``,
#: a :class:`LazyNoisedLatents`, or a sequence of latents.
NoisedLatents = Union[torch.Tensor, LazyNoisedLatents, Sequence[torch.Tensor]]


def latent_at(z: NoisedLatents, k: int, shape: torch.Size) -> torch.Tensor:
    """Entry ``k`` of a stack or lazy source, as a tensor of the latent's ``shape``
    (a stack without a batch dimension is shared by every row)."""
    z_k = z[k]
    return z_k.expand(shape) if z_k.shape != shape else z_k


def check_noised_latents(z: NoisedLatents, x: torch.Tensor, n: int) -> None:
    """A sampler's ``noised_latents`` for ``n`` steps of the latent ``x``: n + 1 latents of
    ``x``'s shape, with or without its batch dimension."""
    accepted = (f"a stack of shape ({n + 1}, {', '.join(map(str, x.shape))}) or "
                f"({n + 1}, {', '.join(map(str, x.shape[1:]))}), or a lazy source of {n + 1} latents")
    if isinstance(z, torch.Tensor):
        if z.shape[1:] not in (x.shape, x.shape[1:]) or len(z) != n + 1:
            raise ValueError(f"noised_latents must be {accepted}; got shape {tuple(z.shape)}")
        return
    if not (hasattr(z, "__len__") and hasattr(z, "__getitem__")):
        raise TypeError(f"noised_latents must be {accepted}; got {type(z).__name__}")
    if len(z) != n + 1:
        raise ValueError(f"noised_latents must be {accepted}; got {len(z)} latents")
    shape = getattr(z, "shape", None)
    if shape is not None and tuple(shape[1:]) not in (tuple(x.shape), tuple(x.shape[1:])):
        raise ValueError(f"noised_latents must be {accepted}; got shape {tuple(shape)}")


def fresh_noise(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Noise like ``x`` (churn, LCM) from ``generator``, or from the global RNG as k-diffusion
    and the reference draw it."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A1: ``x0 + eps * sigma``, computed in at least the sigmas' precision (as the reference,
    whose float32 sigmas promote a half latent), returned in ``x0``'s dtype."""
    dtype = torch.promote_types(x0.dtype, sigma.dtype)
    return (x0.to(dtype) + noise.to(dtype) * sigma.to(x0.device, dtype)).to(x0.dtype)


def step_noise(x0: torch.Tensor, base_seed: int, k: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Independent noise for step ``k``: a fresh generator on ``x0``'s device seeded ``base_seed + k``
    (written into ``out`` when given, e.g. one slot of a preallocated stack)."""
    g = torch.Generator(device=x0.device).manual_seed(base_seed + k)
    return torch.randn(x0.shape, generator=g, dtype=x0.dtype, device=x0.device, out=out)


def draw_base_seed(generator: Optional[torch.Generator]) -> int:
    """One 62-bit seed read from ``generator`` (or from the global RNG when None)."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=device).item())


def noised_latents(
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: str = "independent",
    generator: Optional[torch.Generator] = None,
    lazy: bool = False,
) -> Union[torch.Tensor, LazyNoisedLatents]:
    """The noised copies ``z'_k = x0 + eps_k * sigma_k`` of the clean latent, ``k = 0..n``.

    Returns a stack of shape ``(len(sigmas), *x0.shape)``, or with ``lazy=True`` a
    :class:`LazyNoisedLatents` holding O(1) latents (B1).

    - ``noise="independent"`` with no generator and ``lazy=False``: A1 exactly, one global
      ``torch.randn`` of shape ``((n+1)*B, ...)`` laid out k-major (the reference's numbers).
    - ``noise="independent"`` otherwise: ``eps_k`` from a generator seeded ``base_seed + k``,
      ``base_seed`` drawn from ``generator`` (or the global RNG).
    - ``noise="shared"`` (B2): ``eps = torch.randn(x0.shape, generator=generator)`` for every k.
    """
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 2:
        raise TypeError("x0 must be a floating-point tensor with a leading batch dimension (B, ...)")
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or len(sigmas) < 1:
        raise ValueError("sigmas must be a non-empty 1-D tensor")
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}; got {noise!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if noise == "shared":
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        if lazy:
            return LazyNoisedLatents(x0, sigmas, shared_noise=eps)
        return add_noise(x0, eps, _per_step(sigmas, x0.ndim))
    n1 = len(sigmas)
    if generator is None and not lazy:
        eps = torch.randn((n1 * x0.shape[0], *x0.shape[1:]), dtype=x0.dtype, device=x0.device)
        return add_noise_(x0, eps.view(n1, *x0.shape), _per_step(sigmas, x0.ndim))
    base_seed = draw_base_seed(generator)
    if lazy:
        return LazyNoisedLatents(x0, sigmas, base_seed=base_seed)
    eps = torch.empty((n1, *x0.shape), dtype=x0.dtype, device=x0.device)
    for k in range(n1):
        step_noise(x0, base_seed, k, out=eps[k])
    return add_noise_(x0, eps, _per_step(sigmas, x0.ndim))


def add_noise_(x0: torch.Tensor, eps: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """:func:`add_noise` over a whole stack, in place in ``eps`` (our own fresh tensor) when
    no precision promotion is involved: the stack then costs one stack of memory, not three."""
    if torch.promote_types(x0.dtype, sigmas.dtype) != x0.dtype:
        return add_noise(x0, eps, sigmas)
    return eps.mul_(sigmas.to(x0.device)).add_(x0)


def _per_step(sigmas: torch.Tensor, ndim: int) -> torch.Tensor:
    return sigmas.reshape(-1, *([1] * ndim))
