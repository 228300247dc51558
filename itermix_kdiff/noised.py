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

``generator`` may also be a sequence of B generators, one per batch row (B1): row b's
noise then comes from generator b alone, exactly as when that row is sampled by itself
with that generator, so each image of a batch follows its own seed.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from ._checks import check_int

NOISE_KINDS = ("independent", "shared")

#: A run's source of randomness: None (the global RNG), one generator, or one per batch row.
Generators = Union[None, torch.Generator, Sequence[torch.Generator]]

#: A base seed (:func:`draw_base_seed`): one, or one per batch row.
Seeds = Union[int, Sequence[int]]


def check_generator(generator: Generators, name: str = "generator") -> None:
    """None, a torch.Generator, or a non-empty sequence of them (one per batch row)."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if (isinstance(generator, (list, tuple)) and generator
            and all(isinstance(g, torch.Generator) for g in generator)):
        return
    raise TypeError(f"{name} must be a torch.Generator, a list of them (one per batch row) or None, "
                    f"got {type(generator).__name__}")


def per_row(generator: Generators) -> bool:
    return isinstance(generator, (list, tuple))


def randn_rows(shape: Sequence[int], generator: Generators, dtype: torch.dtype,
               device: Union[str, torch.device]) -> torch.Tensor:
    """``torch.randn(shape)`` from ``generator`` (the global RNG when None); with one generator
    per row, row b is ``randn((1, *shape[1:]))`` from generator b. A generator on another
    device than ``device`` (a CPU generator for a CUDA latent, as the webuis seed) draws on its
    own device, and the noise is moved."""
    def draw(rows_shape: Sequence[int], g: Optional[torch.Generator]) -> torch.Tensor:
        on = device if g is None or g.device == torch.device(device) else g.device
        return torch.randn(tuple(rows_shape), generator=g, dtype=dtype, device=on).to(device)

    if not per_row(generator):
        return draw(shape, generator)
    if len(generator) != shape[0]:
        raise ValueError(f"generator holds {len(generator)} generators for a batch of {shape[0]}: "
                         f"give one per batch row")
    return torch.cat([draw((1, *shape[1:]), g) for g in generator])


class LazyNoisedLatents:
    """``z'_k`` computed on access from ``x0``, the sigmas and either one shared noise
    tensor or a base seed (B1). Indexable like the stack (``len(sigmas)`` entries of
    ``x0``'s shape) while holding only ``x0`` and at most one noise tensor."""

    def __init__(self, x0: torch.Tensor, sigmas: torch.Tensor, *,
                 shared_noise: Optional[torch.Tensor] = None, base_seed: Optional[Seeds] = None):
        if (shared_noise is None) == (base_seed is None):
            raise ValueError("give exactly one of shared_noise and base_seed")
        check_clean_latent(x0)
        check_noise_sigmas(sigmas)
        if shared_noise is not None:
            if (not isinstance(shared_noise, torch.Tensor) or shared_noise.shape != x0.shape
                    or shared_noise.dtype != x0.dtype or shared_noise.device != x0.device):
                got = (f"{tuple(shared_noise.shape)}, {shared_noise.dtype}, {shared_noise.device}"
                       if isinstance(shared_noise, torch.Tensor) else type(shared_noise).__name__)
                raise ValueError(f"shared_noise must be a tensor of x0's shape, dtype and device "
                                 f"({tuple(x0.shape)}, {x0.dtype}, {x0.device}); got {got}")
            if not torch.isfinite(shared_noise).all():
                raise ValueError("shared_noise contains NaN or inf")
        else:
            seeds = base_seed if isinstance(base_seed, (list, tuple)) else [base_seed]
            for seed in seeds:
                check_int("base_seed", seed, low=0)
            if isinstance(base_seed, (list, tuple)) and len(base_seed) != x0.shape[0]:
                raise ValueError(f"base_seed holds {len(base_seed)} seeds for a batch of {x0.shape[0]}: "
                                 f"give one per batch row")
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
    """A sampler's ``noised_latents`` for ``n`` steps of the latent ``x``: n + 1 finite latents
    of ``x``'s shape (with or without its batch dimension), dtype and device, as a stack, a
    list or tuple of tensors, a :class:`LazyNoisedLatents` (built from a checked ``x0``), or
    another lazy source (``len`` and indexing), whose latents are checked as they are read."""
    accepted = (f"a stack of shape ({n + 1}, {', '.join(map(str, x.shape))}) or "
                f"({n + 1}, {', '.join(map(str, x.shape[1:]))}), a list of {n + 1} such latents, or a lazy "
                f"source of {n + 1} latents")
    shapes = (tuple(x.shape), tuple(x.shape[1:]))
    if isinstance(z, LazyNoisedLatents):
        if len(z) != n + 1 or tuple(z.shape[1:]) not in shapes:
            raise ValueError(f"noised_latents must be {accepted}; got a lazy source of shape {tuple(z.shape)}")
        tensors = [z.x0]
    elif isinstance(z, torch.Tensor):
        if len(z) != n + 1 or tuple(z.shape[1:]) not in shapes:
            raise ValueError(f"noised_latents must be {accepted}; got shape {tuple(z.shape)}")
        tensors = [z]
    elif isinstance(z, (list, tuple)):
        bad = next((k for k, t in enumerate(z) if not isinstance(t, torch.Tensor)), None)
        if bad is not None:
            raise TypeError(f"noised_latents must be {accepted}; a list or tuple must hold only tensors, "
                            f"latent {bad} is {type(z[bad]).__name__}")
        if len(z) != n + 1:
            raise ValueError(f"noised_latents must be {accepted}; got {len(z)} latents")
        bad = next((k for k, t in enumerate(z) if tuple(t.shape) not in shapes), None)
        if bad is not None:
            raise ValueError(f"noised_latents must be {accepted}; latent {bad} has shape {tuple(z[bad].shape)}")
        tensors = list(z)
    elif hasattr(z, "__len__") and hasattr(z, "__getitem__") and not isinstance(z, (str, bytes, dict)):
        shape = getattr(z, "shape", None)
        if len(z) != n + 1 or (shape is not None and tuple(shape[1:]) not in shapes):
            raise ValueError(f"noised_latents must be {accepted}; got {len(z)} latents"
                             f"{'' if shape is None else f' of shape {tuple(shape)}'}")
        return  # another lazy source: each latent is checked as it is read (CheckedLatents)
    else:
        raise TypeError(f"noised_latents must be {accepted}; got {type(z).__name__}")
    for t in tensors:
        check_latent(t, x)


def check_latent(t: torch.Tensor, x: torch.Tensor) -> None:
    """A noised latent for the latent ``x``: finite, of ``x``'s dtype and device."""
    if not isinstance(t, torch.Tensor) or t.dtype != x.dtype or t.device != x.device:
        got = f"{t.dtype}, {t.device}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"noised_latents must have x's dtype and device ({x.dtype}, {x.device}); "
                         f"got {got}: convert them with .to(x)")
    if not torch.isfinite(t).all():
        raise ValueError("noised_latents contain NaN or inf")


