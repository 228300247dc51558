"""Time one guided step of a random-weight, real-size SD 1.5 UNet with and without iterative mixing.

    python scripts/time_sd_unet.py                      # CUDA, fp16, 128x128 latents (a 1024 px picture)
    python scripts/time_sd_unet.py --out sd15_step.json --repeats 9

No weights are needed: the UNet is built from the package's shipped SD 1.5 config
(``itermix_kdiff/sd/configs/sd15``, 859.52 M parameters) with random weights (seeded), cast to
``--dtype``, and wrapped as the package wraps a loaded checkpoint (``DiscreteEpsDDPMDenoiser``
around the guided UNet: one UNet call on a batch of 2, negative and positive rows, per step).
The prompt embeddings are random too (77 tokens, the config's context width). Then
``k_diffusion.sampling.sample_euler`` (from ``x0 + noise * sigma_0``, noise drawn in the call)
and ``sample_itermix_euler`` (``x0`` given; its n + 1 noised latents drawn in the call) run
``--steps`` Karras steps over the model's sigma range on the same ``x0``, timed in alternation
(:func:`benchmarks.bench_speed.time_case`: warm-up excluded, the device synchronised, medians of
the interleaved repeats). Reported: seconds per schedule step and per model call of each, the
ratio and its quartiles, the model calls (the itermix Euler skips the call of the step whose
``c1`` is 0), and on CUDA the peak memory.

Without CUDA it refuses, unless ``--device cpu`` with a tiny ``--latent`` (at most 16) for a
smoke run of the script itself (``--config`` a small diffusers config folder keeps that cheap:
the real UNet takes 3.4 GB in float32).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: The largest latent side a CPU smoke run takes.
CPU_MAX_LATENT = 16


def build_denoiser(config: Path, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """The random-weight UNet of the diffusers config folder ``config`` (its ``unet/`` and
    ``scheduler/``) on ``device`` in ``dtype``, as the package's k-diffusion denoiser."""
    from diffusers import UNet2DConditionModel

    from itermix_kdiff.sd.denoiser import make_denoiser

    unet_config = json.loads((config / "unet" / "config.json").read_text())
    scheduler_config = json.loads((config / "scheduler" / "scheduler_config.json").read_text())
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(unet_config)
    if dtype != torch.float32:
        unet = unet.to(dtype=dtype)
    unet = unet.eval().requires_grad_(False)
    prediction = scheduler_config.get("prediction_type", "epsilon")
    return make_denoiser(unet, scheduler_config, prediction), unet


def random_conditioning(unet: Any, cfg: float, device: torch.device, seed: int = 1) -> Dict[str, Any]:
    """Random prompt embeddings in the shape the UNet takes (SDXL-style configs also get pooled
    embeddings and size ids), with guidance ``cfg``."""
    g = torch.Generator(device).manual_seed(seed)
    width = unet.config.cross_attention_dim

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g, device=device)

    extra: Dict[str, Any] = {"cond": rand(1, 77, width), "uncond": rand(1, 77, width), "cond_scale": float(cfg)}
    if unet.config.addition_embed_type == "text_time":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        extra.update(pooled=rand(1, pooled), uncond_pooled=rand(1, pooled),
                     time_ids=torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]], device=device))
    return extra


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    from itermix_kdiff.sd import shipped_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run: --latent <= 16)")
    p.add_argument("--dtype", default=None, choices=("float16", "bfloat16", "float32"),
                   help="the UNet's dtype (default float16 on CUDA, float32 on the CPU)")
    p.add_argument("--latent", type=int, default=128, help="latent side (default 128: a 1024 px picture)")
    p.add_argument("--steps", type=int, default=10, help="Karras steps per timed run (default 10)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved timing pairs (default 7)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each first (default 1)")
    p.add_argument("--cfg-scale", type=float, default=7.5, help="guidance scale (default 7.5)")
    p.add_argument("--config", type=Path, default=None,
                   help="a diffusers config folder (default: the shipped SD 1.5 one)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available: this script times the real-size SD 1.5 UNet on a GPU. For a "
                         f"smoke run of the script on the CPU pass --device cpu --latent 8 (at most {CPU_MAX_LATENT}).")
    if device.type == "cpu" and args.latent > CPU_MAX_LATENT:
        raise SystemExit(f"--device cpu is a smoke run: --latent must be at most {CPU_MAX_LATENT}, got {args.latent}")
    if args.latent < 8 or args.latent % 8 or args.steps < 2 or args.repeats < 1:
        raise SystemExit("--latent must be a multiple of 8 (>= 8), --steps >= 2, --repeats >= 1")
    dtype = getattr(torch, args.dtype or ("float16" if device.type == "cuda" else "float32"))
    config = args.config or shipped_config("sd1")

    from benchmarks.bench_speed import time_case
    from benchmarks.common import environment, set_threads
    from itermix_kdiff.sigmas import get_sigmas

    set_threads(args.threads)
    denoiser, unet = build_denoiser(config, device, dtype)
    params = sum(t.numel() for t in unet.parameters())
    extra = random_conditioning(unet, args.cfg_scale, device)
    sigmas = get_sigmas((float(denoiser.sigma_min), float(denoiser.sigma_max)), "karras", args.steps, device=device)
    x0 = torch.randn((1, unet.config.in_channels, args.latent, args.latent),
                     generator=torch.Generator().manual_seed(2)).clamp(-1, 1).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        row = time_case(denoiser, x0, sigmas, "sample_euler", "euler", {"blending_function": "addition"},
                        precomputed=False, repeats=args.repeats, warmup=args.warmup, extra_args=extra)
    n = args.steps
    result = {
        "environment": environment(device),
        "config": str(config), "unet_parameters": params, "dtype": str(dtype).replace("torch.", ""),
        "latent": [1, unet.config.in_channels, args.latent, args.latent], "steps": n, "cfg_scale": args.cfg_scale,
        "euler_s_per_step": row["baseline_s"] / n, "itermix_s_per_step": row["candidate_s"] / n,
        "euler_s_per_call": row["baseline_s"] / row["baseline_calls"],
        "itermix_s_per_call": row["candidate_s"] / row["candidate_calls"],
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        **row,
    }
    machine = result["environment"]["machine"]["device_name"]
    print(f"SD UNet ({params / 1e6:.2f} M parameters, {result['dtype']}) on {machine}, "
          f"latents 1x{unet.config.in_channels}x{args.latent}x{args.latent}, guided (batch 2), {n} Karras steps, "
          f"{args.repeats} interleaved pairs:")
    print(f"  sample_euler          {result['euler_s_per_step'] * 1e3:9.2f} ms/step  "
          f"({row['baseline_calls']} calls, {result['euler_s_per_call'] * 1e3:.2f} ms/call)")
    print(f"  sample_itermix_euler  {result['itermix_s_per_step'] * 1e3:9.2f} ms/step  "
          f"({row['candidate_calls']} calls, {result['itermix_s_per_call'] * 1e3:.2f} ms/call)")
    print(f"  itermix / euler: {row['ratio']:.3f}x per run ({row['ratio_q25']:.3f}-{row['ratio_q75']:.3f}), "
          f"{row['ratio_per_call']:.3f}x per model call")
    if result["peak_memory_bytes"] is not None:
        print(f"  peak CUDA memory: {result['peak_memory_bytes'] / 2 ** 30:.2f} GiB")
    if args.out is not None:
        from benchmarks.common import write_json

        write_json(args.out, result)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
