"""``itermix-upscale`` / ``python -m itermix_kdiff``: upscale images 2x or 4x with iterative mixing.

    itermix-upscale --out outputs/run --generate 4 --scale 4 --steps 25

    itermix-upscale --out outputs/castle --checkpoint v1-5-pruned-emaonly.safetensors --prompt "a castle"

With no ``--config``/``--checkpoint`` it uses the shipped demo model (a class-conditional RGB
model of simple shapes at 32x32, no VAE). A Stable Diffusion ``--checkpoint`` (SD 1.x, 2.x,
SDXL: a single-file .safetensors or a diffusers folder) runs the same chain on its VAE
latents, conditioned on ``--prompt``: generations start at the model's native size (or
``--width``/``--height``), ``--input`` images are VAE-encoded, each stage upscales the latent,
and every output is decoded. The source is one of ``--generate N`` (a first
pass at the model's size; the classes cycle through the model's, or ``--class``),
``--input IMAGE ...`` (unconditional unless ``--class``) or ``--scene SEED`` (true renders of
the demo's procedural dataset, with the ground truth at the target size). Each 2x stage
upscales (bicubic or bislerp), runs the itermix sampler over the full schedule and cleans
up with a low-denoise img2img pass; a hires-fix img2img chain is run alongside for
comparison. The output folder gets every stage's images, ``comparison.png`` and
``run.json`` (every setting, seed and timing; written before the weights load and after
every stage, so an interrupted run says where it stopped).

Every field of :class:`itermix_kdiff.options.ItermixOptions` is a flag (``--alpha-1``,
``--blending-schedule`` ...; masks are image files), applied on top of ``--preset``.
Everything that can be checked without the model weights is checked before they load.
This module imports only the core at import time, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
import typing
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from .blending import BLENDING_FUNCTIONS
from .blending_schedules import BLENDING_SCHEDULES
from .noised import NOISE_KINDS
from .options import MIX_MODES, OPTION_NAMES, PRESETS, ItermixOptions, apply_preset, make_options
from .pipeline import MAX_SEED, UPSCALE_METHODS
from .sigmas import RANGE_SCHEDULERS, SCHEDULERS, TABLE_SCHEDULERS

PROG = "itermix-upscale"

#: The largest --cfg-scale (ComfyUI's limit).
MAX_CFG_SCALE = 100.0

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
    "blending_schedule": tuple(BLENDING_SCHEDULES),
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
    "schedule_steps": "compute c1 over this many steps (B4; default: the run's --steps, or the preset's)",
    "schedule_offset": "use c1[offset : offset + steps] (B4)",
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

#: The flags that only a Stable Diffusion checkpoint takes.
SD_FLAGS = ("prompt", "negative_prompt", "width", "height", "prediction_type", "dtype", "vae_tile")

#: The files a run writes (and ``--overwrite`` removes): run.json, the sheet and the stage images.
OUR_FILES = re.compile(r"^(run\.json|comparison\.png|(base|plain|stage\d+|truth)_[\w.-]*\.png)$")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and every flag's real default after its help (a flag whose
    default is None says in its own words what happens without it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


# ---------------------------------------------------------------- flag types

def number_type(kind: type, low: Optional[float] = None, high: Optional[float] = None) -> Callable[[str], Any]:
    """An argparse ``type=``: ``kind`` (int or float) parsed from the text, finite, in ``[low, high]``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{'an integer' if kind is int else 'a number'} is needed, "
                                             f"got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"a finite number is needed, got {text!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = number_type(int, low=1)
fraction = number_type(float, low=0.0, high=1.0)


class DeprecatedAlias(argparse.Action):
    """Store the value; warn when the flag was given by its deprecated spelling."""

    def __init__(self, option_strings: Sequence[str], dest: str, deprecated: str = "", **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.deprecated = deprecated

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == self.deprecated:
            # attributed to the command, not to the line of argparse that called this action
            warnings.warn_explicit(f"{self.deprecated} is deprecated; use {self.option_strings[0]}", FutureWarning,
                                   filename=parser.prog, lineno=0)
        setattr(namespace, self.dest, values)


# ---------------------------------------------------------------- the parser

def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_fields() -> List[dataclasses.Field]:
    """The ItermixOptions fields that are CLI flags (all but :data:`NOT_FLAGS`)."""
    return [f for f in dataclasses.fields(ItermixOptions) if f.name not in NOT_FLAGS]


def add_option_flags(group: argparse._ArgumentGroup) -> None:
    """One flag per :func:`option_fields` field, typed from its annotation. A flag not given
    is absent from the parsed namespace, so the preset's value (or else the field's default,
    shown in the help) applies."""
    hints = typing.get_type_hints(ItermixOptions)
    for f in option_fields():
        kind = hints[f.name]
        if typing.get_origin(kind) is typing.Union:  # Optional[X]
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        help_text = OPTION_HELP.get(f.name, "see ItermixOptions")
        if f.default is not None:  # a None default is said in OPTION_HELP's words
            help_text += f" (default: {f.default}, or the preset's)"
        kwargs: Dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
        if kind is bool:
            group.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
        elif f.name in OPTION_CHOICES:
            group.add_argument(flag(f.name), choices=OPTION_CHOICES[f.name], **kwargs)
        else:
            parse = number_type(kind) if kind in (int, float) and f.name not in ("s_tmin", "s_tmax") else kind
            group.add_argument(flag(f.name), type=parse, metavar=kind.__name__.upper(), **kwargs)


def sampler_names() -> List[str]:
    from .wrap import SAMPLERS

    return list(SAMPLERS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0] + " See README.md for the pipeline.",
                                formatter_class=HelpFormatter)
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (created; one holding another run's files needs --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier run in --out (other files are left alone)")
    m = p.add_argument_group("model (default: the shipped demo model)")
    m.add_argument("--config", "--model", dest="config", type=Path, default=None, action=DeprecatedAlias,
                   deprecated="--model", help="k-diffusion model config JSON (configs/*.json schema; "
                                              "--model is its deprecated name); for an SD checkpoint of "
                                              "another size, its diffusers config folder")
    m.add_argument("--checkpoint", type=Path, default=None,
                   help="safetensors weights of a k-diffusion model, or a Stable Diffusion checkpoint (SD 1.x, "
                        "2.x, SDXL: single-file .safetensors or diffusers folder); pickles are refused")
    m.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    m.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    s = p.add_argument_group("source (one of; default: --generate 4)")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--generate", type=positive_int, metavar="N", default=None,
                     help="generate N images at the model's size (4 when no source is given)")
    src.add_argument("--input", type=Path, nargs="+", metavar="IMAGE", default=None,
                     help="start from these images (RGB/L/P, opaque RGBA; one size, sides a multiple of what the "
                          "model's U-Net needs: patch_size * 2**(levels - 1))")
    src.add_argument("--scene", type=number_type(int, low=0), metavar="SEED", default=None,
                     help="start from true renders of the demo's shapes dataset SEED (scenes 0..count-1), "
                          "with ground truth at the target size")
    s.add_argument("--count", type=positive_int, default=4, help="how many scenes --scene renders")
    s.add_argument("--class", dest="class_label", default=None,
                   help="class name or index for every image; 'none' = unconditional. Default: "
                        "--generate cycles through the classes, --scene uses the true ones, --input is unconditional")
    r = p.add_argument_group("run")
    r.add_argument("--scale", type=int, choices=(2, 4), default=2, help="2: one 2x stage; 4: two")
    r.add_argument("--steps", type=positive_int, default=30, help="steps of the full schedule")
    r.add_argument("--scheduler", default="karras", choices=tuple(SCHEDULERS),
                   help="sigma schedule over the model's sigma range (itermix_kdiff.sigmas.get_sigmas)")
    r.add_argument("--sampler", default="euler", choices=sampler_names(),
                   help="itermix sampler (itermix_kdiff.SAMPLERS)")
    r.add_argument("--sampler-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="a keyword of the sampler itself, e.g. perlin_mode=latents or eta=0.5 (repeatable)")
    # bounded as ComfyUI bounds it: far larger scales overflow the guided output to inf
    r.add_argument("--cfg-scale", "--cfg", dest="cfg_scale", type=number_type(float, low=0.0, high=MAX_CFG_SCALE),
                   default=None, help="classifier-free guidance scale (default: 3 for class-conditional models, "
                                      "7.5 for SD)")
    r.add_argument("--seed", type=number_type(int, low=0, high=MAX_SEED), default=0,
                   help="seeds every random draw (run.json 'seeds')")
    r.add_argument("--upscale", choices=UPSCALE_METHODS, default="bicubic",
                   help="2x upscale method: bicubic, or bislerp as ComfyUI's latent upscale")
    r.add_argument("--cleanup-denoise", type=fraction, default=0.15,
                   help="denoise of the cleanup img2img pass (0: none)")
    r.add_argument("--hires-denoise", type=fraction, default=0.5,
                   help="denoise of the hires-fix img2img baseline")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    d = p.add_argument_group("Stable Diffusion (with an SD --checkpoint)")
    d.add_argument("--prompt", default=None, help="what the picture shows (needed with an SD checkpoint)")
    d.add_argument("--negative-prompt", default=None, help="what it should not show (default: the empty prompt)")
    d.add_argument("--width", type=positive_int, default=None,
                   help="--generate: width in pixels, a multiple of 8 (default: the model's native size)")
    d.add_argument("--height", type=positive_int, default=None,
                   help="--generate: height in pixels, a multiple of 8 (default: the model's native size)")
    d.add_argument("--prediction-type", choices=("epsilon", "v_prediction"), default=None,
                   help="what the UNet predicts (default: the config's; an SD 2.x file: guessed from its weights)")
    d.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None,
                   help="weights' dtype (default: the checkpoint's)")
    d.add_argument("--vae-tile", type=positive_int, metavar="PIXELS", default=None,
                   help="decode in tiles of this many pixels (bounds the VAE's memory; default: whole images)")
    o = p.add_argument_group("mixing options (on top of --preset; docs/algorithm.md sections in brackets)")
    o.add_argument("--preset", choices=tuple(PRESETS), default="reference",
                   help="reference: the ComfyUI pack's defaults; demofusion: DemoFusion's own skip "
                        "residual with its tiled local + dilated global denoiser")
    o.add_argument("--denoise-mask", type=Path, default=None, metavar="IMAGE",
                   help="white = repaint, black = keep the upscaled image (resized to each stage)")
    o.add_argument("--mixing-mask", type=Path, default=None, metavar="IMAGE",
                   help="white = the noised image may be mixed in there (B3; resized to each stage)")
    add_option_flags(o)
    return p


# ---------------------------------------------------------------- checks before any weights load

def as_flags(message: str) -> str:
    """An option error with the option names written as the flags (``alpha_1`` -> ``--alpha-1``)."""
    names = "|".join(sorted(OPTION_NAMES, key=len, reverse=True))
    message = re.sub(rf"\b({names})\b", lambda m: flag(m.group(1)), message)
    return re.sub(r"(?<![\w-])steps=", "--steps ", message)  # the run's step count, not --schedule-steps


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


def resolve_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The preset's options, overridden by every option flag given (a flag not given is
    absent from ``args``)."""
    given = {f.name: getattr(args, f.name) for f in option_fields() if hasattr(args, f.name)}
    return apply_preset(args.preset, given, chosen=given)


def check_device(text: Optional[str]) -> str:
    """The device to run on: ``text`` when torch knows it and it is present here, else ValueError."""
    import torch

    if text is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {text!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    available = {"cpu": lambda: True,
                 "cuda": lambda: torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
                 "mps": lambda: torch.backends.mps.is_available()}
    if not available.get(device.type, lambda: False)():
        raise ValueError(f"--device {text}: no such device here (cuda available: {torch.cuda.is_available()})")
    return text


class Resolved(NamedTuple):
    """What the flags resolve to, checked before any weights load."""

    options: Dict[str, Any]  # the option keywords of the run: the preset's and every flag given
    opts: ItermixOptions  # the same, checked (masks and generators come per stage)
    sampler_kwargs: Dict[str, Any]
    seed_keyword: bool  # the sampler takes ``seed`` (its own noise), set from the stage's seed
    device: str
    sd: bool  # --checkpoint is a Stable Diffusion checkpoint


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Resolved:
    """Check everything that needs no model weights; a problem is an argparse error (status 2)."""
    import inspect

    from .blending_schedules import check_some_step_kept, mixing_weights
    from .wrap import SAMPLERS, check_sampler_keywords

    if args.config is not None and args.checkpoint is None:
        parser.error("--config needs --checkpoint (give both, only --checkpoint, or neither for the shipped model)")
    sd = check_sd_args(parser, args)
    if not sd and args.scheduler in TABLE_SCHEDULERS:
        parser.error(f"--scheduler {args.scheduler} needs a model with a discrete noise table (a Stable Diffusion "
                     f"--checkpoint); this model is continuous: use one of {', '.join(RANGE_SCHEDULERS)}")
    options = resolve_options(args)
    try:
        opts = make_options(**options)
        check_some_step_kept(mixing_weights(args.steps, opts), opts, args.mixing_mask is not None)
    except (ValueError, TypeError) as e:
        parser.error(as_flags(str(e)))
    sampler_kwargs = {}
    for item in args.sampler_arg:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            parser.error(f"--sampler-arg {item!r}: write NAME=VALUE")
        sampler_kwargs[name.strip()] = parse_value(value)
    parameters = inspect.signature(SAMPLERS[args.sampler]).parameters
    for name in options:
        if name not in parameters:
            parser.error(f"{flag(name)} is not an option of sampler {args.sampler}")
    own = [name for name, p in parameters.items() if name not in OPTION_NAMES and p.kind is p.KEYWORD_ONLY]
    for name in sampler_kwargs:
        if name not in own:
            parser.error(f"--sampler-arg {name}: sampler {args.sampler} takes "
                         f"{', '.join(own) if own else 'no keywords of its own'} (as NAME=VALUE)")
    try:
        check_sampler_keywords(args.sampler, {**options, **sampler_kwargs})
    except (ValueError, TypeError) as e:
        parser.error(f"--sampler-arg: {e}")
    try:
        device = check_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    return Resolved(options, opts, sampler_kwargs, "seed" in own, device, sd)


def check_sd_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Whether ``--checkpoint`` is a Stable Diffusion checkpoint (read from its header), and the
    flags that go with each kind of model; sets ``args.cfg_scale`` when it was not given."""
    from .models import check_safetensors
    from .pipeline import is_sd_checkpoint

    if args.checkpoint is not None and not args.checkpoint.is_dir():
        try:  # a missing file or a pickle says so, not that it is no SD checkpoint
            check_safetensors(args.checkpoint)
        except (OSError, ValueError) as e:
            parser.error(f"--checkpoint: {e}")
    sd = args.checkpoint is not None and is_sd_checkpoint(args.checkpoint)
    if args.cfg_scale is None:
        args.cfg_scale = 7.5 if sd else 3.0
    given = [flag(name) for name in SD_FLAGS if getattr(args, name) is not None]
    if not sd:
        if given:
            parser.error(f"{', '.join(given)}: only for a Stable Diffusion --checkpoint (a single-file SD 1.x/2.x/"
                         f"SDXL .safetensors or a diffusers folder); the demo model takes --class")
        return False
    if args.prompt is None:
        parser.error("a Stable Diffusion checkpoint needs --prompt (--prompt '' for none)")
    if args.scene is not None:
        parser.error("--scene renders the demo model's shapes; with a Stable Diffusion checkpoint give "
                     "--generate N or --input IMAGE")
    if args.class_label is not None:
        parser.error("--class is for class-conditional models; a Stable Diffusion checkpoint takes --prompt")
    if args.config is not None and not args.config.is_dir():
        parser.error(f"--config {args.config}: with a Stable Diffusion checkpoint, a diffusers config folder "
                     f"(model_index.json, unet/, vae/, ...)")
    if args.input is not None and (args.width or args.height):
        parser.error("--width/--height set the size of --generate; an --input image keeps its own size")
    for name in ("width", "height", "vae_tile"):
        value = getattr(args, name)
        if value is not None and value % 8:
            parser.error(f"{flag(name)} must be a multiple of 8 pixels (the VAE's scale), got {value}")
    return True