class CheckedLatents:
    """A caller's own lazy source whose latents are checked (:func:`check_latent`, and their
    shape) as they are read."""

    def __init__(self, source: NoisedLatents, x: torch.Tensor):
        self.source = source
        self.x = x

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, k: int) -> torch.Tensor:
        z_k = self.source[k]
        check_latent(z_k, self.x)
        if tuple(z_k.shape) not in (tuple(self.x.shape), tuple(self.x.shape[1:])):
            raise ValueError(f"noised_latents[{k}] has shape {tuple(z_k.shape)}, not the latent's "
                             f"{tuple(self.x.shape)}")
        return z_k


def fresh_noise(x: torch.Tensor, generator: Generators) -> torch.Tensor:
    """Noise like ``x`` (churn, LCM) from ``generator`` (one, or one per row), or from the
    global RNG as k-diffusion and the reference draw it."""
    if generator is None:
        return torch.randn_like(x)
    return randn_rows(x.shape, generator, x.dtype, x.device)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A1: ``x0 + eps * sigma``, computed in at least the sigmas' precision (as the reference,
    whose float32 sigmas promote a half latent), returned in ``x0``'s dtype."""
    dtype = torch.promote_types(x0.dtype, sigma.dtype)
    return (x0.to(dtype) + noise.to(dtype) * sigma.to(x0.device, dtype)).to(x0.dtype)


