"""DemoFusion's tiled ("local") and dilated ("global") denoising as k-diffusion model wrappers.

DemoFusion (Du et al., 2023) makes a model trained at one size generate images several times
larger with three mechanisms: the skip residual (iterative mixing, docs/algorithm.md B2, done by
`itermix_kdiff.sampling`), MultiDiffusion-style tiled denoising and dilated sampling. The last
two act on the denoiser call alone, so here they are wrappers with k-diffusion's denoiser
signature `(x, sigma, **extra_args) -> denoised` that work with every model and every sampler.

How windows are batched: `view_batch_size` windows go into one model call, so the batch of the
call is `views * B`, laid out view-major (all B rows of view 0, then view 1, ...). `sigma` of
shape (B,) is repeated the same way. In `extra_args`, searched recursively through dicts, lists
and tuples, a tensor whose first dimension equals B is per-sample: when its last two dimensions
also equal x's (H, W) it is spatial conditioning (an inpainting mask, a concat latent) and is
cut exactly like x; otherwise it is repeated once per view. Anything else is passed unchanged.
"""

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_int, check_number
from .options import DEMOFUSION
from ._loop import progress_bar
from .blending_schedules import cosine_factor, discrete_wrapper, progress_at
from .sampling import sample_itermix_euler
from .statistics import match_statistics

IntPair = Union[int, Tuple[int, int]]

WINDOW_WEIGHTS = ("uniform", "gaussian")

#: DemoFusion's defaults, shared by every entry point below: the cosine scales of its
#: pipeline, the blur std of its demos (its signature says 1.0), and windows per model call.
COSINE_SCALE_2 = 1.0
COSINE_SCALE_3 = 1.0
BLUR_SIGMA = 0.8
VIEW_BATCH_SIZE = 16


# Validation

