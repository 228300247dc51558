"""Figures: blending schedules, blending functions, and the reference's two latent diagnostics.

Every ``plot_*`` function returns an RGB PIL image of exactly ``figsize * dpi`` pixels,
drawn on a private matplotlib ``Figure`` (Agg canvas; no pyplot state). The numbers
behind the diagnostics are plain functions too: :func:`latent_batch_statistics`
(per-latent Shapiro-Wilk p-value, mean and std, as the reference's "Latent Batch
Statistics Plot" node) and :func:`cosine_similarity_matrix` (its "Latent Batch
Comparison Plot"). matplotlib, scipy and PIL are an extra (``pip install
itermix_kdiff[plots]``), imported by the functions that need them; this module is not
imported by ``itermix_kdiff/__init__.py``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from .blending import BLENDING_FUNCTIONS
from .blending_schedules import BLENDING_SCHEDULES, blending_schedule, mixing_weights
from .options import DEMOFUSION, ItermixOptions, make_options

Size = Tuple[float, float]

#: The alpha_1 values of the reference README's figure: 0.05, 0.15, ..., 4.95.
REFERENCE_ALPHAS = tuple(round(0.05 + 0.1 * k, 2) for k in range(50))


def _figure(figsize: Size, dpi: int):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("itermix_kdiff.plots needs matplotlib: pip install 'itermix_kdiff[plots]'") from e
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_to_image(fig: Any) -> Any:
    """Render a matplotlib figure to an RGB PIL image (``figsize * dpi`` pixels)."""
    from PIL import Image

    fig.canvas.draw()
    rgba = fig.canvas.buffer_rgba()
    return Image.frombuffer("RGBA", fig.canvas.get_width_height(), bytes(rgba), "raw", "RGBA", 0, 1).convert("RGB")


def _style(ax: Any, title: str, xlabel: str = "step", ylabel: str = "c1") -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


# ---------------------------------------------------------------- schedules

def plot_alpha_1_schedules(alphas: Sequence[float] = REFERENCE_ALPHAS, steps: int = 100,
                           schedule: str = "cosine", figsize: Size = (10, 6), dpi: int = 100) -> Any:
    """``c1`` of ``schedule`` over ``steps`` steps for each ``alpha_1`` (A2): the reference
    README's ``alpha_1_cosine_schedule`` figure. Every 5th curve is in the legend."""
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    cmap = _colormap("RdYlBu")
    for k, a in enumerate(alphas):
        c1 = blending_schedule(steps, schedule, alpha_1=a)
        colour = cmap(k / max(len(alphas) - 1, 1))
        ax.plot(range(steps), c1.numpy(), color=colour, lw=1.4, label=f"alpha_1 = {a:g}" if k % 5 == 0 else None)
    _style(ax, f"{schedule} blending schedule for alpha_1 = {alphas[0]:g} .. {alphas[-1]:g} ({steps} steps)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return figure_to_image(fig)


def _colormap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


def plot_schedule_conventions(steps: int = 50, alphas: Sequence[float] = (1.0, 2.4, 3.0),
                              figsize: Size = (11, 4), dpi: int = 100) -> Any:
    """The reference's ``cosine`` schedule next to DemoFusion's, for the same ``alpha_1`` values.

    Reference (A2): ``c1 = ((1 + cos(pi (n - t) / n)) / 2) ** a = sin(pi t / 2n) ** 2a``, mixed
    after the model step. DemoFusion (B2): ``c1 = 1 - ((1 + cos(pi t / n)) / 2) ** a
    = 1 - cos(pi t / 2n) ** 2a``, mixed before it (``t / n`` stands for its timestep progress).
    The two agree for ``a = 1``; for ``a > 1`` the reference leans on the noised image longer,
    DemoFusion lets go of it sooner. The third panel overlays the defaults (2.4 and 3)."""
    fig = _figure(figsize, dpi)
    axes = fig.subplots(1, 3, sharey=True)
    colours = _colormap("viridis")
    t = range(steps)
    for k, a in enumerate(alphas):
        c = colours(k / max(len(alphas) - 1, 1) * 0.85)
        axes[0].plot(t, blending_schedule(steps, "cosine", alpha_1=a).numpy(), color=c, label=f"alpha_1 = {a:g}")
        axes[1].plot(t, blending_schedule(steps, "demofusion", alpha_1=a).numpy(), color=c, label=f"alpha_1 = {a:g}")
    reference, demofusion = ItermixOptions().alpha_1, DEMOFUSION["alpha_1"]
    axes[2].plot(t, blending_schedule(steps, "cosine", alpha_1=reference).numpy(),
                 label=f"reference ({reference:g}, after step)")
    axes[2].plot(t, blending_schedule(steps, "demofusion", alpha_1=demofusion).numpy(),
                 label=f"demofusion ({demofusion:g}, before step)")
    _style(axes[0], "reference: c1 = sin(pi t / 2n)^(2 alpha_1)")
    _style(axes[1], "DemoFusion: c1 = 1 - cos(pi t / 2n)^(2 alpha_1)", ylabel="")
    _style(axes[2], "the two presets' defaults", ylabel="")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_to_image(fig)


def plot_schedule_options(steps: int = 40, figsize: Size = (12, 7), dpi: int = 100) -> Any:
    """What the schedule options do to ``c1`` (A2): ``start_blending_at_pct`` (linear),
    ``stop_blending_at_pct``, ``clamp_blending_at_pct``, ``blend_min``/``blend_max`` (cosine),
    the four schedules at their defaults, and a run split in two whose halves keep the
    unsplit curve with ``schedule_steps``/``schedule_offset`` (as the samplers compute it)."""

    fig = _figure(figsize, dpi)
    axes = fig.subplots(2, 3, sharey=True).ravel()
    t = list(range(steps))

    def curves(ax, schedule, name, values, fmt="{:g}"):
        for v in values:
            kw = dict(zip(name, v)) if isinstance(name, tuple) else {name: v}
            label = ", ".join(f"{k} = {fmt.format(x)}" for k, x in kw.items())
            ax.plot(t, blending_schedule(steps, schedule, **kw).numpy(), label=label, marker=".", ms=3)
        ax.legend(fontsize=7)

    curves(axes[0], "linear", "start_blending_at_pct", (0.0, 0.2, 0.4))
    _style(axes[0], "start_blending_at_pct (linear): c1 = 0 before it")
    curves(axes[1], "cosine", "stop_blending_at_pct", (0.5, 0.75, 1.0, 1.25))
    _style(axes[1], "stop_blending_at_pct (cosine): c1 = 1 from it on", ylabel="")
    curves(axes[2], "cosine", "clamp_blending_at_pct", (0.6, 0.8, 1.0))
    _style(axes[2], "clamp_blending_at_pct (cosine): cut to 1", ylabel="")
    curves(axes[3], "cosine", ("blend_min", "blend_max"), ((0.0, 1.0), (0.2, 1.0), (0.0, 0.8), (0.2, 0.8)))
    _style(axes[3], "blend_min / blend_max (cosine): squeeze c1")
    for schedule in BLENDING_SCHEDULES:
        axes[4].plot(t, blending_schedule(steps, schedule).numpy(), label=schedule, marker=".", ms=3)
    axes[4].legend(fontsize=7)
    _style(axes[4], f"the schedules at alpha_1 = {ItermixOptions().alpha_1:g}", ylabel="")
    half = steps // 2
    axes[5].plot(t, blending_schedule(steps, "cosine").numpy(), color="0.75", lw=4, label="one run")
    for offset, n in ((0, half), (half, steps - half)):
        opts = make_options(schedule_steps=steps, schedule_offset=offset)
        c1 = mixing_weights(n, opts)  # what the sampler of each half uses
        axes[5].plot(t[offset:offset + n], c1.numpy(), marker=".", ms=3,
                     label=f"steps {offset}..{offset + n - 1}: schedule_offset {offset}")
    alone = blending_schedule(steps - half, "cosine")
    axes[5].plot(t[half:], alone.numpy(), ls="--", color="tab:red", label="second half without them")
    axes[5].legend(fontsize=7)
    _style(axes[5], f"a run split in two: schedule_steps = {steps}", ylabel="")
    fig.tight_layout()
    return figure_to_image(fig)


# ---------------------------------------------------------------- blending functions

def plot_blending_functions_2d(noised: Sequence[float] = (4.0, 1.0), x: Sequence[float] = (0.6, 2.0),
                               weights: Sequence[float] = (0.25, 0.5, 0.75), figsize: Size = (12, 4.4),
                               dpi: int = 100) -> Any:
    """The three blending functions (A3) on two 2-D vectors, as the reference README's
    ``blending-addition``/``slerp``/``norm_only`` figures: ``noised`` (red, the reference's
    ``l1``), ``x`` (green, ``l2``), the blends at ``weights`` (blue arrows) and the path of
    ``blend(noised, x, w)`` for ``w`` in [0, 1] (dotted)."""
    fig = _figure(figsize, dpi)
    axes = fig.subplots(1, len(BLENDING_FUNCTIONS))
    a = torch.tensor([list(noised)], dtype=torch.float32)
    b = torch.tensor([list(x)], dtype=torch.float32)
    lim = 1.15 * max(a.norm().item(), b.norm().item())
    path_w = torch.linspace(0, 1, 101)
    for ax, (name, fn) in zip(axes, BLENDING_FUNCTIONS.items()):
        path = torch.cat([fn(a, b, float(w)) for w in path_w])
        ax.plot(path[:, 0].numpy(), path[:, 1].numpy(), ":", color="tab:blue", lw=1.2, label="w from 0 to 1")
        for v, colour, label in ((a[0], "tab:red", "noised (l1)"), (b[0], "tab:green", "x (l2)")):
            ax.annotate("", xy=(v[0].item(), v[1].item()), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="-|>", color=colour, lw=2.2))
            ax.plot([], [], color=colour, lw=2.2, label=label)
        for w in weights:
            v = fn(a, b, float(w))[0]
            ax.annotate("", xy=(v[0].item(), v[1].item()), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="-|>", color="tab:blue", lw=1.3, alpha=0.8))
            ax.text(v[0].item(), v[1].item(), f" w={w:g}", fontsize=8, color="tab:blue")
        ax.set_xlim(-0.2 * lim, lim)
        ax.set_ylim(-0.2 * lim, lim)
        ax.set_aspect("equal")
        ax.axhline(0, color="0.6", lw=0.6)
        ax.axvline(0, color="0.6", lw=0.6)
        _style(ax, f"{name}: blend(noised, x, w)", xlabel="", ylabel="")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return figure_to_image(fig)


