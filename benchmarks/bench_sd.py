"""Speed and picture quality of iterative mixing on a Stable Diffusion checkpoint (no ground truth).

    python -m benchmarks --checkpoint FILE|DIR --prompts prompts.txt [--device cuda] [--dtype float16]
    python -m benchmarks.bench_sd --checkpoint FILE|DIR --prompts prompts.txt ...   # the same

``--checkpoint`` is what :func:`itermix_kdiff.sd.load_sd` takes (an SD 1.x / 2.x / SDXL single
file or a diffusers folder; ``--config`` a diffusers config folder for other sizes);
``--prompts`` a text file, one prompt per line (blank lines and lines starting with ``#`` are
skipped; without it, :data:`DEFAULT_PROMPTS`). The same tables as the demo model's, for your model:

**Speed** (``speed.json``/``speed.md``): the per-step cost of ``sample_itermix_euler`` (each blend
function) and ``sample_itermix_dpmpp_2m`` against k-diffusion's ``sample_euler`` /
``sample_dpmpp_2m`` on the model's guided denoiser (one batched UNet call of 2 rows per step),
at the native latent size and at 2x, :data:`SPEED_STEPS` Karras steps over the model's sigma
range: :func:`benchmarks.bench_speed.run_timings`, the two timed interleaved in the same process
(median ratio and quartiles), seconds per schedule step of each, the model calls of each and
the ratio per call (the itermix Euler skips the call of a step whose ``c1`` is 0).

**Quality** (``quality.json``/``quality.md``, ``quality_examples.png``): for prompt ``i`` (seed
``--seed + i``), a base generation at the family's native size (or ``--width``/``--height``):
``sample_euler`` over ``--steps`` Karras steps with guidance ``--cfg-scale``; then every method of
:data:`METHODS`, in 2x stages up to ``--scale``, on the latents (the demo benchmark's passes,
:func:`benchmarks.bench_quality.stage_pass`): ``bicubic`` / ``bislerp`` latent upscale alone,
``direct`` generation at the target size from noise, hires-fix ``img2img`` of the bicubic
upscale at denoise 0.3 / 0.5 / 0.7, ``itermix`` with the reference defaults (then the cleanup
img2img at :data:`~benchmarks.bench_quality.CLEANUP_DENOISE`), without the cleanup, with each
other blend function (``slerp``, ``norm_only``; ``addition`` is the default), and the
``demofusion preset``. SDXL is conditioned on each stage's picture size. Every output is decoded
by the VAE (``--vae-tile`` tiles it) and clamped to [-1, 1], as a saved image.

Metrics (no ground truth exists): with ``Y`` the decoded output, ``B`` the decoded base, ``R`` the
decoded ``bicubic`` latent upscale of the same prompt and target (the reference: the upscale
with no model call), ``HFE`` = :func:`itermix_kdiff.demo.metrics.high_frequency_energy` (the share
of spectral power above half the Nyquist frequency) and ``grain`` = ``metrics.grain`` (the std of
``Y - median3x3(Y)``):

- **consistency** (dB): LR-PSNR, ``PSNR(downsample(Y, base size), B)``
  (:func:`benchmarks.bench_quality.lr_psnr`): does the output still look like its base from afar?
- **detail**: ``mean HFE(Y) / mean HFE(R)`` over the prompts: how much more high-frequency
  content than the bicubic latent upscale (1.0 for ``bicubic`` itself); ``hfe`` the absolute mean.
  Noise raises it too: read it with grain.
- **grain**: ``mean grain(Y) / mean grain(R)``; ``grain abs`` the absolute mean (pixels in [-1, 1]).
- **cost**: model calls per image from the base (one call = one guided UNet batch of 2), the
  number the schedule predicts (``predicted``, :func:`benchmarks.bench_speed.predicted_calls`
  and ``pipeline.img2img_start``), the seconds of the latent passes per image, the seconds of the
  VAE decode, and ``time vs direct``.

``summary.md`` holds both reports. Everything runs under ``torch.no_grad``; on CUDA the timers
synchronise the device.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from benchmarks import bench_quality as Q
from benchmarks import bench_speed as S
from benchmarks.common import (RESULTS_DIR, CallCounter, environment, load_average, markdown_table,
                               provenance_markdown, resolve_device, set_threads, sync, write_json)

DEFAULT_PROMPTS = (
    "a castle on a hill at sunset, highly detailed",
    "a portrait photo of an old fisherman, sharp focus",
    "a bowl of fruit on a wooden table, still life",
)
DEFAULT_STEPS = 20
QUICK_STEPS = 2
#: Steps of the speed runs (a --quick run: 2).
SPEED_STEPS = 10
DEFAULT_CFG = 7.5
#: The bicubic latent upscale: the reference of the detail and grain ratios (always run).
REFERENCE = "bicubic"

#: The demo benchmark's methods that make sense without ground truth, plus the bislerp upscale.
METHODS: Dict[str, Dict[str, Any]] = {
    "bicubic": Q.METHODS["bicubic"],
    "bislerp": {"kind": "bicubic", "upscale": "bislerp"},
    **{name: Q.METHODS[name] for name in ("direct", "img2img 0.3", "img2img 0.5", "img2img 0.7", "itermix",
                                          "itermix, no cleanup", "slerp", "norm_only", "demofusion preset")},
}
EXAMPLE_METHODS = ("bicubic", "direct", "img2img 0.5", "itermix", "itermix, no cleanup", "slerp",
                   "demofusion preset")

#: (CASES name, blends) timed on the SD denoiser; a --quick run times addition only.
SPEED_CASES = (("euler", S.BLENDS), ("dpmpp_2m", ("addition",)))
QUICK_SPEED_CASES = (("euler", ("addition",)), ("dpmpp_2m", ("addition",)))


def read_prompts(path: Optional[Path]) -> List[str]:
    """The prompts of ``path`` (one a line; blank lines and ``#`` lines skipped), or
    :data:`DEFAULT_PROMPTS` when ``path`` is None."""
    if path is None:
        return list(DEFAULT_PROMPTS)
    prompts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"{path} holds no prompt (one a line; blank lines and # lines are skipped)")
    return prompts


def load(checkpoint: Path, config: Optional[Path] = None, prediction_type: Optional[str] = None,
         dtype: Optional[str] = None, device: torch.device = torch.device("cpu")) -> Tuple[Any, Dict[str, Any]]:
    """``(model, info)``: :func:`itermix_kdiff.sd.load_sd` and what the results record of it
    (source, its SHA-256 for a single file, family, prediction type, dtype, native size)."""
    from itermix_kdiff import pipeline
    from itermix_kdiff.sd import load_sd

    m = load_sd(checkpoint, prediction_type=prediction_type, dtype=dtype, device=device, config=config)
    checkpoint = Path(checkpoint)
    info = {"source": "stable diffusion", "path": str(checkpoint), "config": None if config is None else str(config),
            "format": "diffusers folder" if checkpoint.is_dir() else "single file",
            "sha256": None if checkpoint.is_dir() else pipeline.file_sha256(checkpoint),
            "family": m.family, "prediction_type": m.prediction_type, "dtype": str(m.dtype).replace("torch.", ""),
            "device": str(m.device), "native_size": list(m.native_size)}
    return m, info


def conditioner(m: Any, prompt: str, negative: str, cfg: float) -> Callable[[Tuple[int, int]], Dict[str, Any]]:
    """``extra(size)``: the model's ``extra_args`` for a picture of ``size = (H, W)`` pixels,
    encoded once per size (SDXL conditions on the size; the others give the same every time)."""
    cache: Dict[Tuple[int, int], Dict[str, Any]] = {}

    def extra(size: Tuple[int, int]) -> Dict[str, Any]:
        size = (int(size[0]), int(size[1]))
        if size not in cache:
            cache[size] = m.conditioning(prompt, negative_prompt=negative, cfg_scale=cfg, width=size[1],
                                         height=size[0])
        return cache[size]

    return extra


def base_size(m: Any, width: Optional[int], height: Optional[int]) -> Tuple[int, int]:
    """``(H, W)`` of the base in pixels: the native size, or ``width``/``height``
    (checked: positive multiples of the VAE's factor)."""
    _, _, h, w = m.latent_shape(width, height)
    return h * m.vae_scale, w * m.vae_scale


# ---------------------------------------------------------------- speed

def run_speed(m: Any, info: Dict[str, Any], *, quick: bool = False, prompt: str = DEFAULT_PROMPTS[0],
              negative: str = "", cfg: float = DEFAULT_CFG, width: Optional[int] = None,
              height: Optional[int] = None, device: torch.device = torch.device("cpu"),
              log: Callable[[str], None] = print) -> Dict[str, Any]:
    """The itermix samplers against k-diffusion's on the SD denoiser at the base latent size and
    at 2x (see the module docstring); returns the speed results dict."""
    env = environment(device)
    h, w = base_size(m, width, height)
    channels, scale = m.latent_channels, m.vae_scale
    shapes = [(1, channels, h * k // scale, w * k // scale) for k in (1, 2)]
    steps = QUICK_STEPS if quick else SPEED_STEPS
    extra = conditioner(m, prompt, negative, cfg)
    sigma_range = (float(m.denoiser.sigma_min), float(m.denoiser.sigma_max))
    log(f"speed: {info['family']} denoiser, latents {', '.join('x'.join(map(str, s)) for s in shapes)}")
    with torch.no_grad():
        rows = S.run_timings("sd", m.denoiser, shapes, steps, sigma_range,
                             S.select_cases(QUICK_SPEED_CASES if quick else SPEED_CASES),
                             repeats=1 if quick else 5, warmup=0 if quick else 1, device=device,
                             extra_args_fn=lambda shape: extra((shape[-2] * scale, shape[-1] * scale)), log=log)
    for r in rows:
        r["baseline_s_per_step"] = r["baseline_s"] / steps
        r["candidate_s_per_step"] = r["candidate_s"] / steps
    env["load_avg_end"] = load_average()
    return {"environment": env, "quick": quick, "model": info,
            "settings": {"steps": steps, "schedule": "karras", "sigma_range": list(sigma_range), "cfg": cfg,
                         "prompt": prompt, "negative_prompt": negative, "shapes": [list(s) for s in shapes]},
            "timings": rows}


def speed_markdown(result: Dict[str, Any]) -> str:
    """The speed report: one row per sampler, blend and latent size, then the provenance."""
    s, info = result["settings"], result["model"]
    rows = [{"sampler": r["sampler"], "blend": r["blending_function"], "latent": "×".join(map(str, r["shape"])),
             "base_step": r["baseline_s_per_step"], "cand_step": r["candidate_s_per_step"],
             "ratio": S.ratio_cell(r), "calls": f"{r['candidate_calls']}/{r['baseline_calls']}",
             "per_call": r["ratio_per_call"]} for r in result["timings"]]
    table = markdown_table(rows, ["sampler", "blend", "latent", "base_step", "cand_step", "ratio", "calls", "per_call"],
                           ["sampler", "blend", "latent", "k-diffusion s/step", "itermix s/step",
                            "itermix ÷ k-diffusion", "calls itermix/k-diffusion", "per call"], digits=4)
    return "\n".join([
        f"## Speed on {info['family']} ({info['path']})", "",
        f"Time of the itermix sampler ÷ time of its k-diffusion counterpart on the model's guided denoiser "
        f"(guidance {s['cfg']}: one UNet call of 2 rows per step), {s['steps']} Karras steps over σ "
        f"{s['sigma_range'][0]:.4g}–{s['sigma_range'][1]:.4g}, same inputs, same process, interleaved; median "
        f"(quartiles). The itermix samplers draw their n + 1 noised latents in the run; the Euler one skips "
        f"the model call of the step whose `c1` is 0. dtype {info['dtype']}, device {info['device']}.", "",
        table, "", provenance_markdown(result["environment"]), ""])


# ---------------------------------------------------------------- quality

def img2img_calls(steps: int, denoise: float) -> int:
    """Model calls of ``pipeline.img2img`` at ``denoise`` over ``steps`` steps."""
    from itermix_kdiff import pipeline

    return max(0, steps - pipeline.img2img_start(steps, denoise))


def stage_calls(model: Any, sigmas: torch.Tensor, method: Dict[str, Any]) -> int:
    """The model calls the schedule predicts for one 2x stage of a resolved ``method``."""
    steps = len(sigmas) - 1
    kind = method["kind"]
    if kind == "bicubic":
        return 0
    if kind == "direct":
        return steps
    if kind == "img2img":
        return img2img_calls(steps, method["denoise"])
    calls = S.predicted_calls(model, sigmas, method.get("sampler", "euler"), method["options"])[1]
    return calls + (img2img_calls(steps, Q.CLEANUP_DENOISE) if method.get("cleanup", True) else 0)


def decode(m: Any, latents: torch.Tensor, vae_tile: Optional[int], device: torch.device
           ) -> Tuple[torch.Tensor, float]:
    """``(image clamped to [-1, 1], seconds)`` of the VAE decode."""
    sync(device)
    start = time.perf_counter()
    image = m.decode(latents, tile_size=vae_tile).clamp(-1, 1)
    sync(device)
    return image, time.perf_counter() - start


def image_figures(image: torch.Tensor) -> Dict[str, float]:
    from itermix_kdiff.demo import metrics

    return {"hfe": metrics.high_frequency_energy(image).item(), "grain": metrics.grain(image).item()}


def run_quality(m: Any, info: Dict[str, Any], prompts: Sequence[str], *, quick: bool = False,
                negative: str = "", cfg: float = DEFAULT_CFG, steps: Optional[int] = None,
                width: Optional[int] = None, height: Optional[int] = None, scale: int = 2, seed: int = 0,
                vae_tile: Optional[int] = None, methods: Optional[Sequence[str]] = None,
                out: Optional[Path] = None, device: torch.device = torch.device("cpu"),
                log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Every method on every prompt (see the module docstring); writes ``quality_examples.png``
    into ``out`` when given; returns the quality results dict."""
    from itermix_kdiff import pipeline

    steps = steps if steps is not None else (QUICK_STEPS if quick else DEFAULT_STEPS)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if scale < 2 or scale & (scale - 1):
        raise ValueError(f"scale must be a power of two >= 2, got {scale}")
    names = list(methods) if methods is not None else list(METHODS)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; accepted: {', '.join(METHODS)}")
    env = environment(device)
    h, w = base_size(m, width, height)
    n_stages = scale.bit_length() - 1
    sizes = [(h * 2 ** k, w * 2 ** k) for k in range(1, n_stages + 1)]
    latent = [(H // m.vae_scale, W // m.vae_scale) for H, W in sizes]
    counter = CallCounter(m.denoiser)
    sigmas = m.get_sigmas("karras", steps)
    resolved = {name: Q.resolve_method(METHODS[name]) for name in set(names) | {REFERENCE}}
    predicted = {name: stage_calls(counter, sigmas, method) for name, method in resolved.items()}
    records: List[Dict[str, Any]] = []
    bases: List[Dict[str, Any]] = []
    kept: Dict[tuple, torch.Tensor] = {}
    base_images: Dict[tuple, tuple] = {}
    example_prompts = list(range(min(len(prompts), 3)))
    run_order = [REFERENCE] + [n for n in names if n != REFERENCE]
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            start_prompt = time.perf_counter()
            seeds = pipeline.stage_seeds(seed + i, n_stages)
            extra = conditioner(m, prompt, negative, cfg)
            counter.reset()
            sync(device)
            start = time.perf_counter()
            base = pipeline.sample_base(counter, m.latent_shape(w, h), sigmas, extra((h, w)),
                                        pipeline.generator(seeds["base"], device), True, device)
            sync(device)
            base_seconds = time.perf_counter() - start
            base_image, base_decode = decode(m, base, vae_tile, device)
            bases.append({"prompt": i, "seed": seeds["base"], "calls": counter.calls, "predicted_calls": steps,
                          "seconds": base_seconds, "decode_seconds": base_decode, **image_figures(base_image)})
            base_images[("sd", i)] = (base_image.cpu(),)
            reference: Dict[str, Dict[str, float]] = {}
            for name in run_order:
                current, calls, seconds = base, 0, 0.0
                for k, (size, lat) in enumerate(zip(sizes, latent), 1):
                    counter.reset()
                    sync(device)
                    start = time.perf_counter()
                    current = Q.stage_pass(counter, resolved[name], current, lat, sigmas, extra(size),
                                           seeds[f"stage{k}"], device)
                    sync(device)
                    seconds += time.perf_counter() - start
                    calls += counter.calls
                    image, decode_seconds = decode(m, current, vae_tile, device)
                    target = f"{size[1]}x{size[0]}"
                    figures = image_figures(image)
                    if name == REFERENCE:
                        reference[target] = figures
                    if name not in names:
                        continue
                    records.append({"method": name, "target": target, "prompt": i, "seed": seeds["base"],
                                    "calls": calls, "predicted_calls": k * predicted[name], "seconds": seconds,
                                    "decode_seconds": decode_seconds,
                                    "consistency_db": Q.lr_psnr(image, base_image).item(), **figures,
                                    "hfe_bicubic": reference[target]["hfe"],
                                    "grain_bicubic": reference[target]["grain"]})
                    if i in example_prompts and k == n_stages:
                        kept[(name, "sd", target, i)] = image.cpu()
            log(f"  prompt {i}: {time.perf_counter() - start_prompt:.1f} s")
    records.sort(key=lambda r: (names.index(r["method"]), r["prompt"], int(r["target"].split("x")[0])))
    summary = summarize(records)
    env["load_avg_end"] = load_average()
    result = {
        "environment": env, "quick": quick, "model": info,
        "settings": {"prompts": list(prompts), "negative_prompt": negative, "cfg": cfg, "steps": steps,
                     "schedule": "karras", "seed": seed, "base_size": [w, h], "scale": scale,
                     "targets": [f"{W}x{H}" for H, W in sizes], "cleanup_denoise": Q.CLEANUP_DENOISE,
                     "vae_tile": vae_tile, "reference": REFERENCE, "methods": {n: METHODS[n] for n in names}},
        "bases": bases, "summary": summary, "records": records,
    }
    if out is not None:
        last = f"{sizes[-1][1]}x{sizes[-1][0]}"
        Q.example_grid(kept, base_images, [n for n in EXAMPLE_METHODS if n in names], last, example_prompts,
                       Path(out) / "quality_examples.png", kind="sd", size=sizes[-1])
    return result


def summarize(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """:func:`benchmarks.bench_quality.summarize` per method and target, against the bicubic
    reference, plus the absolute HFE and grain, the predicted calls and the decode seconds."""
    rows = Q.summarize(records, keys=("method", "target"), reference=REFERENCE)
    for row in rows:
        group = [r for r in records if r["method"] == row["method"] and r["target"] == row["target"]]
        row["prompts"] = row.pop("scenes")
        row["hfe"] = statistics.fmean(r["hfe"] for r in group)
        row["grain_abs"] = statistics.fmean(r["grain"] for r in group)
        row["predicted_calls"] = statistics.fmean(r["predicted_calls"] for r in group)
        row["decode_seconds"] = statistics.fmean(r["decode_seconds"] for r in group)
        for key in ("calls", "predicted_calls"):  # the same count for every prompt: shown as a whole number
            if float(row[key]).is_integer():
                row[key] = int(row[key])
    return rows


QUALITY_COLUMNS = ("method", "consistency_db", "detail", "grain", "hfe", "grain_abs", "calls", "predicted_calls",
                   "seconds", "decode_seconds", "time_vs_direct")
QUALITY_HEADERS = ("method", "consistency dB", "detail ÷ bicubic", "grain ÷ bicubic", "HFE", "grain abs", "calls",
                   "predicted", "s/image", "decode s", "time vs direct")


def quality_markdown(result: Dict[str, Any]) -> str:
    """The quality report: one table per target size, then the provenance."""
    s, info = result["settings"], result["model"]
    w, h = s["base_size"]
    base_calls = statistics.fmean(b["calls"] for b in result["bases"])
    base_seconds = statistics.fmean(b["seconds"] for b in result["bases"])
    parts = [f"## Picture quality on {info['family']} ({info['path']})", "",
             f"{len(s['prompts'])} prompt(s), seeds {s['seed']}–{s['seed'] + len(s['prompts']) - 1}, base {w}×{h} "
             f"({base_calls:.0f} calls, {base_seconds:.3g} s), {s['steps']} Karras steps per pass, guidance "
             f"{s['cfg']}, cleanup img2img at denoise {s['cleanup_denoise']} after every itermix method but "
             f"`no cleanup`; dtype {info['dtype']}, device {info['device']}. No ground truth: consistency = "
             f"LR-PSNR of the decoded output against the decoded base; detail and grain relative to the decoded "
             f"bicubic latent upscale (1.0 = like it), HFE = share of spectral power above half Nyquist, grain "
             f"abs = std of the residual of a 3×3 median; calls per image from the base (predicted: what the "
             f"schedule says), s/image the latent passes, decode s the VAE.", ""]
    if all(r["calls"] == r["predicted_calls"] for r in result["records"]):
        parts += ["Every model-call count equals the schedule's prediction.", ""]
    else:
        parts += ["SOME MODEL-CALL COUNTS DIFFER FROM THE SCHEDULE'S PREDICTION: see quality.json.", ""]
    for target in s["targets"]:
        rows = [r for r in result["summary"] if r["target"] == target]
        parts += [f"### {w}×{h} → {target.replace('x', '×')}", "",
                  markdown_table(rows, QUALITY_COLUMNS, QUALITY_HEADERS, digits=3), ""]
    parts.append(provenance_markdown(result["environment"]))
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- the benchmark

def run(checkpoint: Path, *, prompts: Optional[Path] = None, config: Optional[Path] = None,
        negative: str = "", cfg: float = DEFAULT_CFG, steps: Optional[int] = None, width: Optional[int] = None,
        height: Optional[int] = None, scale: int = 2, seed: int = 0, dtype: Optional[str] = None,
        prediction_type: Optional[str] = None, vae_tile: Optional[int] = None,
        only: Sequence[str] = ("speed", "quality"), quick: bool = False, out: Optional[Path] = None,
        device: torch.device = torch.device("cpu"), log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Load the checkpoint, run the parts in ``only`` and write ``speed.json``/``.md``,
    ``quality.json``/``.md``, ``quality_examples.png`` and ``summary.md`` into ``out`` (default
    ``benchmarks/results/sd/<checkpoint name>``; ``benchmarks/results/quick/sd/<name>`` with
    ``quick``); returns
    ``{"speed": ..., "quality": ..., "out": out}``."""
    texts = read_prompts(prompts)
    if quick:
        texts = texts[:1]
    checkpoint = Path(checkpoint)
    out = Path(out) if out is not None else (RESULTS_DIR / "quick" if quick else RESULTS_DIR) / "sd" / checkpoint.stem
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    m, info = load(checkpoint, config, prediction_type, dtype, device)
    log(f"model: {info['family']} {info['prediction_type']} {info['dtype']} on {info['device']}, "
        f"native {info['native_size'][0]}x{info['native_size'][1]} ({time.perf_counter() - start:.1f} s to load)")
    result: Dict[str, Any] = {"out": out}
    pages = []
    common = dict(negative=negative, cfg=cfg, width=width, height=height, device=device, log=log)
    if "speed" in only:
        speed = run_speed(m, info, quick=quick, prompt=texts[0], **common)
        write_json(out / "speed.json", speed)
        pages.append(speed_markdown(speed))
        (out / "speed.md").write_text(pages[-1])
        result["speed"] = speed
    if "quality" in only:
        quality = run_quality(m, info, texts, quick=quick, steps=steps, scale=scale, seed=seed, vae_tile=vae_tile,
                              out=out, **common)
        write_json(out / "quality.json", quality)
        pages.append(quality_markdown(quality))
        (out / "quality.md").write_text(pages[-1])
        if (out / "quality_examples.png").is_file():
            pages.append("![example outputs](quality_examples.png)\n")
        result["quality"] = quality
    (out / "summary.md").write_text(f"# Benchmarks on {info['path']}\n\n" + "\n".join(pages))
    log(f"done in {time.perf_counter() - start:.0f} s; results in {out}")
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The SD options of ``python -m benchmarks`` (and of this module's own command line)."""
    g = p.add_argument_group("Stable Diffusion checkpoint (python -m benchmarks --checkpoint ...)")
    g.add_argument("--checkpoint", type=Path, default=None,
                   help="an SD 1.x/2.x/SDXL single-file .safetensors or a diffusers folder: benchmark it "
                        "instead of the demo model")
    g.add_argument("--config", type=Path, default=None,
                   help="a diffusers-format config folder for single files of other sizes (as load_sd's config)")
    g.add_argument("--prompts", type=Path, default=None,
                   help="text file, one prompt per line (blank and # lines skipped; without it: 3 built-in "
                        "prompts; --quick: the first only)")
    g.add_argument("--negative-prompt", default=None, help="negative prompt for every prompt (default empty)")
    g.add_argument("--cfg-scale", type=float, default=None, help=f"guidance scale (default {DEFAULT_CFG})")
    g.add_argument("--width", type=int, default=None, help="base width in pixels (default: the native size)")
    g.add_argument("--height", type=int, default=None, help="base height in pixels (default: the native size)")
    g.add_argument("--scale", type=int, default=None, help="quality: upscale factor, a power of two (default 2)")
    g.add_argument("--seed", type=int, default=None, help="quality: seed of the first prompt, +1 per prompt "
                   "(default 0)")
    g.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: the checkpoint's)")
    g.add_argument("--prediction-type", choices=("epsilon", "v_prediction"), default=None,
                   help="override the checkpoint's (SD 2.x files do not say)")
    g.add_argument("--vae-tile", type=int, default=None, help="decode in tiles of this many pixels (memory)")


#: The options only an SD run takes (refused without --checkpoint).
SD_OPTIONS = ("config", "prompts", "negative_prompt", "cfg_scale", "width", "height", "scale", "seed", "dtype",
              "prediction_type", "vae_tile")


def run_args(args: argparse.Namespace, only: Sequence[str], device: torch.device) -> Dict[str, Any]:
    """:func:`run` from parsed :func:`add_arguments` options (plus ``quick``, ``out``, ``steps``)."""
    def given(name: str, default: Any) -> Any:
        value = getattr(args, name)
        return default if value is None else value

    return run(args.checkpoint, prompts=args.prompts, config=args.config, negative=given("negative_prompt", ""),
               cfg=given("cfg_scale", DEFAULT_CFG), steps=args.steps, width=args.width, height=args.height,
               scale=given("scale", 2), seed=given("seed", 0), dtype=args.dtype,
               prediction_type=args.prediction_type, vae_tile=args.vae_tile, only=only, quick=args.quick,
               out=args.out, device=device)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: the first prompt, 2 steps, one timing each")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default benchmarks/results/sd/<checkpoint name>; "
                        "benchmarks/results/quick/sd/<checkpoint name> with --quick)")
    p.add_argument("--only", default="speed,quality", help="speed, quality or both (default both)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"quality: steps per pass (default {DEFAULT_STEPS}; --quick {QUICK_STEPS})")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default; default 1)")
    p.add_argument("--device", default="auto", help="torch device (default: cuda if available, else cpu)")
    add_arguments(p)
    args = p.parse_args(argv)
    if args.checkpoint is None:
        p.error("--checkpoint is required")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only or only - {"speed", "quality"}:
        p.error(f"--only takes speed, quality or both; got {args.only!r}")
    set_threads(args.threads)
    return run_args(args, sorted(only), resolve_device(args.device))


if __name__ == "__main__":
    main()
