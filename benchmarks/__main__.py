"""``python -m benchmarks`` (``make bench``): every benchmark, every result file, one command.

    python -m benchmarks            # speed + memory, then picture quality -> benchmarks/results/
    python -m benchmarks --quick    # a smoke run (tiny sizes, 2 scenes) -> benchmarks/results/quick/
    python -m benchmarks --checkpoint sd15.safetensors --prompts prompts.txt --device cuda
                                    # the same tables on a Stable Diffusion model -> benchmarks/results/sd/<name>/

Writes ``speed.json``/``speed.md`` (:mod:`benchmarks.bench_speed`), ``quality.json``/
``quality.md`` and the two PNGs (:mod:`benchmarks.bench_quality`), and ``summary.md``: both
reports in one page. With ``--checkpoint`` (an SD single file or diffusers folder) the same
files come from :mod:`benchmarks.bench_sd`: no ground truth, so consistency to the base and
detail/grain against the bicubic latent upscale. Sweeps are separate: ``python -m benchmarks.sweep``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional, Sequence

from benchmarks import bench_quality, bench_sd, bench_speed
from benchmarks.common import RESULTS_DIR, resolve_device, set_threads, write_json


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, few repeats, 2 scenes, 2 steps "
                   "(with --checkpoint: the first prompt, 2 steps, one timing each)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default benchmarks/results, benchmarks/results/quick with --quick; "
                        "with --checkpoint benchmarks/results[/quick]/sd/<checkpoint name>)")
    p.add_argument("--only", default="speed,quality", help="speed, quality or both (default both)")
    p.add_argument("--scenes", type=int, default=None, help="quality: number of scenes (demo model only)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"quality: steps per pass (with --checkpoint default {bench_sd.DEFAULT_STEPS})")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default; default 1)")
    p.add_argument("--device", default="auto", help="torch device (default: cuda if available, else cpu)")
    bench_sd.add_arguments(p)
    args = p.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only or only - {"speed", "quality"}:
        raise SystemExit(f"--only takes speed, quality or both; got {args.only!r}")
    if args.checkpoint is not None and args.scenes is not None:
        p.error("--scenes belongs to the demo model; with --checkpoint give --prompts")
    if args.checkpoint is None:
        given = [name for name in bench_sd.SD_OPTIONS if getattr(args, name) is not None]
        if given:
            p.error(f"{', '.join('--' + n.replace('_', '-') for n in given)} need(s) --checkpoint (an SD model)")
    set_threads(args.threads)
    device = resolve_device(args.device)
    if args.checkpoint is not None:
        bench_sd.run_args(args, sorted(only), device)
        return
    out = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pages = []
    if "speed" in only:
        speed = bench_speed.run(args.quick, device=device)
        write_json(out / "speed.json", speed)
        (out / "speed.md").write_text(bench_speed.to_markdown(speed))
        pages.append(bench_speed.to_markdown(speed))
    if "quality" in only:
        quality = bench_quality.run(args.quick, scenes=args.scenes, steps=args.steps, out=out, device=device)
        pages.append(bench_quality.to_markdown(quality))
        pages.append("![consistency against detail](quality_consistency_detail.png)\n\n"
                     "![example outputs](quality_examples.png)\n")
    (out / "summary.md").write_text("# Benchmarks\n\n" + "\n".join(pages))
    print(f"done in {time.perf_counter() - start:.0f} s; results in {out}")


if __name__ == "__main__":
    main()