def _to_display(image: torch.Tensor) -> Any:
    """(C, H, W) in [-1, 1] -> (H, W, 3) floats in [0, 1] for imshow (the first 3 channels;
    one channel is shown grey)."""
    image = image.detach().float().cpu()
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return ((image[:3].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def plot_blending_on_images(noised: torch.Tensor, x: torch.Tensor,
                            weights: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                            title: Optional[str] = None, figsize: Size = (10, 6.4), dpi: int = 100) -> Any:
    """``blend(noised, x, w)`` (A3) for each blending function (rows) and weight (columns) on
    one image pair ``(C, H, W)`` or ``(1, C, H, W)`` in [-1, 1] (a pixel-space model's latents):
    ``w = 0`` is ``noised``, ``w = 1`` is ``x``. The last column shows each row's norm
    ``|blend| / |x|`` against ``w``."""
    if noised.shape != x.shape:
        raise ValueError(f"noised and x must have one shape, got {tuple(noised.shape)} and {tuple(x.shape)}")
    a = noised.reshape(1, *noised.shape[-3:]).float()
    b = x.reshape(1, *x.shape[-3:]).float()
    fig = _figure(figsize, dpi)
    rows, cols = len(BLENDING_FUNCTIONS), len(weights) + 1
    grid = fig.add_gridspec(rows, cols, width_ratios=[1] * len(weights) + [1.4])
    w_fine = torch.linspace(0, 1, 41)
    for r, (name, fn) in enumerate(BLENDING_FUNCTIONS.items()):
        for c, w in enumerate(weights):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(_to_display(fn(a, b, float(w))[0]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"w = {w:g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
        ax = fig.add_subplot(grid[r, -1])
        norms = [(fn(a, b, float(w)).norm() / b.norm()).item() for w in w_fine]
        ax.plot(w_fine.numpy(), norms)
        _style(ax, "norm / |x|" if r == 0 else "", xlabel="w" if r == rows - 1 else "", ylabel="")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_to_image(fig)


# ---------------------------------------------------------------- diagnostics

def latent_batch_statistics(batch: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per latent of a batch ``(B, ...)``, over its flattened values: the Shapiro-Wilk
    normality p-value (``scipy.stats.shapiro``; scipy warns that it is approximate above 5000
    values), the mean and the population std (``ddof = 0``), each a float64 tensor ``(B,)``.
    The numbers of the reference's "Latent Batch Statistics Plot" node."""
    from scipy import stats

    if not isinstance(batch, torch.Tensor) or batch.ndim < 2 or batch.shape[1:].numel() < 3:
        raise ValueError("batch must be a tensor (B, ...) of at least 3 values per latent")
    rows = batch.detach().double().cpu().reshape(batch.shape[0], -1)
    p_values = torch.tensor([stats.shapiro(row.numpy()).pvalue for row in rows], dtype=torch.float64)
    return {"p_values": p_values, "means": rows.mean(dim=1), "stds": rows.std(dim=1, unbiased=False)}


def plot_latent_batch_statistics(batch: torch.Tensor, labels: Optional[Sequence[str]] = None,
                                 figsize: Size = (8, 9), dpi: int = 100) -> Any:
    """:func:`latent_batch_statistics` as three panels (p-value with the 0.05 line, mean, std)
    against the batch index (``labels`` name the ticks)."""
    s = latent_batch_statistics(batch)
    fig = _figure(figsize, dpi)
    axes = fig.subplots(3, 1, sharex=True)
    idx = list(range(batch.shape[0]))
    for ax, key, title in zip(axes, ("p_values", "means", "stds"),
                              ("Shapiro-Wilk p-value", "mean", "standard deviation")):
        ax.plot(idx, s[key].numpy(), marker="o", ms=3)
        _style(ax, f"{title} of each latent", xlabel="", ylabel=key.rstrip("s").replace("_", "-"))
    axes[0].axhline(0.05, color="tab:red", ls="--", lw=1, label="p = 0.05")
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("latent")
    if labels is not None:
        axes[-1].set_xticks(idx, list(labels), rotation=90, fontsize=7)
    fig.tight_layout()
    return figure_to_image(fig)


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``S[i, j] = <a_i, b_j> / (|a_i| |b_j|)`` over the flattened latents of two batches
    ``(Ba, ...)`` and ``(Bb, ...)`` with one latent shape (float32, ``(Ba, Bb)``; a zero
    latent has similarity 0). The numbers of the reference's "Latent Batch Comparison Plot"."""
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"the latents of both batches must have one shape, got {tuple(a.shape[1:])} "
                         f"and {tuple(b.shape[1:])}")
    ra = a.detach().float().reshape(a.shape[0], -1)
    rb = b.detach().float().reshape(b.shape[0], -1)
    ua = torch.nn.functional.normalize(ra, dim=1)
    ub = torch.nn.functional.normalize(rb, dim=1)
    return ua @ ub.T


def plot_cosine_similarity(a: torch.Tensor, b: torch.Tensor, labels: Tuple[str, str] = ("batch 1", "batch 2"),
                           figsize: Size = (7, 6), dpi: int = 100) -> Any:
    """:func:`cosine_similarity_matrix` as a heat map: row i is latent i of ``a``, column j
    latent j of ``b`` (the reference's plot labels its axes the other way round)."""
    sim = cosine_similarity_matrix(a, b)
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    im = ax.imshow(sim.cpu().numpy(), cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="cosine similarity")
    ax.set_title("cosine similarity between latents", fontsize=10)
    ax.set_ylabel(f"{labels[0]} index")
    ax.set_xlabel(f"{labels[1]} index")
    fig.tight_layout()
    return figure_to_image(fig)

