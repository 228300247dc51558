"""``itermix-upscale`` / ``python -m itermix_kdiff``: upscale images 2x or 4x with iterative mixing.

    itermix-upscale --out outputs/run --generate 4 --scale 4 --steps 25

With no ``--model``/``--checkpoint`` it uses the shipped demo model (a class-conditional RGB
model of simple shapes at 32x32, no VAE). The source is one of ``--generate N`` (a first
pass at the model's size; the classes cycle through the model's, or ``--class``),
``--input IMAGE ...`` (unconditional unless ``--class``) or ``--scene SEED`` (true renders of
the demo's procedural dataset, with the ground truth at the target size). Each 2x stage
upscales (bicubic or bislerp), runs the itermix sampler over the full schedule and cleans
up with a low-denoise img2img pass; a hires-fix img2img chain is run alongside for
comparison. The output folder gets every stage's images, ``comparison.png`` and
``run.json`` (every setting, seed and timing).

Every field of :class:`itermix_kdiff.options.ItermixOptions` is a flag (``--alpha-1``,
``--blending-schedule`` ...; masks are image files), applied on top of ``--preset``.
This module imports only the core at import time, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
import typing
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from .blending import BLENDING_FUNCTIONS
from .noised import NOISE_KINDS
from .options import MIX_MODES, OPTION_NAMES, PRESETS, ItermixOptions, make_options
from .pipeline import UPSCALE_METHODS
from .blending_schedules import BLENDING_SCHEDULES

PROG = "itermix-upscale"

#: ItermixOptions fields that are not plain flags, and where the CLI takes them from.
NOT_FLAGS = {
    "generator": "one torch.Generator per pass, seeded from --seed",
    "denoise_mask": "--denoise-mask IMAGE",
    "denoise_mask_fn": "a Python callable: library use only",
    "mixing_masks": "--mixing-mask IMAGE",
}

#: The accepted values of the ItermixOptions fields that are names.
OPTION_CHOICES = {
    "noise": NOISE_KINDS,
    "blending_schedule": BLENDING_SCHEDULES,
    "blending_function": tuple(BLENDING_FUNCTIONS),
    "mix": MIX_MODES,
}

OPTION_HELP = {
    "noise": "a new noise per step (independent, A1) or one for all steps (shared, B2)",
    "lazy": "compute each noised latent when needed (O(1) memory, B1)",
    "alpha_1": "steepness of the blending schedule (A2)",
    "blending_schedule": "the curve c1 of the running image's weight (A2, B2)",
    "blending_function": "how the noised image is blended in (A3)",
    "start_blending_at_pct": "c1 = 0 before int(pct * steps) (linear, logistic)",
    "stop_blending_at_pct": "the curve reaches 1 at step int(pct * steps)",
    "clamp_blending_at_pct": "c1 = 1 (no more mixing) from step int(pct * steps) on",
    "blend_min": "lower end of c1",
    "blend_max": "upper end of c1 (< 1 always keeps some noised image in)",
    "schedule_steps": "compute c1 over this many steps",
    "schedule_offset": "use c1[offset : offset + steps]",
    "normalize_on_mean": "deprecated: match the result's channel mean/std to the upscaled image (A6)",
    "rewind": "re-noise the result and run again from later steps (A5)",
    "rewind_min": "first rewind point (fraction of the steps)",
    "rewind_max": "last rewind point (fraction of the steps)",
    "mix": "mix after the model step (reference) or before it (DemoFusion, B2)",
    "s_churn": "Karras churn (Euler samplers)",
    "s_tmin": "churn only for sigma >= s_tmin",
    "s_tmax": "churn only for sigma <= s_tmax",
    "s_noise": "churn noise scale",
}

#: A sampler's parameters that the pipeline fills in itself.
CALL_PARAMETERS = ("model", "x", "sigmas", "extra_args", "callback", "disable", "noised_latents", "noise_sampler")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_fields() -> List[dataclasses.Field]:
    """The ItermixOptions fields that are CLI flags (all but :data:`NOT_FLAGS`)."""
    return [f for f in dataclasses.fields(ItermixOptions) if f.name not in NOT_FLAGS]


def add_option_flags(group: argparse._ArgumentGroup) -> None:
    """One flag per :func:`option_fields` field, typed from its annotation; default None
    (= the preset's value, else the field's default)."""
    hints = typing.get_type_hints(ItermixOptions)
    for f in option_fields():
        kind = hints[f.name]
        args = typing.get_args(kind)
        if typing.get_origin(kind) is typing.Union:  # Optional[X]
            kind = next(a for a in args if a is not type(None))
        help_text = f"{OPTION_HELP.get(f.name, 'see ItermixOptions')} (default {f.default})"
        if kind is bool:
            group.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.name in OPTION_CHOICES:
            group.add_argument(flag(f.name), choices=OPTION_CHOICES[f.name], default=None, help=help_text)
        else:
            group.add_argument(flag(f.name), type=kind, default=None, metavar=kind.__name__.upper(), help=help_text)


def sampler_names() -> List[str]:
    from .wrap import SAMPLERS

    return list(SAMPLERS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0] + " See README.md for the pipeline.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    m = p.add_argument_group("model (default: the shipped demo model)")
    m.add_argument("--model", type=Path, default=None, help="k-diffusion config JSON (configs/*.json schema)")
    m.add_argument("--checkpoint", type=Path, default=None, help="safetensors weights (pickles are refused)")
    m.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    s = p.add_argument_group("source (one of)")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--generate", type=int, metavar="N", default=None,
                     help="generate N images at the model's size (the default, N = 4)")
    src.add_argument("--input", type=Path, nargs="+", metavar="IMAGE", default=None,
                     help="start from these images (RGB/L/P, opaque RGBA; one size, sides a multiple of "
                          "the model's size multiple)")
    src.add_argument("--scene", type=int, metavar="SEED", default=None,
                     help="start from true renders of the demo's shapes dataset SEED (scenes 0..count-1), "
                          "with ground truth at the target size")
    s.add_argument("--count", type=int, default=4, help="how many scenes --scene renders (default 4)")
    s.add_argument("--class", dest="class_label", default=None,
                   help="class name or index for every image; 'none' = unconditional. Default: "
                        "--generate cycles through the classes, --scene uses the true ones, --input is unconditional")
    r = p.add_argument_group("run")
    r.add_argument("--scale", type=int, choices=(2, 4), default=2, help="2: one 2x stage; 4: two (default 2)")
    r.add_argument("--steps", type=int, default=30,
                   help="steps of the full schedule (karras over the model's sigma range; default 30)")
    r.add_argument("--sampler", default="euler", choices=sampler_names(),
                   help="itermix sampler (itermix_kdiff.wrap.SAMPLERS; default euler)")
    r.add_argument("--sampler-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="a keyword of the sampler itself, e.g. perlin_mode=latents or eta=0.5 (repeatable)")
    r.add_argument("--cfg", type=float, default=3.0,
                   help="classifier-free guidance scale for class-conditional models (default 3)")
    r.add_argument("--seed", type=int, default=0, help="seeds every random draw (run.json 'seeds'; default 0)")
    r.add_argument("--upscale", choices=UPSCALE_METHODS, default="bicubic",
                   help="2x upscale method: bicubic, or bislerp as ComfyUI's latent upscale (default bicubic)")
    r.add_argument("--cleanup-denoise", type=float, default=0.15,
                   help="denoise of the cleanup img2img pass (0: none; default 0.15)")
    r.add_argument("--hires-denoise", type=float, default=0.5,
                   help="denoise of the hires-fix img2img baseline (default 0.5)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    o = p.add_argument_group("mixing options (on top of --preset; docs/algorithm.md sections in brackets)")
    o.add_argument("--preset", choices=tuple(PRESETS), default="reference",
                   help="reference (default): the ComfyUI pack's defaults; demofusion: DemoFusion's own skip "
                        "residual with its tiled local + dilated global denoiser")
    o.add_argument("--denoise-mask", type=Path, default=None, metavar="IMAGE",
                   help="white = repaint, black = keep the upscaled image (resized to each stage)")
    o.add_argument("--mixing-mask", type=Path, default=None, metavar="IMAGE",
                   help="white = the noised image may be mixed in there (B3; resized to each stage)")
    add_option_flags(o)
    return p


def as_flags(message: str) -> str:
    """An option error with the option names written as the flags (``alpha_1`` -> ``--alpha-1``)."""
    names = "|".join(sorted(OPTION_NAMES, key=len, reverse=True))
    return re.sub(rf"\b({names})\b", lambda m: flag(m.group(1)), message)


def parse_value(text: str) -> Any:
    """``NAME=VALUE``'s value: true/false, none/null, an int, a float, or else the (stripped) string."""
    text = text.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def sampler_parameters(fn: Any) -> Dict[str, Any]:
    """``fn``'s keyword parameters, and whether it takes every itermix option (``**options``)."""
    import inspect

    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {"names": set(params), "takes_all_options": takes_all}