def prepare_out(out: Path, overwrite: bool) -> bool:
    """Create and check the output folder before any work; returns whether it was created.
    A folder holding another run's files is refused unless ``overwrite`` (then only those
    files are removed). Raises ValueError with a message for the user."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".itermix-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {out} cannot be written: {e.strerror or e}") from None
    ours = sorted(p for p in out.iterdir() if OUR_FILES.match(p.name) or p.name.startswith(".itermix-tmp-"))
    if ours and not overwrite:
        raise ValueError(f"--out {out} holds another run's files ({', '.join(p.name for p in ours[:3])}"
                         f"{', ...' if len(ours) > 3 else ''}); give --overwrite to replace them, or another folder")
    for p in ours:
        p.unlink()
    return created


# ---------------------------------------------------------------- inputs

def class_labels(args: argparse.Namespace, num_classes: int, class_names: Sequence[str], count: int,
                 scene_labels: Optional[Any]):
    """The class label of each image (a LongTensor), or None for unconditional sampling."""
    import torch

    if not num_classes:
        if args.class_label not in (None, "none"):
            raise ValueError(f"--class {args.class_label}: this model is not class-conditional")
        return None
    if args.class_label is None:
        if scene_labels is not None:
            return scene_labels
        if args.input is not None:
            return None
        return torch.arange(count) % num_classes
    if args.class_label.lower() == "none":
        return None
    if args.class_label in class_names:
        index = list(class_names).index(args.class_label)
    elif args.class_label.isdigit() and int(args.class_label) < num_classes:
        index = int(args.class_label)
    else:
        raise ValueError(f"--class must be one of {', '.join(class_names)}, an index below "
                         f"{num_classes}, or none; got {args.class_label!r}")
    return torch.full((count,), index, dtype=torch.long)


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


def prepare(args: argparse.Namespace, device: str, sd: bool = False) -> Inputs:
    """Read the model config, the masks and the source images (all checked), then load the
    weights (``sd``: a Stable Diffusion checkpoint, :func:`prepare_sd`). Raises
    FileNotFoundError/ValueError with a message for the user."""
    import torch

    from . import pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(device)
    denoise_mask = pipeline.load_mask(args.denoise_mask, "--denoise-mask") if args.denoise_mask else None
    mixing_mask = pipeline.load_mask(args.mixing_mask, "--mixing-mask") if args.mixing_mask else None
    if sd:
        return prepare_sd(args, device, denoise_mask, mixing_mask)
    try:
        config, config_path, checkpoint = pipeline.read_model_config(args.config, args.checkpoint)
    except ValueError as e:
        if args.checkpoint is None:
            raise
        # check_sd_args checked the checkpoint file: what is left is the config, given or in its metadata
        raise ValueError(f"{'--config' if args.config is not None else '--checkpoint'}: {e}") from None
    num_classes, class_names = pipeline.model_classes(config)
    truth = scene_labels = None
    if args.input is not None:
        base = pipeline.load_images(args.input, pipeline.size_multiple(config)).to(device)
        source = {"kind": "input", "images": [str(p) for p in args.input]}
    elif args.scene is not None:
        from .demo import shapes

        h, w = pipeline.native_size(config)
        if h != w:
            raise ValueError(f"--scene renders square scenes; this model's size is {w}x{h}")
        base, scene_labels = shapes.render(range(args.count), h, seed=args.scene, device=device)
        truth, _ = shapes.render(range(args.count), h * args.scale, seed=args.scene, device=device)
        source = {"kind": "scene", "dataset_seed": args.scene, "scenes": list(range(args.count))}
    else:
        base = None
        source = {"kind": "generate", "count": args.generate or 4}
    count = base.shape[0] if base is not None else source["count"]
    labels = class_labels(args, num_classes, class_names, count, scene_labels)
    t = time.perf_counter()
    model = pipeline.load_model(config, checkpoint, device=device, config_path=config_path)
    load_seconds = time.perf_counter() - t
    if labels is not None:
        labels = labels.to(device)
    return Inputs(device, model, base, truth, labels, count, source, denoise_mask, mixing_mask, load_seconds)


def schedule_sigmas(args: argparse.Namespace, inputs: Inputs) -> Any:
    """The run's sigmas on its device; a schedule this model cannot give for --steps (too many
    steps for a table schedule) is a ValueError naming the flags."""
    from . import pipeline

    try:
        return pipeline.schedule_sigmas(inputs.model, args.scheduler, args.steps).to(inputs.device)
    except ValueError as e:
        raise ValueError(f"--scheduler {args.scheduler}: {as_flags(str(e))}") from None


def prepare_sd(args: argparse.Namespace, device: Any, denoise_mask: Any, mixing_mask: Any) -> Inputs:
    """:func:`prepare` for a Stable Diffusion checkpoint: the input images (sides a multiple of
    the VAE's 8 pixels) are read before the weights load."""
    from . import pipeline

    base = None
    source: Dict[str, Any] = {"kind": "generate", "count": args.generate or 4}
    if args.input is not None:
        base = pipeline.load_images(args.input, 8).to(device)
        source = {"kind": "input", "images": [str(p) for p in args.input]}
    t = time.perf_counter()
    model = pipeline.load_sd_model(args.checkpoint, args.config, prediction_type=args.prediction_type,
                                   dtype=args.dtype, device=device)
    load_seconds = time.perf_counter() - t
    if args.width or args.height:
        model.sd.latent_shape(args.width, args.height)  # the model's own check of the size
    count = base.shape[0] if base is not None else source["count"]
    return Inputs(device, model, base, None, None, count, source, denoise_mask, mixing_mask, load_seconds)


# ---------------------------------------------------------------- writing

def write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it to ``path``: an
    interrupted run never leaves a half-written file under a real name."""
    tmp = path.with_name(f".itermix-tmp-{os.getpid()}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_batch(out: Path, stem: str, images: Any, files: List[str]) -> None:
    """Save each image of a batch as ``<stem>_<i>.png`` and record the names."""
    from .pipeline import tensor_to_image

    for i, image in enumerate(images):
        name = f"{stem}_{i:02d}.png"
        write_atomic(out / name, lambda p, image=image: tensor_to_image(image).save(p, format="PNG"))
        files.append(name)


def write_record(out: Path, record: Dict[str, Any]) -> None:
    write_atomic(out / "run.json", lambda p: p.write_text(json.dumps(record, indent=2, default=str) + "\n"))


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


def _version(dist: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def model_record(model: Any) -> Dict[str, Any]:
    """run.json's ``model``: the files (with the checkpoint's SHA-256), the native size and the
    sigma range; the classes of a k-diffusion model, the family, prediction type and dtype of an
    SD model."""
    from . import pipeline

    checkpoint = model.checkpoint
    digest = pipeline.file_sha256(checkpoint) if checkpoint.is_file() else None  # a diffusers folder: none
    if model.sd is not None:
        m = model.sd
        return {"kind": "stable diffusion", "family": m.family, "prediction_type": m.prediction_type,
                "config": str(model.config_path) if model.config_path else "shipped",
                "checkpoint": str(checkpoint), "checkpoint_sha256": digest, "dtype": str(m.dtype).split(".")[-1],
                "native_size": [m.native_size[1], m.native_size[0]],
                "sigma_min": float(m.denoiser.sigma_min), "sigma_max": float(m.denoiser.sigma_max)}
    return {"kind": "k-diffusion", "config": str(model.config_path) if model.config_path else "checkpoint metadata",
            "checkpoint": str(checkpoint), "checkpoint_sha256": digest,
            "native_size": list(pipeline.native_size(model.config)),
            "sigma_min": model.config["model"]["sigma_min"], "sigma_max": model.config["model"]["sigma_max"],
            "classes": list(model.class_names)}


def start_record(args: argparse.Namespace, resolved: Resolved, argv: Sequence[str]) -> Dict[str, Any]:
    """run.json before the weights load (``status: running``, ``stopped_at: load_model``): the
    command, versions, every setting and resolved option and the seeds; :func:`loaded_record`
    adds the model, the source, the sigmas and ``c1``."""
    import torch

    import itermix_kdiff

    from . import pipeline

    opts = resolved.opts
    options = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.name not in NOT_FLAGS}
    options["denoise_mask"] = str(args.denoise_mask) if args.denoise_mask else None
    options["mixing_masks"] = str(args.mixing_mask) if args.mixing_mask else None
    settings = {"scale": args.scale, "steps": args.steps, "scheduler": args.scheduler, "sampler": args.sampler,
                "sampler_args": resolved.sampler_kwargs, "cfg_scale": args.cfg_scale, "seed": args.seed,
                "upscale": args.upscale, "cleanup_denoise": args.cleanup_denoise,
                "hires_denoise": args.hires_denoise, "preset": args.preset,
                "device": str(torch.device(resolved.device)), "threads": args.threads or torch.get_num_threads(),
                "sampler_seed": "the stage's itermix seed" if resolved.seed_keyword else None}
    if resolved.sd:
        settings.update(prompt=args.prompt, negative_prompt=args.negative_prompt or "", width=args.width,
                        height=args.height, vae_tile=args.vae_tile)
    return {
        "status": "running",
        "stopped_at": "load_model",
        "command": [PROG, *argv],
        "versions": {"itermix_kdiff": itermix_kdiff.__version__, "torch": torch.__version__,
                     "k_diffusion": _version("k-diffusion"),
                     "diffusers": _version("diffusers") if resolved.sd else None},
        "model": {"config": str(args.config) if args.config else None,
                  "checkpoint": str(args.checkpoint) if args.checkpoint else "the shipped demo model"},
        "source": None,
        "labels": None,
        "settings": settings,
        "options": options,
        "seeds": pipeline.stage_seeds(args.seed, args.scale.bit_length() - 1),
        "sigmas": None,
        "c1": None,
        "stages": [],
        "timings": {},
        "metrics": {},
        "files": ["run.json"],
    }


def loaded_record(record: Dict[str, Any], resolved: Resolved, inputs: Inputs, sigmas: Any) -> None:
    """Add what is known once the weights are loaded to :func:`start_record`'s ``record``: the
    model, the source and its labels, the sigmas and ``c1``."""
    from .blending_schedules import sampler_weights

    model = inputs.model
    record.update(stopped_at=None, model=model_record(model), source=inputs.source,
                  labels=None if inputs.labels is None else [model.class_names[i] for i in inputs.labels.tolist()],
                  sigmas=[round(s, 6) for s in sigmas.tolist()],
                  c1=[round(c, 6) for c in sampler_weights(model.denoiser, sigmas.cpu(), resolved.opts).tolist()])
    record["timings"]["load_model"] = inputs.load_seconds


# ---------------------------------------------------------------- the run

def stage_conditioning(args: argparse.Namespace, model: Any) -> Optional[Callable[[Any], Dict[str, Any]]]:
    """For an SD model: ``extra_args`` of a latent of size ``(h, w)``: ``--prompt`` encoded once
    per picture size (SDXL conditions on it; SD 1.x/2.x get the same tensors every time).
    None for a k-diffusion model (:func:`pipeline.guidance_args` in every stage)."""
    if model.sd is None:
        return None
    m, cache = model.sd, {}

    def conditioning(size: Any) -> Dict[str, Any]:
        h, w = int(size[0]) * m.vae_scale, int(size[1]) * m.vae_scale
        if (h, w) not in cache:
            cache[(h, w)] = m.conditioning(args.prompt, args.negative_prompt or "", args.cfg_scale, width=w, height=h)
        return cache[(h, w)]

    return conditioning


def to_pixels(args: argparse.Namespace, model: Any, x: Any) -> Any:
    """Images in [-1, 1] of the pipeline's tensors: themselves for a pixel-space model, the VAE
    decoding (in ``--vae-tile`` tiles) of an SD model's latents."""
    if model.sd is None:
        return x
    return model.sd.decode(x, tile_size=args.vae_tile)


