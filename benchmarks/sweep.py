"""Run any grid of itermix settings over the quality benchmark; append the results.

    python -m benchmarks.sweep --grid alpha_1=1,2.4,4 blending_function=addition,slerp --seeds 0-63
    accelerate launch --multi_gpu --num_processes 4 -m benchmarks.sweep --grid ... --seeds 0-63

(``--multi_gpu`` makes accelerate start the processes with torchrun; on a machine without a
GPU they run on the CPU and talk over gloo. ``torchrun --nproc_per_node N -m benchmarks.sweep``
does the same; ``accelerate launch`` across nodes takes ``--num_machines``, ``--machine_rank``
and ``--main_process_ip`` as usual.)

Each ``NAME=V1,V2,...`` of ``--grid`` is one axis; the grid is their product. A name is an
itermix option (any field of :class:`itermix_kdiff.options.ItermixOptions` that takes a plain
value), ``sampler`` (a name of ``itermix_kdiff.wrap.SAMPLERS``), ``preset`` (a name of
``itermix_kdiff.options.PRESETS``, applied under the other options), ``cleanup`` (true/false:
the light cleanup pass), or a keyword of the sampler itself (``perlin_mode``, ``eta`` ...).
Values are read as ``true``/``false``, ``none``, integers, floats, else strings.

Every grid point, and every ``--baselines`` method of the quality benchmark (default: bicubic
and the itermix defaults, the comparison every point is read against), runs on every seed of
``--seeds``: seed ``s`` is scene ``s`` of the benchmark dataset and seeds every random draw
(``pipeline.stage_seeds(s)``), so a record depends only on its point and seed. The jobs
(point, seed) are dealt round-robin to the processes (:func:`shard`): Hugging Face
``accelerate`` (the launcher k-diffusion uses) gives this process's index and the number of
processes, and the model goes to its device, so the same command runs on this machine, on
several GPUs or on several nodes; without ``accelerate launch`` it is one process. Each
process writes its records to a part file; the main process merges them in job order,
appends them to ``sweep.jsonl`` (one record per line, tagged with the run id), appends the
run's settings, machine and command to ``sweep_runs.jsonl`` and rewrites ``sweep.md`` (the
means over the seeds of every run, newest first).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from itermix_kdiff.cli import parse_value

from benchmarks import bench_quality as Q
from benchmarks.common import RESULTS_DIR, environment, load_average, markdown_table, set_threads, to_jsonable

SPECIAL_KEYS = ("sampler", "preset", "cleanup")
#: Options whose values are tensors, generators or callables: not grid axes.
NOT_AXES = ("generator", "denoise_mask", "denoise_mask_fn", "mixing_masks")
DEFAULT_BASELINES = ("bicubic", "itermix")


def parse_grid(items: Sequence[str]) -> Dict[str, List[Any]]:
    """``["alpha_1=1,2.4", "blending_function=addition"]`` -> ``{"alpha_1": [1, 2.4], ...}``."""
    grid: Dict[str, List[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ValueError(f"--grid items look like NAME=V1,V2,...; got {item!r}")
        if name in grid:
            raise ValueError(f"--grid names {name!r} twice")
        grid[name] = [parse_value(v) for v in values.split(",")]
    return grid


def parse_seeds(text: str) -> List[int]:
    """``"0-63"``, ``"0,4,9"`` or ``"0-3,10"`` -> the seeds, in order, without repeats."""
    seeds: List[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            chunk = list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
        except ValueError:
            raise ValueError(f"--seeds takes ranges and numbers such as 0-63 or 0,4,9; got {text!r}") from None
        if (sep and int(hi) < int(lo)) or any(s < 0 for s in chunk):
            raise ValueError(f"--seeds: bad range {part!r} (seeds are >= 0, ranges low-high)")
        seeds += [s for s in chunk if s not in seeds]
    if not seeds:
        raise ValueError("--seeds names no seed")
    return seeds


def grid_points(grid: Dict[str, List[Any]]) -> List[Dict[str, Any]]:
    """The product of the axes, the first axis varying slowest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def point_method(point: Dict[str, Any]) -> Dict[str, Any]:
    """A grid point as a quality-benchmark method (see :data:`benchmarks.bench_quality.METHODS`),
    validated: unknown names, samplers, presets and option values raise ValueError/TypeError."""
    import inspect

    from itermix_kdiff.options import OPTION_NAMES, PRESETS, make_options
    from itermix_kdiff.wrap import SAMPLERS

    sampler = point.get("sampler", "euler")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    preset = point.get("preset", "reference")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    cleanup = point.get("cleanup", True)
    if not isinstance(cleanup, bool):
        raise TypeError(f"cleanup must be true or false, got {cleanup!r}")
    accepted = set(inspect.signature(SAMPLERS[sampler]).parameters) - {"model", "x", "sigmas", "extra_args",
                                                                        "callback", "disable", "noised_latents",
                                                                        "noise_sampler", "seed"}
    options, sampler_kwargs = dict(PRESETS[preset]), {}
    for name, value in point.items():
        if name in SPECIAL_KEYS:
            continue
        if name in NOT_AXES:
            raise ValueError(f"{name} cannot be a grid axis (it takes a tensor, generator or function)")
        if name in OPTION_NAMES:
            options[name] = value
        elif name in accepted:
            sampler_kwargs[name] = value
        else:
            raise ValueError(f"unknown grid name {name!r} for sampler {sampler}; accepted: "
                             f"{', '.join(SPECIAL_KEYS)}, {', '.join(sorted(accepted - set(NOT_AXES)))}")
    make_options(**options)
    return {"kind": "itermix", "sampler": sampler, "options": options, "sampler_kwargs": sampler_kwargs,
            "cleanup": cleanup}