def resolve_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The preset's options, overridden by every option flag given."""
    options = dict(PRESETS[args.preset])
    for f in option_fields():
        value = getattr(args, f.name)
        if value is not None:
            options[f.name] = value
    return options


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Dict[str, Any]:
    """Validate everything that needs no model, as argparse errors. Returns the resolved
    ``options`` and ``sampler_kwargs``."""
    import torch

    from .blending_schedules import mixing_weights
    from .wrap import SAMPLERS

    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.generate is not None and args.generate < 1:
        parser.error(f"--generate must be >= 1, got {args.generate}")
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    if args.scene is not None and args.scene < 0:
        parser.error(f"--scene must be >= 0, got {args.scene}")
    if not 0 <= args.seed <= 2 ** 62:
        parser.error(f"--seed must be in [0, 2**62], got {args.seed}")
    for name in ("cleanup_denoise", "hires_denoise"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"{flag(name)} must be in [0, 1], got {getattr(args, name)}")
    if args.model is not None and args.checkpoint is None:
        parser.error("--model needs --checkpoint (give both, only --checkpoint, or neither for the shipped model)")
    options = resolve_options(args)
    try:
        opts = make_options(**options)
        mixing_weights(args.steps, opts)
    except (ValueError, TypeError) as e:
        parser.error(as_flags(str(e)))
    fn = SAMPLERS[args.sampler]
    params = sampler_parameters(fn)
    for name in options:
        if name not in params["names"] and not params["takes_all_options"]:
            parser.error(f"{flag(name)} is not an option of sampler {args.sampler}")
    own = sorted(n for n in params["names"] if n not in CALL_PARAMETERS and n not in OPTION_NAMES
                 and n != "options")
    sampler_kwargs = {}
    for item in args.sampler_arg:
        name, eq, value = item.partition("=")
        if not eq or name not in own:
            parser.error(f"--sampler-arg {item!r}: sampler {args.sampler} takes "
                         f"{', '.join(own) if own else 'no keywords of its own'} (as NAME=VALUE)")
        sampler_kwargs[name] = parse_value(value)
    return {"options": options, "sampler_kwargs": sampler_kwargs, "seed_keyword": "seed" in params["names"]}