def generate_source(args: argparse.Namespace, inputs: Inputs, sigmas: Any, extra_args: Dict[str, Any],
                    seed: int, disable: Optional[bool]) -> Any:
    """The base in the pipeline's space: the given or rendered images (an SD model: their VAE
    latents, the posterior's mode), or a generation at the model's size."""
    from . import pipeline

    m = inputs.model.sd
    if inputs.base is not None:
        return inputs.base if m is None else m.encode(inputs.base)
    if m is None:
        h, w = pipeline.native_size(inputs.model.config)
        shape = (inputs.count, 3, h, w)
    else:
        shape = m.latent_shape(args.width, args.height, inputs.count)
    return pipeline.sample_base(inputs.model.denoiser, shape, sigmas, extra_args,
                                pipeline.generator(seed, inputs.device), disable, inputs.device)


def write_outputs(args: argparse.Namespace, inputs: Inputs, base: Any, stages: List[Dict[str, Any]],
                  record: Dict[str, Any]) -> None:
    """After the last stage: the plain upscale, the ground truth, ``comparison.png`` and the
    per-column metrics, into ``record``. ``base`` and ``stages`` are images (decoded)."""
    from . import pipeline

    out, files, truth = args.out, record["files"], inputs.truth
    final = stages[-1]
    final_size = final["size"]
    plain = pipeline.upscale(base, final_size, args.upscale)
    save_batch(out, f"plain_{args.upscale}_{final_size[1]}", plain, files)
    if truth is not None:
        save_batch(out, f"truth_{final_size[1]}", truth, files)
    columns = [(f"base {base.shape[-1]}px", base), (f"plain {args.upscale}", plain),
               ("hires-fix img2img", final["hires"]), (f"itermix {args.sampler}", final["itermix"]),
               ("itermix + cleanup", final["cleanup"])]
    if truth is not None:
        columns.append(("ground truth", truth))
    zoom = max(1, 256 // max(final_size))
    sheet = pipeline.comparison_sheet(columns, size=final_size, zoom=zoom)
    write_atomic(out / "comparison.png", lambda p: sheet.save(p, format="PNG"))
    files.append("comparison.png")
    record["metrics"] = {label: batch_metrics(images, base, None if images is truth else truth)
                         for label, images in columns}


def base_conditioning(args: argparse.Namespace, inputs: Inputs,
                      conditioning: Optional[Callable[[Any], Dict[str, Any]]]) -> Dict[str, Any]:
    """The base pass's ``extra_args``: the class guidance of a k-diffusion model, or the prompt
    at the base's size (the input's, or ``--width``/``--height``) for an SD model."""
    from . import pipeline

    model = inputs.model
    if conditioning is None:
        return pipeline.guidance_args(model, inputs.labels, args.cfg_scale)
    if inputs.base is not None:
        return conditioning([side // model.sd.vae_scale for side in inputs.base.shape[-2:]])
    return conditioning(model.sd.latent_shape(args.width, args.height)[-2:])


def save_stage(args: argparse.Namespace, model: Any, k: int, stage: Dict[str, Any],
               record: Dict[str, Any]) -> Dict[str, Any]:
    """Save stage ``k``'s four batches as images and record the stage in run.json; returns the
    stage as images (``size`` and one batch per kind)."""
    images = {kind: to_pixels(args, model, stage[kind]) for kind in ("upscaled", "itermix", "cleanup", "hires")}
    size = tuple(images["cleanup"].shape[-2:])
    for kind, batch in images.items():
        save_batch(args.out, f"stage{k}_{size[1]}_{kind}", batch, record["files"])
    entry = {"name": f"stage{k}", "size": list(size), "seconds": stage["seconds"]}
    if model.sd is not None:
        entry["latent_size"] = list(stage["size"])
    record["stages"].append(entry)
    write_record(args.out, record)
    return {"size": size, **images}


def record_stop(out: Path, record: Dict[str, Any], error: BaseException) -> None:
    """Record in run.json that the run stopped on ``error``: ``interrupted`` for Ctrl-C, else ``failed``."""
    record["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    record["error"] = f"{type(error).__name__}: {error}"
    write_record(out, record)


def run(args: argparse.Namespace, resolved: Resolved, inputs: Inputs, sigmas: Any,
        record: Dict[str, Any]) -> Dict[str, Any]:
    """Run the pipeline for checked ``args`` and ``inputs`` over ``sigmas``, writing run.json
    (``record``, from :func:`loaded_record`) as it starts and after every stage; returns it.
    An exception (or Ctrl-C) records the status ``interrupted`` or ``failed`` and where it
    stopped, then propagates."""
    from tqdm.auto import tqdm

    from . import pipeline
    from .wrap import SAMPLERS

    t_start = time.perf_counter()
    model, out = inputs.model, args.out
    stages_n = args.scale.bit_length() - 1
    seeds = record["seeds"]
    conditioning = stage_conditioning(args, model)
    disable = True if args.quiet else None
    write_record(out, record)
    # one tick per pass: the base, then itermix, cleanup and hires-fix per stage
    bar = tqdm(total=1 + 3 * stages_n, desc="passes", disable=args.quiet, position=0)
    decoded: List[Dict[str, Any]] = []  # the stages as images

    def progress(label: str) -> None:  # called as each pass starts: the one before is done
        bar.update(1)
        bar.set_postfix_str(label)
        record["stopped_at"] = label

    def stage_done(k: int, stage: Dict[str, Any]) -> None:
        decoded.append(save_stage(args, model, k, stage, record))

    try:
        record["stopped_at"] = "base"
        t = time.perf_counter()
        base_extra = base_conditioning(args, inputs, conditioning)
        base = generate_source(args, inputs, sigmas, base_extra, seeds["base"], disable)
        base_pixels = inputs.base if inputs.base is not None else to_pixels(args, model, base)
        record["timings"]["base"] = time.perf_counter() - t
        save_batch(out, f"base_{base_pixels.shape[-1]}", base_pixels, record["files"])
        write_record(out, record)
        pipeline.run_upscale(
            model, base, sampler=SAMPLERS[args.sampler], steps=args.steps, scale=args.scale, seed=args.seed,
            extra_args=base_extra, options=resolved.options, sampler_kwargs=resolved.sampler_kwargs,
            scheduler=args.scheduler, upscale_method=args.upscale, cleanup_denoise=args.cleanup_denoise,
            hires_denoise=args.hires_denoise, denoise_mask=inputs.denoise_mask, mixing_mask=inputs.mixing_mask,
            seed_keyword=resolved.seed_keyword, demofusion=args.preset == "demofusion", disable=disable,
            progress=progress, on_stage=stage_done, conditioning=conditioning)
        record["stopped_at"] = "outputs"
        write_outputs(args, inputs, base_pixels, decoded, record)
    except BaseException as e:
        bar.close()
        record_stop(out, record, e)
        raise
    bar.update(1)
    bar.close()
    record["status"], record["stopped_at"] = "done", None
    record["timings"]["total"] = time.perf_counter() - t_start + inputs.load_seconds
    write_record(out, record)
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``itermix-upscale``; errors in the inputs exit with argparse's status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    resolved = check_args(parser, args)
    try:
        created = prepare_out(args.out, args.overwrite)
    except ValueError as e:
        parser.error(str(e))
    record = start_record(args, resolved, argv)
    write_record(args.out, record)  # an interrupted load leaves a record of what was asked
    try:
        inputs = prepare(args, resolved.device, resolved.sd)
        sigmas = schedule_sigmas(args, inputs)
    except (FileNotFoundError, ValueError) as e:
        (args.out / "run.json").unlink()
        if created and not any(args.out.iterdir()):
            args.out.rmdir()
        parser.error(str(e))
    except BaseException as e:
        record_stop(args.out, record, e)
        raise
    loaded_record(record, resolved, inputs, sigmas)
    record = run(args, resolved, inputs, sigmas, record)
    if not args.quiet:
        print(f"wrote {len(record['files'])} files to {args.out} in {record['timings']['total']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
