"""Picture quality of 2x and 4x upscaling methods on the shipped shapes model.

    python -m benchmarks.bench_quality [--quick] [--scenes N] [--steps N] [--out DIR]

For scenes ``0 .. N-1`` of the procedural dataset (seed :data:`SCENE_SEED`, never used in
training; scene ``s`` has class ``s % 5``, so five scenes hold every class), every method
upscales a 32x32 base to 64x64 and, in a second 2x stage from its own 64x64 result, to
128x128. Two kinds of base:

- ``render``: the true 32x32 render of the scene, so the true 64/128 renders are the ground
  truth and a weak base generator cannot blur the comparison;
- ``sample``: the model's own 32x32 sample of the scene's class (``itermix_kdiff.pipeline.
  sample_base``, Euler over ``--base-steps``), as a real generate-then-upscale run.

Methods (:data:`METHODS`): ``bicubic`` only; ``direct`` generation at the target size (from
noise, the base ignored); hires-fix ``img2img`` of the bicubic upscale at denoise 0.3/0.5/0.7;
the itermix sampler with the reference's defaults, without the cleanup, with each blend
function, each schedule, the DemoFusion preset, each Perlin mode and rewind. Every itermix
method is followed by the light cleanup pass of the pipeline (img2img at denoise
:data:`CLEANUP_DENOISE`), as ``itermix-upscale`` runs it; ``true render`` is the ground truth
itself, the ceiling of every metric. ``demofusion tiled`` (only with ``--methods``: it costs
several times the model calls) is DemoFusion's whole method,
:func:`itermix_kdiff.demofusion_upscale` from the base (phases 2x, 3x, 4x; tiled and dilated
denoising with 32x32 windows, the model's size), one run per target. All runs use the
model's Karras schedule of ``--steps`` steps, classifier-free guidance ``--cfg`` and the
pipeline's seeds (``stage_seeds(scene)``), one scene at a time, so a scene's numbers do not
depend on which others run with it.

Metrics, per scene, then averaged over the scenes. ``Y`` is the output at the target size,
clamped to [-1, 1] (as a saved image); ``B`` the 32x32 base; ``T`` the true render of the same
scene at the target size; ``ds`` = :func:`itermix_kdiff.demo.metrics.downsample` (antialiased:
a box average for these integer factors); PSNR with data range 2.

- **consistency** (dB): ``PSNR(ds(Y, 32), B)``, the LR-PSNR of the super-resolution
  literature: does the output still look like its base from afar? (:func:`lr_psnr`)
- **fidelity** (render bases only): ``PSNR(Y, T)`` (dB) and the edge-sharpness error
  ``|S(Y) - S(T)| / S(T)`` with ``S`` = ``metrics.edge_sharpness`` (:func:`sharpness_error`).
- **detail**: ``mean HFE(Y) / mean HFE(T)`` over the scenes, ``HFE`` =
  ``metrics.high_frequency_energy`` (the share of spectral power above half Nyquist): 1.0 is
  as sharp as the truth, < 1 blurry, > 1 grainy. Noise also raises it: read it with grain.
- **grain**: ``mean grain(Y) / mean grain(T)``, ``grain`` = ``metrics.grain`` (std of
  ``Y - median3x3(Y)``): 1.0 is as clean as the truth.
- **composition**: the fraction of scenes where the shipped shape classifier
  (``itermix_kdiff.demo.classifier``, trained on renders only; it sees ``ds(Y, 32)``) gives
  ``Y`` the class it gives ``B`` (:func:`image_metrics`).
- **cost**: model calls per image (with guidance one call evaluates two rows) and wall
  seconds per image, and ``time_vs_direct``, the time relative to ``direct`` generation at
  the same size (measured in the same run).

Writes ``quality.json`` (settings, environment, every per-scene record, the summaries),
``quality.md`` (the tables), ``quality_consistency_detail.png`` (one point per method) and
``quality_examples.png`` (a grid of outputs).
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from itermix_kdiff.sigmas import get_sigmas

from benchmarks.common import (RESULTS_DIR, CallCounter, environment, load_average, load_model, markdown_table,
                               provenance_markdown, resolve_device, set_threads, write_json)

#: Dataset seed of the benchmark scenes: not the model's (0) nor the classifier's (7_000_001, +1).
SCENE_SEED = 9_100_003
BASE_SIZE = 32
#: Denoise of the light cleanup pass after every itermix method (the pipeline's default).
CLEANUP_DENOISE = 0.15
BASE_KINDS = ("render", "sample")
DEFAULT_SCENES = 5
DEFAULT_STEPS = 10
DEFAULT_BASE_STEPS = 24

#: Method name -> what it runs per 2x stage (see :func:`run_stage`). ``kind``: ``bicubic``,
#: ``direct``, ``img2img`` (``denoise``), ``itermix`` (``sampler`` from ``itermix_kdiff.wrap.
#: SAMPLERS``, its ``options`` or a preset's name, the sampler's own ``sampler_kwargs``,
#: ``cleanup``), ``truth``, or ``demofusion_upscale`` (not by stages: :func:`run_demofusion`).
METHODS: Dict[str, Dict[str, Any]] = {
    "true render": {"kind": "truth"},
    "bicubic": {"kind": "bicubic"},
    "direct": {"kind": "direct"},
    "img2img 0.3": {"kind": "img2img", "denoise": 0.3},
    "img2img 0.5": {"kind": "img2img", "denoise": 0.5},
    "img2img 0.7": {"kind": "img2img", "denoise": 0.7},
    "itermix": {"kind": "itermix"},
    "itermix, no cleanup": {"kind": "itermix", "cleanup": False},
    "slerp": {"kind": "itermix", "options": {"blending_function": "slerp"}},
    "norm_only": {"kind": "itermix", "options": {"blending_function": "norm_only"}},
    "linear": {"kind": "itermix", "options": {"blending_schedule": "linear"}},
    "logistic": {"kind": "itermix", "options": {"blending_schedule": "logistic"}},
    "demofusion schedule": {"kind": "itermix", "options": {"blending_schedule": "demofusion"}},
    "demofusion preset": {"kind": "itermix", "options": "demofusion"},
    "perlin masks": {"kind": "itermix", "sampler": "euler_perlin", "sampler_kwargs": {"perlin_mode": "masks"}},
    "perlin latents": {"kind": "itermix", "sampler": "euler_perlin", "sampler_kwargs": {"perlin_mode": "latents"}},
    "perlin matched_noise": {"kind": "itermix", "sampler": "euler_perlin",
                             "sampler_kwargs": {"perlin_mode": "matched_noise"}},
    "rewind": {"kind": "itermix", "options": {"rewind": True}},
    "demofusion tiled": {"kind": "demofusion_upscale"},
}
#: The methods of a default run: every one but ``demofusion tiled`` (DemoFusion's whole
#: progressive pipeline, tiled and dilated denoising at the model's 32x32, many times the
#: model calls of the others; ask for it with ``--methods``).
DEFAULT_METHODS = tuple(name for name in METHODS if name != "demofusion tiled")
#: In --quick runs only these go on to the second stage (128x128); the rest stop at 64x64.
QUICK_TWO_STAGE = ("true render", "bicubic", "itermix")
#: The columns of the example grid (after the base).
EXAMPLE_METHODS = ("true render", "bicubic", "direct", "img2img 0.5", "itermix", "itermix, no cleanup", "slerp",
                   "demofusion preset", "demofusion tiled", "perlin matched_noise", "rewind")


# ---------------------------------------------------------------- metrics

def lr_psnr(output: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Consistency: ``PSNR(downsample(output, base size), base)`` per image, in dB (range 2);
    the base may be a rectangle."""
    from itermix_kdiff.demo import metrics

    return metrics.psnr(metrics.downsample(output, tuple(base.shape[-2:])), base)