def class_labels(args: argparse.Namespace, model: Any, count: int, scene_labels: Optional[Any]):
    """The class label of each image (a LongTensor), or None for unconditional sampling."""
    import torch

    if not model.num_classes:
        if args.class_label not in (None, "none"):
            raise ValueError(f"--class {args.class_label}: this model is not class-conditional")
        return None
    if args.class_label is None:
        if scene_labels is not None:
            return scene_labels
        if args.input is not None:
            return None
        return torch.arange(count) % model.num_classes
    if args.class_label.lower() == "none":
        return None
    if args.class_label in model.class_names:
        index = model.class_names.index(args.class_label)
    elif args.class_label.isdigit() and int(args.class_label) < model.num_classes:
        index = int(args.class_label)
    else:
        raise ValueError(f"--class must be one of {', '.join(model.class_names)}, an index below "
                         f"{model.num_classes}, or none; got {args.class_label!r}")
    return torch.full((count,), index, dtype=torch.long)


def save_batch(out: Path, stem: str, images: Any, files: List[str]) -> None:
    """Save each image of a batch as ``<stem>_<i>.png`` and record the names."""
    from .pipeline import tensor_to_image

    for i, image in enumerate(images):
        name = f"{stem}_{i:02d}.png"
        tensor_to_image(image).save(out / name)
        files.append(name)