def point_label(point: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def make_jobs(points: Sequence[Dict[str, Any]], baselines: Sequence[str], seeds: Sequence[int]
              ) -> List[Tuple[str, Dict[str, Any], Dict[str, Any], int]]:
    """Every ``(label, point, method, seed)``: the baselines first, then the grid points, each on every seed."""
    methods = [(name, {"baseline": name}, Q.METHODS[name]) for name in baselines]
    methods += [(point_label(p), p, point_method(p)) for p in points]
    return [(label, point, method, seed) for label, point, method in methods for seed in seeds]


def shard(jobs: Sequence[Any], rank: int, world: int) -> List[Tuple[int, Any]]:
    """The ``(index, job)`` pairs of process ``rank`` out of ``world``: jobs ``rank, rank + world, ...``.

    Round-robin keeps the shards within one job of each other and spreads a grid point's
    seeds over every process."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank {rank}, world {world}")
    return [(i, jobs[i]) for i in range(rank, len(jobs), world)]


def run_shard(ctx: Q.Context, jobs: Sequence[Any], rank: int, world: int, part: Path, run_id: str,
              bases: Sequence[str], targets: Sequence[int], log=print) -> Path:
    """Run this process's jobs; write their records (with ``job`` = the job index) to ``part``."""
    part.parent.mkdir(parents=True, exist_ok=True)
    base_cache: Dict[tuple, tuple] = {}
    with open(part, "w") as f:
        for index, (label, point, method, seed) in shard(jobs, rank, world):
            start = time.perf_counter()
            for record in Q.evaluate_scene(ctx, label, method, seed, bases, targets, base_cache):
                record.update(run_id=run_id, job=index, point=point)
                f.write(json.dumps(to_jsonable(record)) + "\n")
            f.flush()
            log(f"[{rank}/{world}] job {index}: {label}, seed {seed} ({time.perf_counter() - start:.1f} s)")
    return part


def merge(parts: Sequence[Path], results: Path) -> List[Dict[str, Any]]:
    """Append the records of ``parts`` to ``results`` in job order; delete the parts."""
    records = [json.loads(line) for p in parts for line in Path(p).read_text().splitlines() if line.strip()]
    records.sort(key=lambda r: (r["job"], Q.BASE_KINDS.index(r["base"]), r["target"]))
    results.parent.mkdir(parents=True, exist_ok=True)
    with open(results, "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    for p in parts:
        Path(p).unlink()
    return records


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sweep_markdown(records: Sequence[Dict[str, Any]], runs: Sequence[Dict[str, Any]]) -> str:
    """For every run (newest first) the means over its seeds, one table per base and target."""
    parts = ["# Sweeps", "", "Appended by `python -m benchmarks.sweep`; the records are in `sweep.jsonl`, the "
             "runs' settings, machines and commands in `sweep_runs.jsonl`. Metrics as in the quality "
             "benchmark (benchmarks/bench_quality.py).", ""]
    for run in reversed(runs):
        rows = [r for r in records if r["run_id"] == run["run_id"]]
        if not rows:
            continue
        env = run["environment"]
        parts += [f"## Run {run['run_id']} ({env['time_utc']})", "",
                  f"`{env['command']}` — {run['processes']} process(es), seeds {run['seeds_text']}, "
                  f"{run['settings']['steps']} steps, guidance {run['settings']['cfg']}, "
                  f"model {run['model']['source']}, {env['machine']['device_name']}.", ""]
        summary = Q.summarize(rows)
        for kind in run["settings"]["bases"]:
            for target in run["settings"]["targets"]:
                table = [r for r in summary if r["base"] == kind and r["target"] == target]
                if table:
                    parts += [f"32→{target}, {kind} bases:", "",
                              markdown_table(table, Q.SUMMARY_COLUMNS[:-1], Q.SUMMARY_HEADERS[:-1], digits=2), ""]
    return "\n".join(parts) + "\n"


def process_state(device: str = "auto"):
    """accelerate's ``PartialState``: this process's index, the process count and its device.

    ``device="cpu"``, or no CUDA device, makes the processes of a launch talk over gloo on
    the CPU (accelerate's MULTI_CPU); otherwise each process gets its own GPU.
    """
    from accelerate import PartialState

    return PartialState(cpu=(device == "cpu" or not torch.cuda.is_available()))


def make_run_id(state, text: str) -> str:
    """One id for the run, made by the main process and sent to the others."""
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + hashlib.sha1(text.encode()).hexdigest()[:6]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        run_id = broadcast_object_list([run_id], from_process=0)[0]
    return run_id


def main(argv: Optional[Sequence[str]] = None) -> Optional[List[Dict[str, Any]]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", nargs="+", required=True, metavar="NAME=V1,V2", help="the axes of the grid")
    p.add_argument("--seeds", default="0-7", help="scenes/seeds, e.g. 0-63 or 0,3,5 (default 0-7)")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES),
                   help="quality-benchmark methods run on the same seeds ('' for none; default bicubic,itermix)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder (default benchmarks/results)")
    Q.add_quality_arguments(p)
    args = p.parse_args(argv)
    set_threads(args.threads)
    grid = parse_grid(args.grid)
    seeds = parse_seeds(args.seeds)
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in baselines if b not in Q.METHODS]
    if unknown:
        raise SystemExit(f"--baselines: unknown {', '.join(unknown)}; accepted: {', '.join(Q.METHODS)}")
    targets = sorted(int(t) for t in args.targets.split(","))
    bases = [b.strip() for b in args.bases.split(",")]
    jobs = make_jobs(grid_points(grid), baselines, seeds)

    state = process_state(args.device)
    device = state.device if args.device in ("auto", "cpu") else torch.device(args.device)
    settings = {"steps": args.steps or Q.DEFAULT_STEPS, "base_steps": args.base_steps or Q.DEFAULT_BASE_STEPS,
                "cfg": args.cfg,
                "targets": targets, "bases": bases, "cleanup_denoise": Q.CLEANUP_DENOISE, "scene_seed": Q.SCENE_SEED}
    run_id = make_run_id(state, json.dumps(to_jsonable([grid, seeds, baselines, settings]), sort_keys=True))
    ctx = Q.setup(settings["steps"], settings["base_steps"], args.cfg, device, args.checkpoint)
    env = environment(device)
    part = args.out / "sweep_parts" / f"{run_id}.rank{state.process_index}.jsonl"
    run_shard(ctx, jobs, state.process_index, state.num_processes, part, run_id, bases, targets)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    parts = [args.out / "sweep_parts" / f"{run_id}.rank{r}.jsonl" for r in range(state.num_processes)]
    records = merge(parts, args.out / "sweep.jsonl")
    if not any((args.out / "sweep_parts").iterdir()):
        (args.out / "sweep_parts").rmdir()
    env["load_avg_end"] = load_average()
    run = {"run_id": run_id, "environment": env, "model": ctx.model_info, "grid": grid, "seeds": seeds,
           "seeds_text": args.seeds, "baselines": baselines, "settings": settings, "processes": state.num_processes,
           "jobs": len(jobs)}
    with open(args.out / "sweep_runs.jsonl", "a") as f:
        f.write(json.dumps(to_jsonable(run)) + "\n")
    (args.out / "sweep.md").write_text(sweep_markdown(read_jsonl(args.out / "sweep.jsonl"),
                                                      read_jsonl(args.out / "sweep_runs.jsonl")))
    print(f"appended {len(records)} records of run {run_id} to {args.out / 'sweep.jsonl'}; "
          f"wrote {args.out / 'sweep.md'}")
    return records


if __name__ == "__main__":
    main()