def sharpness_error(output: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``|S(output) - S(truth)| / S(truth)`` per image, ``S`` = ``metrics.edge_sharpness``."""
    from itermix_kdiff.demo import metrics

    s_out, s_truth = metrics.edge_sharpness(output), metrics.edge_sharpness(truth)
    return (s_out - s_truth).abs() / s_truth.clamp(min=1e-12)


def ratio_of_means(values: Sequence[float], reference: Sequence[float]) -> float:
    """``mean(values) / mean(reference)``: detail and grain relative to the true renders."""
    return statistics.fmean(values) / max(statistics.fmean(reference), 1e-12)


def image_metrics(output: torch.Tensor, base: torch.Tensor, truth: torch.Tensor, classifier: Any,
                  fidelity: bool) -> List[Dict[str, Any]]:
    """The per-image figures that the summaries average (see the module docstring):
    ``consistency_db``; ``psnr_db`` and ``sharpness_error`` when ``fidelity``; ``hfe``, ``grain``
    and the truth's ``hfe_truth``, ``grain_truth``; the classes ``class_output`` (of ``output``,
    downsampled to 32x32 inside ``predict``) and ``class_base``, and ``composition`` = 1.0 where
    they agree, else 0.0."""
    from itermix_kdiff.demo import metrics
    from itermix_kdiff.demo.classifier import predict

    out = {
        "consistency_db": lr_psnr(output, base),
        "hfe": metrics.high_frequency_energy(output),
        "hfe_truth": metrics.high_frequency_energy(truth),
        "grain": metrics.grain(output),
        "grain_truth": metrics.grain(truth),
        "class_output": predict(output, classifier),
        "class_base": predict(base, classifier),
    }
    if fidelity:
        out["psnr_db"] = metrics.psnr(output, truth)
        out["sharpness_error"] = sharpness_error(output, truth)
    rows = []
    for i in range(output.shape[0]):
        row = {k: v[i].item() for k, v in out.items()}
        row["composition"] = float(row["class_output"] == row["class_base"])
        rows.append(row)
    return rows


def summarize(records: Sequence[Dict[str, Any]], keys: Sequence[str] = ("method", "base", "target"),
              reference: str = "truth") -> List[Dict[str, Any]]:
    """One row per distinct ``keys`` value: the scene means of the per-image figures, the
    detail and grain ratios of means against the records' ``hfe_<reference>`` and
    ``grain_<reference>`` (the true renders here; the decoded bicubic upscale in
    :mod:`benchmarks.bench_sd`), composition where the records have it, calls and seconds per
    image; plus ``time_vs_direct`` where a ``direct`` row of the same base and target exists."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    rows = []
    for key, group in groups.items():
        row = dict(zip(keys, key))
        row["scenes"] = len(group)
        row["consistency_db"] = statistics.fmean(r["consistency_db"] for r in group)
        if all("psnr_db" in r for r in group):
            row["psnr_db"] = statistics.fmean(r["psnr_db"] for r in group)
            row["sharpness_error"] = statistics.fmean(r["sharpness_error"] for r in group)
        row["detail"] = ratio_of_means([r["hfe"] for r in group], [r[f"hfe_{reference}"] for r in group])
        row["grain"] = ratio_of_means([r["grain"] for r in group], [r[f"grain_{reference}"] for r in group])
        if all("composition" in r for r in group):
            row["composition"] = statistics.fmean(r["composition"] for r in group)
        row["calls"] = statistics.fmean(r["calls"] for r in group)
        row["seconds"] = statistics.fmean(r["seconds"] for r in group)
        rows.append(row)
    if "method" in keys:
        for row in rows:
            direct = [d for d in rows if d["method"] == "direct"
                      and all(d[k] == row[k] for k in keys if k != "method")]
            row["time_vs_direct"] = row["seconds"] / direct[0]["seconds"] if direct and direct[0]["seconds"] else None
    return rows