def batch_metrics(images: Any, base: Any, truth: Optional[Any]) -> Dict[str, float]:
    """Batch means of the demo metrics (:mod:`itermix_kdiff.demo.metrics`): edge sharpness,
    grain, ``psnr_to_base``: PSNR of the image box-averaged back to the base size against the
    base (fidelity to the composition), and for scenes ``psnr_to_truth`` against the true render.
    Measured on the images as saved, clamped to [-1, 1]."""
    import torch.nn.functional as F

    from .demo import metrics

    images = images.clamp(-1, 1)

    out = {"sharpness": metrics.edge_sharpness(images).mean().item(),
           "grain": metrics.grain(images).mean().item()}
    if images.shape != base.shape:
        shrunk = F.avg_pool2d(images.float(), images.shape[-1] // base.shape[-1])
        out["psnr_to_base"] = metrics.psnr(shrunk, base).mean().item()
    if truth is not None and images.shape == truth.shape:
        out["psnr_to_truth"] = metrics.psnr(images, truth).mean().item()
    return out


def load_source(args: argparse.Namespace, model: Any, device: Any):
    """``(base, truth, scene_labels, source)``: the input images or scene renders (``base`` is
    None for ``--generate``: it is sampled later), the true renders at the target size for
    ``--scene`` (else None), the scenes' class labels, and run.json's ``source`` record."""
    from . import pipeline

    if args.input is not None:
        base = pipeline.load_images(args.input, pipeline.size_multiple(model.config)).to(device)
        return base, None, None, {"kind": "input", "images": [str(p) for p in args.input]}
    if args.scene is not None:
        from .demo import shapes

        h, w = pipeline.native_size(model.config)
        if h != w:
            raise ValueError(f"--scene renders square scenes; this model's size is {w}x{h}")
        base, labels = shapes.render(range(args.count), h, seed=args.scene, device=device)
        truth, _ = shapes.render(range(args.count), h * args.scale, seed=args.scene, device=device)
        return base, truth, labels, {"kind": "scene", "dataset_seed": args.scene, "scenes": list(range(args.count))}
    return None, None, None, {"kind": "generate", "count": args.generate or 4}


class Inputs(NamedTuple):
    """Everything a run reads from disk or renders, checked before any sampling."""

    device: Any
    model: Any  # pipeline.LoadedModel
    base: Any  # (B, 3, H, W) in [-1, 1], or None for --generate
    truth: Any  # --scene: the true renders at the target size
    labels: Any  # LongTensor (B,) or None (unconditional)
    count: int
    source: Dict[str, Any]
    denoise_mask: Any
    mixing_mask: Any
    load_seconds: float


def prepare(args: argparse.Namespace) -> Inputs:
    """Load the model, the masks and the source images, and pick the class labels.
    Raises FileNotFoundError/ValueError with a message for the user."""
    import torch

    from . import pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    t = time.perf_counter()
    model = pipeline.load_model(args.model, args.checkpoint, device=device)
    load_seconds = time.perf_counter() - t
    denoise_mask = pipeline.load_mask(args.denoise_mask) if args.denoise_mask else None
    mixing_mask = pipeline.load_mask(args.mixing_mask) if args.mixing_mask else None
    base, truth, scene_labels, source = load_source(args, model, device)
    count = base.shape[0] if base is not None else source["count"]
    labels = class_labels(args, model, count, scene_labels)
    if labels is not None:
        labels = labels.to(device)
    return Inputs(device, model, base, truth, labels, count, source, denoise_mask, mixing_mask, load_seconds)


def run(args: argparse.Namespace, resolved: Dict[str, Any], inputs: Inputs, argv: Sequence[str]) -> Dict[str, Any]:
    """Run the pipeline for checked ``args`` and ``inputs``; write the outputs; return run.json's dict."""
    import torch
    from tqdm.auto import tqdm

    import itermix_kdiff

    from . import pipeline
    from .blending_schedules import sampler_weights
    from .wrap import SAMPLERS

    t_start = time.perf_counter()
    device, model, base, truth, labels = inputs.device, inputs.model, inputs.base, inputs.truth, inputs.labels
    count, source = inputs.count, inputs.source
    timings: Dict[str, float] = {"load_model": inputs.load_seconds}
    extra_args = pipeline.guidance_args(model, labels, args.cfg)
    stages_n = args.scale.bit_length() - 1
    seeds = pipeline.stage_seeds(args.seed, stages_n)
    sigmas = pipeline.karras_sigmas(model.config, args.steps).to(device)
    disable = True if args.quiet else None

    # one tick per pass: the base, then itermix, cleanup and hires-fix per stage
    bar = tqdm(total=1 + 3 * stages_n, desc="passes", disable=args.quiet, position=0)

    def progress(label: str) -> None:  # called as each pass starts: the one before is done
        bar.update(1)
        bar.set_postfix_str(label)

    t = time.perf_counter()
    if base is None:
        h, w = pipeline.native_size(model.config)
        bar.set_postfix_str(f"base {w}x{h}")
        base = pipeline.sample_base(model.denoiser, (count, 3, h, w), sigmas, extra_args,
                                    pipeline.generator(seeds["base"], device), disable, device)
    timings["base"] = time.perf_counter() - t
    result = pipeline.run_upscale(
        model, base, sampler=SAMPLERS[args.sampler], steps=args.steps, scale=args.scale, seed=args.seed,
        extra_args=extra_args, options=resolved["options"], sampler_kwargs=resolved["sampler_kwargs"],
        upscale_method=args.upscale, cleanup_denoise=args.cleanup_denoise, hires_denoise=args.hires_denoise,
        denoise_mask=inputs.denoise_mask, mixing_mask=inputs.mixing_mask, seed_keyword=resolved["seed_keyword"],
        demofusion=args.preset == "demofusion", disable=disable, progress=progress)
    bar.update(1)
    bar.close()

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    files: List[str] = []
    final = result["stages"][-1]
    final_size = final["size"]
    plain = pipeline.upscale(base, final_size, args.upscale)
    save_batch(out, f"base_{base.shape[-1]}", base, files)
    save_batch(out, f"plain_{args.upscale}_{final_size[1]}", plain, files)
    for k, st in enumerate(result["stages"], 1):
        for kind in ("upscaled", "itermix", "cleanup", "hires"):
            save_batch(out, f"stage{k}_{st['size'][1]}_{kind}", st[kind], files)
    if truth is not None:
        save_batch(out, f"truth_{final_size[1]}", truth, files)
    columns = [(f"base {base.shape[-1]}px", base), (f"plain {args.upscale}", plain),
               ("hires-fix img2img", final["hires"]), (f"itermix {args.sampler}", final["itermix"]),
               ("itermix + cleanup", final["cleanup"])]
    if truth is not None:
        columns.append(("ground truth", truth))
    zoom = max(1, 256 // max(final_size))
    pipeline.comparison_sheet(columns, size=final_size, zoom=zoom).save(out / "comparison.png")
    files.append("comparison.png")
    metrics = {label: batch_metrics(images, base, None if images is truth else truth) for label, images in columns}
    timings["total"] = time.perf_counter() - t_start + inputs.load_seconds

    opts = make_options(**resolved["options"])
    options = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}
    for name in NOT_FLAGS:
        options.pop(name, None)
    options["denoise_mask"] = str(args.denoise_mask) if args.denoise_mask else None
    options["mixing_masks"] = str(args.mixing_mask) if args.mixing_mask else None
    record = {
        "command": [PROG, *argv],
        "versions": {"itermix_kdiff": itermix_kdiff.__version__, "torch": torch.__version__,
                     "k_diffusion": _version("k-diffusion")},
        "model": {"config": str(model.config_path) if model.config_path else "checkpoint metadata",
                  "checkpoint": str(model.checkpoint), "checkpoint_sha256": pipeline.file_sha256(model.checkpoint),
                  "native_size": list(pipeline.native_size(model.config)),
                  "sigma_min": model.config["model"]["sigma_min"], "sigma_max": model.config["model"]["sigma_max"],
                  "classes": list(model.class_names)},
        "source": source,
        "labels": None if labels is None else [model.class_names[i] for i in labels.tolist()],
        "settings": {"scale": args.scale, "steps": args.steps, "sampler": args.sampler,
                     "sampler_args": resolved["sampler_kwargs"], "cfg": args.cfg, "seed": args.seed,
                     "upscale": args.upscale, "cleanup_denoise": args.cleanup_denoise,
                     "hires_denoise": args.hires_denoise, "preset": args.preset, "schedule": "karras",
                     "device": str(device), "threads": torch.get_num_threads(),
                     "sampler_seed": "the stage's itermix seed" if resolved["seed_keyword"] else None},
        "options": options,
        "seeds": seeds,
        "sigmas": [round(s, 6) for s in result["sigmas"].tolist()],
        "c1": [round(c, 6) for c in sampler_weights(model.denoiser, result["sigmas"].cpu(), opts).tolist()],
        "stages": [{"name": f"stage{k}", "size": list(st["size"]), "seconds": st["seconds"]}
                   for k, st in enumerate(result["stages"], 1)],
        "timings": timings,
        "metrics": metrics,
        "files": files + ["run.json"],
    }
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return record


def _version(dist: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``itermix-upscale``; errors in the inputs exit with argparse's status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    resolved = check_args(parser, args)
    try:
        inputs = prepare(args)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    record = run(args, resolved, inputs, argv)
    if not args.quiet:
        print(f"wrote {len(record['files'])} files to {args.out} in {record['timings']['total']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