def _pair(value: Any, name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")
    if min(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value[0]), int(value[1])


def _check_tiling(window: IntPair, stride: IntPair, view_batch_size: int,
                  weights: str) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    window, stride = _pair(window, "window"), _pair(stride, "stride")
    if stride[0] > window[0] or stride[1] > window[1]:
        # Windows further apart than their size would leave pixels no window covers.
        raise ValueError(f"stride must not exceed window in either dimension, got stride={stride}, "
                         f"window={window}")
    _check_view_batch_size(view_batch_size)
    if weights not in WINDOW_WEIGHTS:
        raise ValueError(f"weights must be one of {WINDOW_WEIGHTS}, got {weights!r}")
    return window, stride


def _check_view_batch_size(view_batch_size: int) -> None:
    check_int("view_batch_size", view_batch_size, low=1)


def _check_factor(factor: int) -> None:
    check_int("factor", factor, low=1)


def _make_generator(generator: Optional[torch.Generator], seed: int) -> torch.Generator:
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        return generator
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return torch.Generator().manual_seed(seed)


# Running a model on many views of x in batches

def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` applied to every tensor in ``obj``, through dicts, lists, tuples and namedtuples,
    each rebuilt as its own type (a namedtuple field by field, as A1111's
    ``ScheduledPromptConditioning``); any other object, subclasses of those included, is
    returned as it is: its constructor cannot be guessed."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    kind = type(obj)
    if kind is dict:
        return {key: _map_tensors(value, fn) for key, value in obj.items()}
    if kind is list or kind is tuple:
        return kind(_map_tensors(value, fn) for value in obj)
    if isinstance(obj, tuple) and hasattr(kind, "_fields"):
        return kind._make(_map_tensors(value, fn) for value in obj)
    return obj


def _denoise_views(model: Callable, x_in: torch.Tensor, sigma: torch.Tensor, extra_args: dict,
                   n_views: int, prepare: Callable[[torch.Tensor], torch.Tensor],
                   take: Callable[[torch.Tensor, int], torch.Tensor],
                   view_batch_size: int, batch: int, size: Tuple[int, int]):
    """Yield `(view, denoised view)` for every view, `view_batch_size` views per model call.

    `x_in` is already prepared (padded); `take(t, v)` cuts view v out of a prepared tensor;
    `prepare` prepares spatial tensors of extra_args; `batch` and `size` are the B and (H, W)
    of the unprepared x.
    """

    def per_view(t: torch.Tensor, views: Sequence[int]) -> torch.Tensor:
        if t.ndim == 0 or t.shape[0] != batch:
            return t
        if t.ndim >= 3 and tuple(t.shape[-2:]) == size:
            prepared = prepare(t)
            return torch.cat([take(prepared, v) for v in views])
        return t.repeat(len(views), *([1] * (t.ndim - 1)))

    for first in range(0, n_views, view_batch_size):
        views = range(first, min(first + view_batch_size, n_views))
        x_views = torch.cat([take(x_in, v) for v in views])
        sigma_views = per_view(sigma, views)
        args = _map_tensors(extra_args, lambda t: per_view(t, views))
        denoised = model(x_views, sigma_views, **args)
        yield from zip(views, denoised.chunk(len(views)))


# 1. Tiled ("local", MultiDiffusion) denoising

def _axis_starts(length: int, window: int, stride: int) -> List[int]:
    # DemoFusion's get_views: blocks every `stride`, the last one moved back to end at `length`.
    if length <= window:
        return [0]
    blocks = int((length - window) / stride - 1e-6) + 2
    return [min(b * stride, length - window) for b in range(blocks)]


def _draw(low: int, high: int, generator: torch.Generator) -> int:
    return int(torch.randint(low, high + 1, (), generator=generator, device=generator.device))


def window_views(height: int, width: int, window: IntPair, stride: IntPair,
                 jitter: bool = False, generator: Optional[torch.Generator] = None
                 ) -> Tuple[List[Tuple[int, int, int, int]], Tuple[int, int]]:
    """Windows `(h0, h1, w0, w1)` covering an H x W latent, and the padding `(pad_h, pad_w)`.

    Windows of size `window` (clipped to the latent) start every `stride`, the last one moved
    back to end at the border (DemoFusion's `get_views`). With `jitter`, every window is
    shifted by a random offset in `[-J, J]` per axis, `J = (window - stride) // 4`, windows on
    a border only outwards; the latent is then zero-padded by J on every side, and the
    coordinates returned are in the padded frame (they are in the unpadded frame without
    jitter, where the padding is 0). Offsets are drawn from `generator` (width first, then
    height, window by window). Every pixel stays covered: neighbours move apart by at most
    2J <= (window - stride) / 2.
    """
    win_h, win_w = _pair(window, "window")
    stride_h, stride_w = _pair(stride, "stride")
    win_h, win_w = min(win_h, height), min(win_w, width)
    pad_h = max(win_h - stride_h, 0) // 4 if jitter else 0
    pad_w = max(win_w - stride_w, 0) // 4 if jitter else 0
    if jitter and generator is None:
        raise ValueError("window_views with jitter=True needs a generator")

    def offset(start: int, end: int, length: int, pad: int) -> int:
        if pad == 0:
            return 0
        at_start, at_end = start == 0, end == length
        if at_start and at_end:
            return 0
        # A window on a border moves only outwards, into the zero padding.
        return _draw(0 if at_end else -pad, 0 if at_start else pad, generator)

    views = []
    for h0 in _axis_starts(height, win_h, stride_h):
        for w0 in _axis_starts(width, win_w, stride_w):
            dw = offset(w0, w0 + win_w, width, pad_w)
            dh = offset(h0, h0 + win_h, height, pad_h)
            h0j, w0j = h0 + dh + pad_h, w0 + dw + pad_w
            views.append((h0j, h0j + win_h, w0j, w0j + win_w))
    return views, (pad_h, pad_w)


def window_weight(height: int, width: int, weights: str = "uniform", *,
                  device: Optional[torch.device] = None) -> torch.Tensor:
    """Un-normalised blending weight of one window, shape (height, width), float32.

    `uniform`: 1 everywhere (DemoFusion, MultiDiffusion). `gaussian`: the product of
    `exp(-(y - (height - 1) / 2)² / (2 (height / 4)²))` and the same along x, so window
    borders (weight e⁻² ≈ 0.14 at an edge) count less than centres, which hides seams.
    """
    if weights not in WINDOW_WEIGHTS:
        raise ValueError(f"weights must be one of {WINDOW_WEIGHTS}, got {weights!r}")
    if weights == "uniform":
        return torch.ones(height, width, device=device)

    def bell(n: int) -> torch.Tensor:
        y = torch.arange(n, dtype=torch.float32, device=device)
        return torch.exp(-(y - (n - 1) / 2) ** 2 / (2 * (n / 4) ** 2))

    return bell(height)[:, None] * bell(width)[None, :]


def window_weight_sum(views: Sequence[Tuple[int, int, int, int]], padded_size: Tuple[int, int],
                      weights: str = "uniform", *, device: Optional[torch.device] = None) -> torch.Tensor:
    """Sum of the window weights over the (padded) latent, shape (H_pad, W_pad): the normaliser."""
    total = torch.zeros(padded_size, device=device)
    for h0, h1, w0, w1 in views:
        total[h0:h1, w0:w1] += window_weight(h1 - h0, w1 - w0, weights, device=device)
    return total


def tiled_denoise(model: Callable, x: torch.Tensor, sigma: torch.Tensor, *, window: IntPair,
                  stride: IntPair, view_batch_size: int = VIEW_BATCH_SIZE, jitter: bool = True,
                  weights: str = "uniform", generator: Optional[torch.Generator] = None,
                  extra_args: Optional[dict] = None) -> torch.Tensor:
    """MultiDiffusion-style local denoising (DemoFusion's "local" branch).

    `D_tiled(x) = Σ_v W_v ⊙ crop_v⁻¹(D(crop_v(x_pad))) / Σ_v W_v`, cropped back to H x W,
    over the windows v of `window_views` (x zero-padded by the jitter range when `jitter`)
    and the weights W_v of `window_weight`. Accumulates in float32; returns x's dtype.
    """
    window, stride = _check_tiling(window, stride, view_batch_size, weights)
    extra_args = {} if extra_args is None else extra_args
    height, width = x.shape[-2:]
    views, (pad_h, pad_w) = window_views(height, width, window, stride, jitter, generator)

    def prepare(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (pad_w, pad_w, pad_h, pad_h)) if pad_h or pad_w else t

    def take(t: torch.Tensor, v: int) -> torch.Tensor:
        h0, h1, w0, w1 = views[v]
        return t[..., h0:h1, w0:w1]

    x_pad = prepare(x)
    padded_size = tuple(x_pad.shape[-2:])
    value = torch.zeros(x_pad.shape, device=x.device, dtype=torch.float32)
    for v, denoised in _denoise_views(model, x_pad, sigma, extra_args, len(views), prepare, take,
                                      view_batch_size, x.shape[0], (height, width)):
        h0, h1, w0, w1 = views[v]
        denoised = denoised.float()
        if weights != "uniform":
            denoised = denoised * window_weight(h1 - h0, w1 - w0, weights, device=x.device)
        value[..., h0:h1, w0:w1] += denoised
    total = window_weight_sum(views, padded_size, weights, device=x.device)
    value = value / total
    return value[..., pad_h:pad_h + height, pad_w:pad_w + width].to(x.dtype)


class TiledDenoiser(nn.Module):
    """A k-diffusion denoiser running `model` on overlapping windows of its native size.

    See `tiled_denoise`. Jitter offsets are drawn from `generator`, or from a CPU generator
    seeded with `seed` when None; a new set per call, so the same seed and the same calls give
    the same results.
    """

    def __init__(self, model: Callable, window: IntPair, stride: IntPair, view_batch_size: int = VIEW_BATCH_SIZE,
                 jitter: bool = True, weights: str = "uniform", *,
                 generator: Optional[torch.Generator] = None, seed: int = 0):
        super().__init__()
        self.window, self.stride = _check_tiling(window, stride, view_batch_size, weights)
        self.inner_model = model
        self.view_batch_size = view_batch_size
        self.jitter = bool(jitter)
        self.weights = weights
        self.generator = _make_generator(generator, seed) if self.jitter else None

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args) -> torch.Tensor:
        return tiled_denoise(self.inner_model, x, sigma, window=self.window, stride=self.stride,
                             view_batch_size=self.view_batch_size, jitter=self.jitter,
                             weights=self.weights, generator=self.generator, extra_args=extra_args)


# 2. Dilated ("global") denoising

def _dilated_pad(x: torch.Tensor, factor: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    return F.pad(x, ((factor - width % factor) % factor, 0, (factor - height % factor) % factor, 0))


def dilated_split(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The factor² interleaved sub-latents of x, shape (factor², B, C, ⌈H/f⌉, ⌈W/f⌉).

    Part `i·f + j` holds `x_pad[..., i::f, j::f]`, where x_pad is x zero-padded at the top and
    the left to multiples of f (as DemoFusion pads). `dilated_merge` is the inverse.
    """
    _check_factor(factor)
    x_pad = _dilated_pad(x, factor)
    return torch.stack([x_pad[..., i::factor, j::factor] for i in range(factor) for j in range(factor)])


def dilated_merge(parts: torch.Tensor, factor: int, height: int, width: int) -> torch.Tensor:
    """Scatter the factor² sub-latents of `dilated_split` back into one (B, C, height, width) latent."""
    _check_factor(factor)
    if parts.shape[0] != factor * factor:
        raise ValueError(f"parts must hold factor² = {factor * factor} sub-latents, got {parts.shape[0]}")
    sub_h, sub_w = parts.shape[-2:]
    out = parts.new_empty(*parts.shape[1:-2], sub_h * factor, sub_w * factor)
    for k in range(factor * factor):
        out[..., k // factor::factor, k % factor::factor] = parts[k]
    return out[..., out.shape[-2] - height:, out.shape[-1] - width:]


def gaussian_blur(x: torch.Tensor, kernel_size: int, std: float) -> torch.Tensor:
    """Per-channel 2-D Gaussian blur with zero padding (DemoFusion's `gaussian_filter`).

    Kernel `g(i) ∝ exp(-(i - (k - 1)/2)² / (2 std²))`, i = 0..k-1, normalised to sum 1,
    applied along both axes.
    """
    i = torch.arange(kernel_size, device=x.device, dtype=torch.float32)
    g = torch.exp(-(i - (kernel_size - 1) / 2) ** 2 / (2 * std ** 2))
    g = g / g.sum()
    channels = x.shape[1]
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, kernel_size, kernel_size).to(x.dtype)
    return F.conv2d(x, kernel, padding=kernel_size // 2, groups=channels)


def dilated_denoise(model: Callable, x: torch.Tensor, sigma: torch.Tensor, *, factor: int,
                    blur_sigma: float = 0.0, view_batch_size: int = VIEW_BATCH_SIZE,
                    extra_args: Optional[dict] = None) -> torch.Tensor:
    """DemoFusion's dilated sampling (its "global" branch).

    Split x into factor² interleaved sub-latents (`dilated_split`), each about the native size.
    With `blur_sigma > 0` and factor > 1 the model sees a blurred copy
    `x_b = match_statistics(gaussian_blur(x_pad, 2·factor − 1, blur_sigma), x_pad)`, and, as
    DemoFusion steps the *unblurred* latent with the noise predicted from the blurred one, the
    result per sub-latent is `D(x_b) + (x − x_b)` (equal to `x − σ·ε(x_b)`). Then the results
    are scattered back (`dilated_merge`).
    """
    _check_factor(factor)
    _check_view_batch_size(view_batch_size)
    check_number("blur_sigma", blur_sigma, low=0.0)
    extra_args = {} if extra_args is None else extra_args
    height, width = x.shape[-2:]
    parts = dilated_split(x, factor)
    blur = blur_sigma > 0 and factor > 1
    if blur:
        x_pad = _dilated_pad(x, factor)
        x_blur = match_statistics(gaussian_blur(x_pad, 2 * factor - 1, blur_sigma), x_pad)
        parts_in = dilated_split(x_blur, factor)
    else:
        parts_in = parts

    def take(t: torch.Tensor, v: int) -> torch.Tensor:
        return t[v]

    out = torch.empty_like(parts)
    for v, denoised in _denoise_views(model, parts_in, sigma, extra_args, factor * factor,
                                      lambda t: dilated_split(t, factor), take, view_batch_size,
                                      x.shape[0], (height, width)):
        out[v] = denoised + (parts[v] - parts_in[v]) if blur else denoised
    return dilated_merge(out, factor, height, width)


class DilatedDenoiser(nn.Module):
    """A k-diffusion denoiser doing DemoFusion's dilated sampling with a fixed blur; see
    `dilated_denoise`. `blur_sigma = 0` turns the blur off."""

    def __init__(self, model: Callable, factor: int, blur_sigma: float = 0.0, view_batch_size: int = VIEW_BATCH_SIZE):
        super().__init__()
        _check_factor(factor)
        _check_view_batch_size(view_batch_size)
        check_number("blur_sigma", blur_sigma, low=0.0)
        self.inner_model = model
        self.factor = factor
        self.blur_sigma = float(blur_sigma)
        self.view_batch_size = view_batch_size

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args) -> torch.Tensor:
        return dilated_denoise(self.inner_model, x, sigma, factor=self.factor, blur_sigma=self.blur_sigma,
                               view_batch_size=self.view_batch_size, extra_args=extra_args)


# 3. Both, fused per step

def sigma_progress(model: Any = None, sigmas: Optional[torch.Tensor] = None) -> Callable[[torch.Tensor], float]:
    """A function `sigma -> p` in [0, 1], the progress through sampling (docs/algorithm.md B2).

    Where `model` (or a wrapper in its `inner_model` chain, e.g. a CFG denoiser) is a
    discrete-schedule wrapper: `p = (T − t)/T` with `t = sigma_to_t(sigma)` and T its number
    of timesteps, as DemoFusion computes it from the timestep (the same rule as the samplers'
    `timestep_progress`). Otherwise `p = i / n` with i the index of the entry of `sigmas` (the
    sampling schedule, n = len(sigmas) − 1) nearest to sigma. Reads the first batch row's sigma
    (k-diffusion's samplers give every row the same).
    """
    def first(sigma: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)[:1].cpu()

    wrapper = discrete_wrapper(model)
    if wrapper is not None:
        return lambda sigma: float(progress_at(wrapper, first(sigma))[0])
    if sigmas is None:
        raise ValueError("the progress through sampling is unknown: give sigmas (the sampling schedule) "
                         "or progress_fn, or a model wrapping a k-diffusion discrete-schedule wrapper")
    sigmas = torch.as_tensor(sigmas).detach().float().cpu().reshape(-1)
    if sigmas.numel() < 2:
        raise ValueError(f"sigmas must hold at least 2 values, got {sigmas.numel()}")
    n = sigmas.numel() - 1
    return lambda sigma: int((sigmas[:-1] - first(sigma)).abs().argmin()) / n


def demofusion_denoise(model: Callable, x: torch.Tensor, sigma: torch.Tensor, *, p: float,
                       window: IntPair, stride: IntPair, factor: int, cosine_scale_2: float = COSINE_SCALE_2,
                       cosine_scale_3: float = COSINE_SCALE_3, blur_sigma: float = BLUR_SIGMA,
                       view_batch_size: int = VIEW_BATCH_SIZE, jitter: bool = True, weights: str = "uniform",
                       generator: Optional[torch.Generator] = None,
                       extra_args: Optional[dict] = None) -> torch.Tensor:
    """One DemoFusion denoiser call at progress p: `local · (1 − c2) + global · c2`.

    `cf = cosine_factor(p)`, `c2 = cf ** cosine_scale_2`; local is `tiled_denoise`, global is
    `dilated_denoise` with blur std `blur_sigma · (0.99 · cf ** cosine_scale_3 + 0.01)`.
    A branch whose weight is exactly 0 is not computed.
    """
    cf = cosine_factor(p)
    c2 = cf ** cosine_scale_2
    blur_std = blur_sigma * (0.99 * cf ** cosine_scale_3 + 0.01)
    out = None
    if c2 < 1:
        local = tiled_denoise(model, x, sigma, window=window, stride=stride, view_batch_size=view_batch_size,
                              jitter=jitter, weights=weights, generator=generator, extra_args=extra_args)
        out = local * (1 - c2)
    if c2 > 0:
        dilated = dilated_denoise(model, x, sigma, factor=factor, blur_sigma=blur_std,
                                  view_batch_size=view_batch_size, extra_args=extra_args)
        out = dilated * c2 if out is None else out + dilated * c2
    return out


class DemoFusionDenoiser(nn.Module):
    """A k-diffusion denoiser fusing DemoFusion's local and global branches per step.

    See `demofusion_denoise`; p comes from `progress_fn(sigma)` when given, else from
    `sigma_progress(model, sigmas)` (the model's `sigma_to_t` where it wraps a discrete
    schedule, else the index of sigma in `sigmas`). Jitter as in `TiledDenoiser`.
    """

    def __init__(self, model: Callable, window: IntPair, stride: IntPair, factor: int,
                 cosine_scale_2: float = COSINE_SCALE_2, cosine_scale_3: float = COSINE_SCALE_3,
                 blur_sigma: float = BLUR_SIGMA, view_batch_size: int = VIEW_BATCH_SIZE, jitter: bool = True,
                 weights: str = "uniform", *,
                 sigmas: Optional[torch.Tensor] = None,
                 progress_fn: Optional[Callable[[torch.Tensor], float]] = None,
                 generator: Optional[torch.Generator] = None, seed: int = 0):
        super().__init__()
        self.window, self.stride = _check_tiling(window, stride, view_batch_size, weights)
        _check_factor(factor)
        for name, value in (("cosine_scale_2", cosine_scale_2), ("cosine_scale_3", cosine_scale_3),
                            ("blur_sigma", blur_sigma)):
            check_number(name, value, low=0.0)
        if progress_fn is not None and not callable(progress_fn):
            raise TypeError(f"progress_fn must be callable or None, got {type(progress_fn).__name__}")
        self.inner_model = model
        self.factor = factor
        self.cosine_scale_2 = float(cosine_scale_2)
        self.cosine_scale_3 = float(cosine_scale_3)
        self.blur_sigma = float(blur_sigma)
        self.view_batch_size = view_batch_size
        self.jitter = bool(jitter)
        self.weights = weights
        self.progress_fn = progress_fn if progress_fn is not None else sigma_progress(model, sigmas)
        self.generator = _make_generator(generator, seed) if self.jitter else None

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args) -> torch.Tensor:
        return demofusion_denoise(self.inner_model, x, sigma, p=self.progress_fn(sigma), window=self.window,
                                  stride=self.stride, factor=self.factor, cosine_scale_2=self.cosine_scale_2,
                                  cosine_scale_3=self.cosine_scale_3, blur_sigma=self.blur_sigma,
                                  view_batch_size=self.view_batch_size, jitter=self.jitter,
                                  weights=self.weights, generator=self.generator, extra_args=extra_args)


# 4. The progressive pipeline

def demofusion_upscale(model: Callable, x0: torch.Tensor, sigmas: torch.Tensor, scale: int, *,
                       extra_args: Optional[dict] = None, window: Optional[IntPair] = None,
                       stride: Optional[IntPair] = None, cosine_scale_1: float = DEMOFUSION["alpha_1"],
                       cosine_scale_2: float = COSINE_SCALE_2, cosine_scale_3: float = COSINE_SCALE_3,
                       blur_sigma: float = BLUR_SIGMA, view_batch_size: int = VIEW_BATCH_SIZE,
                       low_memory: bool = False, jitter: bool = True,
                       weights: str = "uniform", generator: Optional[torch.Generator] = None,
                       callback: Optional[Callable[[dict], Any]] = None, disable: Optional[bool] = None,
                       return_phases: bool = False) -> Union[torch.Tensor, List[torch.Tensor]]:
    """DemoFusion's progressive upscaling of a clean base-size latent `x0` (B, C, H, W).

    For each phase s = 2..scale (docs/algorithm.md B2 for the skip residual):

        x = bicubic(x, (s·H, s·W))                          # from the previous phase
        x = sample_itermix_euler(D_s, x, sigmas, **DEMOFUSION, alpha_1=cosine_scale_1)
        x = match_statistics(x, x0)                         # phase-1 mean and std

    where D_s is `DemoFusionDenoiser(model, window, stride, factor=s, ...)`: tiled denoising
    at the native size fused with dilated sampling of factor s. `window` defaults to x0's
    (H, W) (the size the model made x0 at), `stride` to half the window (DemoFusion: 64 of
    128). The noised latents are computed lazily (shared noise: x0 and one noise tensor held,
    the same numbers as the stack). `low_memory` runs one window per model call
    (`view_batch_size = 1`). All randomness (noise, jitter) comes from `generator`; when None,
    one is seeded from the global RNG, so `torch.manual_seed` makes runs repeatable.
    `extra_args` go to every model call (split per window as described in the module's
    docstring; spatial conditioning at the base size is not resized). `callback` receives the
    sampler's dicts with `phase` added; a progress bar counts the phases. Returns the last
    phase's latent, or with `return_phases` the list [x0, phase 2, ..., phase scale].
    """
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim != 4:
        raise TypeError("x0 must be a floating-point latent tensor of shape (B, C, H, W)")
    check_int("scale", scale, low=2)
    check_number("cosine_scale_1", cosine_scale_1, low=0.0)
    if not isinstance(low_memory, bool):
        raise TypeError(f"low_memory must be True or False, got {low_memory!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    height, width = x0.shape[-2:]
    window = (height, width) if window is None else _pair(window, "window")
    stride = (max(window[0] // 2, 1), max(window[1] // 2, 1)) if stride is None else stride
    view_batch_size = 1 if low_memory else view_batch_size
    _check_tiling(window, stride, view_batch_size, weights)
    if generator is None:
        seed = int(torch.randint(0, 2 ** 62, ()))
        generator = torch.Generator(device=x0.device).manual_seed(seed)

    x = x0
    phases = [x0]
    for s in progress_bar(range(2, scale + 1), disable):
        x = F.interpolate(x.float(), size=(height * s, width * s), mode="bicubic").to(x0.dtype)
        denoiser = DemoFusionDenoiser(model, window, stride, s, cosine_scale_2, cosine_scale_3, blur_sigma,
                                      view_batch_size, jitter, weights, sigmas=sigmas, generator=generator)
        phase_callback = None if callback is None else (lambda info, s=s: callback({**info, "phase": s}))
        options = {**DEMOFUSION, "alpha_1": cosine_scale_1}
        x = sample_itermix_euler(denoiser, x, sigmas, extra_args, phase_callback, disable,
                                 generator=generator, lazy=True, **options)
        x = match_statistics(x, x0)
        phases.append(x)
    return phases if return_phases else x