# ---------------------------------------------------------------- running the methods

class Context(NamedTuple):
    """What every run needs: the counted model, its config, the classifier and the settings."""

    model: CallCounter
    config: Dict[str, Any]
    model_info: Dict[str, Any]
    classifier: Any
    steps: int
    base_steps: int
    cfg: float
    device: torch.device


def setup(steps: int, base_steps: int, cfg: float, device: torch.device = torch.device("cpu"),
          checkpoint: Optional[Path] = None) -> Context:
    """Load the demo model (:func:`benchmarks.common.load_model`) and the shipped classifier."""
    from itermix_kdiff.demo.classifier import load_classifier

    if steps < 1 or base_steps < 1:
        raise ValueError(f"steps and base_steps must be >= 1, got {steps} and {base_steps}")
    denoiser, config, info = load_model(device, checkpoint)
    return Context(CallCounter(denoiser), config, info, load_classifier(device=device), steps, base_steps,
                   float(cfg), torch.device(device))


def resolve_method(method: Dict[str, Any]) -> Dict[str, Any]:
    """``method`` with its preset name (``options: "demofusion"``) replaced by the preset's options."""
    from itermix_kdiff.options import PRESETS

    options = method.get("options", {})
    if isinstance(options, str):
        if options not in PRESETS:
            raise ValueError(f"unknown preset {options!r}; accepted: {', '.join(PRESETS)}")
        options = PRESETS[options]
    return {**method, "options": dict(options)}