def step_noise(x0: torch.Tensor, base_seed: Seeds, k: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Independent noise for step ``k``: a fresh generator on ``x0``'s device seeded ``base_seed + k``
    (with one base seed per row, row b from ``base_seed[b] + k``), written into ``out`` when
    given (e.g. one slot of a preallocated stack)."""
    def generator(seed: int) -> torch.Generator:
        return torch.Generator(device=x0.device).manual_seed(seed + k)

    if isinstance(base_seed, int):
        return torch.randn(x0.shape, generator=generator(base_seed), dtype=x0.dtype, device=x0.device, out=out)
    out = torch.empty_like(x0) if out is None else out
    for b, seed in enumerate(base_seed):
        torch.randn((1, *x0.shape[1:]), generator=generator(seed), dtype=x0.dtype, device=x0.device,
                    out=out[b:b + 1])
    return out


def draw_base_seed(generator: Generators) -> Seeds:
    """One 62-bit seed read from ``generator`` (or from the global RNG when None); a list of
    them, one read from each, for one generator per row."""
    if per_row(generator):
        return [draw_base_seed(g) for g in generator]
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=device).item())


def noised_latents(
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: str = "independent",
    generator: Generators = None,
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

    With one generator per batch row, row b's base seed (or shared noise) is drawn from
    generator b, so each row holds the numbers it would hold alone.
    """
    check_clean_latent(x0)
    check_noise_sigmas(sigmas)
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}; got {noise!r}")
    check_generator(generator)
    if not isinstance(lazy, bool):
        raise TypeError(f"lazy must be True or False, got {lazy!r}")
    if per_row(generator) and len(generator) != x0.shape[0]:
        raise ValueError(f"generator holds {len(generator)} generators for a batch of {x0.shape[0]}: "
                         f"give one per batch row")
    if noise == "shared":
        eps = randn_rows(x0.shape, generator, x0.dtype, x0.device)
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


def check_clean_latent(x0: torch.Tensor) -> None:
    """The clean latent that noised latents are made from: a finite floating-point ``(B, ...)`` tensor."""
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 2:
        raise TypeError("x0 must be a floating-point tensor with a leading batch dimension (B, ...)")
    if not torch.isfinite(x0).all():
        raise ValueError("x0 contains NaN or inf")


def check_noise_sigmas(sigmas: torch.Tensor) -> None:
    """The noise levels of noised latents: a non-empty 1-D floating-point tensor, finite and >= 0
    (unlike a sampling schedule, any order: the batch unsampler gives them rising)."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or len(sigmas) < 1 or not sigmas.is_floating_point():
        raise ValueError("sigmas must be a non-empty 1-D floating-point tensor")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError("sigmas must be finite and >= 0")


def add_noise_(x0: torch.Tensor, eps: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """:func:`add_noise` over a whole stack, in place in ``eps`` (our own fresh tensor) when
    no precision promotion is involved: the stack then costs one stack of memory, not three."""
    if torch.promote_types(x0.dtype, sigmas.dtype) != x0.dtype:
        return add_noise(x0, eps, sigmas)
    return eps.mul_(sigmas.to(x0.device)).add_(x0)


def _per_step(sigmas: torch.Tensor, ndim: int) -> torch.Tensor:
    return sigmas.reshape(-1, *([1] * ndim))