def extra_args(ctx: Context, label: int) -> Dict[str, Any]:
    return {"class_labels": torch.tensor([label], device=ctx.device), "cond_scale": ctx.cfg}


def render_scene(scene: int, size: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scene ``scene`` of the benchmark dataset at ``size``: ``(image (1, 3, size, size), label)``.
    Its class is ``scene % NUM_CLASSES`` (so any 5 consecutive scenes hold every class once);
    everything else comes from ``shapes.scene_params(scene, SCENE_SEED)``."""
    from itermix_kdiff.demo import shapes

    return shapes.render([scene], size, seed=SCENE_SEED, classes=[scene % shapes.NUM_CLASSES], device=device)


def make_base(ctx: Context, kind: str, scene: int) -> Tuple[torch.Tensor, int]:
    """The 32x32 base of ``scene`` and its class: the true render, or the model's sample of the
    scene's class from the pipeline's base seed (``stage_seeds(scene)["base"]``)."""
    from itermix_kdiff import pipeline

    render, labels = render_scene(scene, BASE_SIZE, ctx.device)
    label = int(labels[0])
    if kind == "render":
        return render, label
    if kind != "sample":
        raise ValueError(f"base kind must be one of {', '.join(BASE_KINDS)}; got {kind!r}")
    sigmas = get_sigmas(ctx.model, "karras", ctx.base_steps, config=ctx.config).to(ctx.device)
    seed = pipeline.stage_seeds(scene, 1)["base"]
    sample = pipeline.sample_base(ctx.model.inner_model, (1, 3, BASE_SIZE, BASE_SIZE), sigmas,
                                  extra_args(ctx, label), pipeline.generator(seed, ctx.device), True, ctx.device)
    return sample.clamp(-1, 1), label


def run_stage(ctx: Context, method: Dict[str, Any], current: torch.Tensor, size: int, label: int,
              scene: int, seeds: Dict[str, int]) -> torch.Tensor:
    """One 2x stage of ``method`` from ``current`` to ``size x size``: the true render, or
    :func:`stage_pass` with the demo model's Karras schedule and the scene's class."""
    if method["kind"] == "truth":
        return render_scene(scene, size, ctx.device)[0]
    sigmas = get_sigmas(ctx.model, "karras", ctx.steps, config=ctx.config).to(ctx.device)
    return stage_pass(ctx.model, method, current, (size, size), sigmas, extra_args(ctx, label), seeds, ctx.device)


def stage_pass(model: Callable[..., torch.Tensor], method: Dict[str, Any], current: torch.Tensor,
               size: Tuple[int, int], sigmas: torch.Tensor, extra: Dict[str, Any], seeds: Dict[str, int],
               device: torch.device) -> torch.Tensor:
    """One 2x stage of a resolved ``method`` (not ``truth``) from ``current`` (B, C, h, w:
    pixels, or an SD model's latents) to ``size = (H, W)``, ``model`` conditioned by
    ``extra``: ``direct`` (``pipeline.sample_base`` from the stage's hires seed), the
    ``upscale`` (``bicubic`` kind: nothing more), ``img2img`` of the upscale at ``denoise``, or
    an ``itermix`` sampler with the stage's itermix seed, then (unless ``cleanup`` is False)
    ``pipeline.img2img`` at :data:`CLEANUP_DENOISE` with the cleanup seed."""
    from itermix_kdiff import pipeline
    from itermix_kdiff.wrap import SAMPLERS

    kind = method["kind"]
    if kind == "direct":
        return pipeline.sample_base(model, (*current.shape[:2], *size), sigmas, extra,
                                    pipeline.generator(seeds["hires"], device), True, device)
    up = pipeline.upscale(current, tuple(size), method.get("upscale", "bicubic"))
    if kind == "bicubic":
        return up
    if kind == "img2img":
        return pipeline.img2img(model, up, sigmas, method["denoise"], extra,
                                pipeline.generator(seeds["hires"], device), True)
    if kind != "itermix":
        raise ValueError(f"unknown method kind {kind!r}")
    sampler = SAMPLERS[method.get("sampler", "euler")]
    kwargs = dict(method.get("sampler_kwargs", {}))
    if "seed" in inspect.signature(sampler).parameters and "seed" not in kwargs:
        kwargs["seed"] = seeds["itermix"]
    out = sampler(model, up, sigmas, extra_args=extra, disable=True,
                  generator=pipeline.generator(seeds["itermix"], device), **method["options"], **kwargs)
    if method.get("cleanup", True):
        out = pipeline.img2img(model, out, sigmas, CLEANUP_DENOISE, extra,
                               pipeline.generator(seeds["cleanup"], device), True)
    return out


def run_method(ctx: Context, method: Dict[str, Any], base: torch.Tensor, label: int, scene: int,
               targets: Sequence[int]) -> Dict[int, Tuple[torch.Tensor, int, float]]:
    """Chain 2x stages from ``base`` up to ``max(targets)``; returns ``{size: (output clamped
    to [-1, 1], model calls, seconds)}`` for each size in ``targets``, calls and seconds
    counted from the base (so 128 includes the 64 stage)."""
    from itermix_kdiff import pipeline

    method = resolve_method(method)
    if method["kind"] == "demofusion_upscale":
        return run_demofusion(ctx, base, label, scene, targets)
    n_stages = (max(targets) // BASE_SIZE).bit_length() - 1
    seeds = pipeline.stage_seeds(scene, n_stages)
    current, calls, seconds = base, 0, 0.0
    out = {}
    for k in range(1, n_stages + 1):
        size = BASE_SIZE * 2 ** k
        ctx.model.reset()
        start = time.perf_counter()
        current = run_stage(ctx, method, current, size, label, scene, seeds[f"stage{k}"]).clamp(-1, 1)
        seconds += time.perf_counter() - start
        calls += ctx.model.calls
        if size in targets:
            out[size] = (current, calls, seconds)
    return out


def run_demofusion(ctx: Context, base: torch.Tensor, label: int, scene: int, targets: Sequence[int]
                   ) -> Dict[int, Tuple[torch.Tensor, int, float]]:
    """``demofusion_upscale`` from the base to each target (its own run per target, scale
    ``target / 32``), 32x32 windows, the generator seeded with the first stage's itermix seed."""
    from itermix_kdiff import demofusion_upscale, pipeline

    sigmas = get_sigmas(ctx.model, "karras", ctx.steps, config=ctx.config).to(ctx.device)
    seed = pipeline.stage_seeds(scene, 1)["stage1"]["itermix"]
    out = {}
    for target in targets:
        ctx.model.reset()
        start = time.perf_counter()
        image = demofusion_upscale(ctx.model, base, sigmas, target // BASE_SIZE, extra_args=extra_args(ctx, label),
                                   window=BASE_SIZE, generator=pipeline.generator(seed, ctx.device), disable=True)
        out[target] = (image.clamp(-1, 1), ctx.model.calls, time.perf_counter() - start)
    return out


def evaluate_scene(ctx: Context, name: str, method: Dict[str, Any], scene: int, bases: Sequence[str],
                   targets: Sequence[int], base_cache: Optional[Dict[tuple, tuple]] = None,
                   keep: Optional[Dict[tuple, torch.Tensor]] = None) -> List[Dict[str, Any]]:
    """The records of one method on one scene: one per base kind and target size.

    ``base_cache`` reuses bases across methods; ``keep`` (a dict) receives the outputs,
    keyed ``(name, base, target, scene)``, for the example grid.
    """

    for target in targets:
        if target < 2 * BASE_SIZE or target % BASE_SIZE or (target // BASE_SIZE) & (target // BASE_SIZE - 1):
            raise ValueError(f"targets must be 32 times a power of two >= 2 (64, 128, ...), got {target}")
    base_cache = {} if base_cache is None else base_cache
    records = []
    for kind in bases:
        if method["kind"] == "truth" and kind != "render":
            continue
        if (kind, scene) not in base_cache:
            base_cache[(kind, scene)] = make_base(ctx, kind, scene)
        base, label = base_cache[(kind, scene)]
        outputs = run_method(ctx, method, base, label, scene, targets)
        for target, (image, calls, seconds) in outputs.items():
            truth = render_scene(scene, target, ctx.device)[0]
            row = image_metrics(image, base, truth, ctx.classifier, fidelity=(kind == "render"))[0]
            records.append({"method": name, "base": kind, "target": target, "scene": scene, "label": label,
                            "calls": calls, "seconds": seconds, **row})
            if keep is not None:
                keep[(name, kind, target, scene)] = image.cpu()
    return records


# ---------------------------------------------------------------- reports

SUMMARY_COLUMNS = ("method", "consistency_db", "psnr_db", "sharpness_error", "detail", "grain", "composition",
                   "calls", "seconds", "time_vs_direct")
SUMMARY_HEADERS = ("method", "consistency dB", "PSNR dB", "sharpness err", "detail", "grain", "composition",
                   "calls", "s/image", "time vs direct")


def to_markdown(result: Dict[str, Any]) -> str:
    """One table per base kind and target size, then the provenance."""
    s = result["settings"]
    parts = ["## Picture quality", "",
             f"{s['scenes']} scenes (dataset seed {SCENE_SEED}), {s['steps']} steps (Karras, the model's σ range), "
             f"guidance {s['cfg']}, cleanup img2img at denoise {CLEANUP_DENOISE} after every itermix method; "
             f"model: {result['model']['source']}. Consistency = LR-PSNR against the base; detail and grain "
             "relative to the true renders (1.0 = like the truth); composition = share of scenes whose "
             "class the classifier still sees; calls and time per image, from the 32×32 base.", ""]
    summary = result["summary"]
    for kind in s["bases"]:
        for target in s["targets"]:
            rows = [r for r in summary if r["base"] == kind and r["target"] == target]
            if not rows:
                continue
            title = "true 32×32 renders" if kind == "render" else "the model's own 32×32 samples"
            parts += [f"### 32→{target} from {title}", "",
                      markdown_table(rows, SUMMARY_COLUMNS, SUMMARY_HEADERS, digits=2), ""]
    parts.append(provenance_markdown(result["environment"]))
    return "\n".join(parts) + "\n"


def plot_consistency_detail(summary: Sequence[Dict[str, Any]], path: Path) -> Path:
    """Consistency (x) against detail (y), one point per method; a panel per base and target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["base"], r["target"]) for r in summary}, key=lambda p: (BASE_KINDS.index(p[0]), p[1]))
    cols = len({p[1] for p in panels})
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 5 * rows), squeeze=False)
    for ax, (kind, target) in zip(axes.flat, panels):
        for r in summary:
            if (r["base"], r["target"]) != (kind, target):
                continue
            family = METHODS.get(r["method"], {"kind": "itermix"})["kind"]
            color = {"truth": "black", "bicubic": "tab:gray", "direct": "tab:red", "img2img": "tab:orange"}.get(
                family, "tab:blue")
            ax.scatter(r["consistency_db"], r["detail"], color=color, s=20 + 60 * min(r["grain"], 3))
            ax.annotate(r["method"], (r["consistency_db"], r["detail"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.axhline(1.0, color="black", lw=0.5, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("consistency: LR-PSNR vs the base (dB)")
        ax.set_ylabel("detail: high-frequency energy / truth's (log)")
        ax.set_title(f"32→{target}, {kind} bases (dot size: grain)")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def example_grid(kept: Dict[tuple, torch.Tensor], bases: Dict[tuple, tuple], methods: Sequence[str],
                 target: Any, scenes: Sequence[int], path: Path, kind: str = "render",
                 size: Optional[Tuple[int, int]] = None) -> Optional[Path]:
    """A sheet (``pipeline.comparison_sheet``): a row per scene, a column for the base and each
    method; every picture shown at ``size`` (default ``(target, target)``)."""
    from itermix_kdiff import pipeline

    columns = [("base", torch.cat([bases[(kind, s)][0].cpu() for s in scenes]))]
    for name in methods:
        images = [kept.get((name, kind, target, s)) for s in scenes]
        if all(im is not None for im in images):
            columns.append((name, torch.cat(images)))
    if len(columns) < 2:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline.comparison_sheet(columns, size=(target, target) if size is None else tuple(size)).save(path)
    return path


# ---------------------------------------------------------------- the benchmark

def run(quick: bool = False, scenes: Optional[int] = None, steps: Optional[int] = None,
        base_steps: Optional[int] = None, cfg: float = 3.0, methods: Optional[Sequence[str]] = None,
        targets: Sequence[int] = (64, 128), bases: Sequence[str] = BASE_KINDS, out: Optional[Path] = None,
        device: torch.device = torch.device("cpu"), checkpoint: Optional[Path] = None,
        log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the benchmark and write its files into ``out``; returns the results dict."""
    scenes = scenes if scenes is not None else (2 if quick else DEFAULT_SCENES)
    steps = steps if steps is not None else (2 if quick else DEFAULT_STEPS)
    base_steps = base_steps if base_steps is not None else (4 if quick else DEFAULT_BASE_STEPS)
    names = list(methods) if methods is not None else list(DEFAULT_METHODS)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; accepted: {', '.join(METHODS)}")
    bad = [b for b in bases if b not in BASE_KINDS]
    if bad:
        raise ValueError(f"bases must be among {', '.join(BASE_KINDS)}; got {', '.join(bad)}")
    targets = sorted(set(int(t) for t in targets))
    out = Path(out) if out is not None else (RESULTS_DIR / "quick" if quick else RESULTS_DIR)
    env = environment(device)
    ctx = setup(steps, base_steps, cfg, device, checkpoint)
    log(f"model: {ctx.model_info['source']} {ctx.model_info['path'] or ''}")
    records: List[Dict[str, Any]] = []
    base_cache: Dict[tuple, tuple] = {}
    kept: Dict[tuple, torch.Tensor] = {}
    example_scenes = list(range(min(scenes, 3)))
    # scene by scene, every method in turn: a change of the machine's load during the run
    # weighs on every method alike
    for scene in range(scenes):
        start = time.perf_counter()
        for name in names:
            method_targets = targets if not quick or name in QUICK_TWO_STAGE else [t for t in targets if t <= 64]
            if method_targets:
                records += evaluate_scene(ctx, name, METHODS[name], scene, bases, method_targets, base_cache,
                                          kept if scene in example_scenes else None)
        log(f"  scene {scene}: {time.perf_counter() - start:.1f} s")
    records.sort(key=lambda r: (names.index(r["method"]), BASE_KINDS.index(r["base"]), r["target"], r["scene"]))
    summary = summarize(records)
    env["load_avg_end"] = load_average()
    result = {
        "environment": env,
        "model": ctx.model_info,
        "settings": {"quick": quick, "scenes": scenes, "scene_seed": SCENE_SEED, "steps": steps,
                     "base_steps": base_steps, "cfg": cfg, "cleanup_denoise": CLEANUP_DENOISE,
                     "targets": targets, "bases": list(bases), "methods": {n: METHODS[n] for n in names}},
        "summary": summary,
        "records": records,
    }
    write_json(out / "quality.json", result)
    (out / "quality.md").write_text(to_markdown(result))
    plot_consistency_detail(summary, out / "quality_consistency_detail.png")
    example_grid(kept, base_cache, [n for n in EXAMPLE_METHODS if n in names], max(targets), example_scenes,
                 out / "quality_examples.png",
                 "render" if "render" in bases else bases[0])
    log(f"wrote {out / 'quality.json'}, quality.md and the plots")
    return result


def add_quality_arguments(p: argparse.ArgumentParser) -> None:
    """The options the quality benchmark and the sweep share."""
    p.add_argument("--steps", type=int, default=None,
                   help=f"steps of each pass's schedule (default {DEFAULT_STEPS}; a --quick run: 2)")
    p.add_argument("--base-steps", type=int, default=None,
                   help=f"steps of the model's 32x32 bases (default {DEFAULT_BASE_STEPS}; a --quick run: 4)")
    p.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance scale (default 3, the CLI's)")
    p.add_argument("--targets", default="64,128", help="target sizes, comma-separated (default 64,128)")
    p.add_argument("--bases", default="render,sample", help="base kinds: render, sample (default both)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="demo-model weights (default: the shipped ones, else the newest training snapshot)")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2 scenes, 2 steps")
    p.add_argument("--scenes", type=int, default=None,
                   help=f"number of scenes (default {DEFAULT_SCENES}; 2 with --quick)")
    p.add_argument("--methods", default=None, help=f"comma-separated subset of: {', '.join(METHODS)}")
    p.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results, "
                   "benchmarks/results/quick with --quick)")
    add_quality_arguments(p)
    args = p.parse_args(argv)
    set_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    return run(args.quick, args.scenes, args.steps, args.base_steps, args.cfg, methods,
               [int(t) for t in args.targets.split(",")], [b.strip() for b in args.bases.split(",")],
               args.out, resolve_device(args.device), args.checkpoint)


if __name__ == "__main__":
    main()
