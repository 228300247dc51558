"""What every benchmark shares: the record of where a number came from, timing, output files.

- :func:`environment`: the machine, the versions, the command and the load, stored next to
  every result so that a number can be traced and re-run.
- :func:`compare_timings`: baseline and candidate timed in alternation (A B B A A B ...), the
  warm-up excluded; the result is the median of the per-pair ratios, so a load that changes
  during the run weighs on both sides alike.
- :class:`CallCounter`: a model wrapper that counts the model calls (and batch rows).
- :func:`write_json`, :func:`markdown_table`: the output files.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"

PACKAGES = ("torch", "k-diffusion", "numpy", "accelerate", "safetensors", "diffusers", "transformers",
            "open-clip-torch")


def package_version(name: str) -> Optional[str]:
    """The installed version of ``name``, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state() -> Dict[str, Any]:
    """The repository's commit and whether the work tree differs from it (None outside git)."""
    def git(*args: str) -> Optional[str]:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def load_average() -> Optional[List[float]]:
    """``os.getloadavg()`` (1, 5, 15 minutes), or None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def command_line() -> str:
    """The command that started this process, as typed (``sys.orig_argv`` where available)."""
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return shlex.join(argv)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def environment(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """Where and how a benchmark ran: machine, versions, command, load, time.

    ``load_avg`` is the 1/5/15-minute load average when the record is made; benchmarks
    record it again at the end (``load_avg_end``) so that a loaded run is visible.
    """
    import itermix_kdiff

    device = torch.device("cpu") if device is None else torch.device(device)
    return {
        "command": command_line(),
        "cwd": os.getcwd(),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "device": str(device),
            "device_name": device_name(device),
            "torch_threads": torch.get_num_threads(),
        },
        "versions": {
            "python": platform.python_version(),
            "itermix_kdiff": itermix_kdiff.__version__,
            **{name: package_version(name) for name in PACKAGES},
        },
        "git": git_state(),
        "load_avg": load_average(),
    }


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` with linear interpolation (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def sync(device: Optional[torch.device]) -> None:
    """Wait for queued GPU work, so that a timer reads the work done (no-op on CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: Optional[torch.device] = None, number: int = 1) -> float:
    """Seconds per call of ``fn()``, over ``number`` calls in a row (``time.perf_counter``, GPU
    synchronised before and after)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(number):
        fn()
    sync(device)
    return (time.perf_counter() - start) / number


def compare_timings(baseline: Callable[[], Any], candidate: Callable[[], Any], *, repeats: int = 7,
                    warmup: int = 1, min_time: float = 0.0, device: Optional[torch.device] = None
                    ) -> Dict[str, Any]:
    """Time ``candidate`` against ``baseline``, interleaved.

    ``warmup`` calls of each are run first and thrown away. A timing covers ``number`` calls
    in a row, ``number = ceil(min_time / t)`` with ``t`` the faster side's time of one call
    (so that short calls are not lost in the timer's and the scheduler's noise), the same for
    both sides. Then ``repeats`` pairs, the order alternating (A B, B A, A B, ...) so that
    neither side always runs second. Returns

    - ``baseline_s``, ``candidate_s``: the median seconds per call of each;
    - ``ratio``: the median over pairs of ``candidate / baseline`` (> 1: the candidate is slower);
    - ``ratio_q25``, ``ratio_q75``: the quartiles of those ratios, the spread a reader should
      expect on a re-run;
    - ``repeats``, ``warmup``, ``number``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        baseline()
        candidate()
    number = 1
    if min_time > 0:
        fastest = min(time_call(baseline, device), time_call(candidate, device))
        number = max(1, math.ceil(min_time / max(fastest, 1e-9)))
    base_times, cand_times = [], []
    for r in range(repeats):
        if r % 2 == 0:
            base_times.append(time_call(baseline, device, number))
            cand_times.append(time_call(candidate, device, number))
        else:
            cand_times.append(time_call(candidate, device, number))
            base_times.append(time_call(baseline, device, number))
    ratios = [c / b for c, b in zip(cand_times, base_times)]
    return {
        "baseline_s": statistics.median(base_times),
        "candidate_s": statistics.median(cand_times),
        "ratio": statistics.median(ratios),
        "ratio_q25": quantile(ratios, 0.25),
        "ratio_q75": quantile(ratios, 0.75),
        "repeats": repeats,
        "warmup": warmup,
        "number": number,
    }


class CallCounter:
    """A k-diffusion model wrapper that counts calls: ``calls`` (model evaluations) and
    ``rows`` (batch rows evaluated, what a batch-1 GPU run would pay for). ``reset()`` zeroes both."""

    def __init__(self, model: Callable[..., torch.Tensor]):
        self.inner_model = model
        self.calls = 0
        self.rows = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args: Any) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        return self.inner_model(x, sigma, **extra_args)

    def reset(self) -> None:
        self.calls = 0
        self.rows = 0


def to_jsonable(value: Any) -> Any:
    """Tensors, tuples and non-finite floats made JSON-safe (NaN and inf become strings)."""
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2) + "\n")
    return path


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` significant decimals, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Dict[str, Any]], columns: Sequence[str],
                   headers: Optional[Sequence[str]] = None, digits: int = 3) -> str:
    """A GitHub Markdown table of ``rows`` (dicts) with the given ``columns``."""
    headers = list(columns) if headers is None else list(headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c), digits) for c in columns) + " |")
    return "\n".join(lines)


def provenance_markdown(env: Dict[str, Any]) -> str:
    """Two lines saying how and where a table was made, to print under it."""
    m, v = env["machine"], env["versions"]
    load = env.get("load_avg")
    load_end = env.get("load_avg_end")
    loads = f"load average {load[0] if load else '?'} at the start"
    if load_end:
        loads += f", {load_end[0]} at the end"
    commit = (env.get("git") or {}).get("commit")
    dirty = (env.get("git") or {}).get("dirty")
    rev = "no git" if commit is None else commit[:10] + (" + local changes" if dirty else "")
    return (f"Command: `{env['command']}` ({env['time_utc']}, {rev}).  \n"
            f"Machine: {m['device_name']} ({m['cpu_count']} CPUs, {m['torch_threads']} torch threads, "
            f"device {m['device']}), {loads}; Python {v['python']}, torch {v['torch']}, "
            f"k-diffusion {v['k-diffusion']}, itermix_kdiff {v['itermix_kdiff']}.")


def set_threads(threads: int) -> None:
    """``torch.set_num_threads`` when ``threads`` > 0 (0 keeps torch's default)."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)


TRAIN_DIR = Path(os.path.expanduser("~")) / ".cache" / "itermix_kdiff" / "train" / "shapes32_p1"


def newest_snapshot(run_dir: Path = TRAIN_DIR) -> Optional[Path]:
    """The newest ``ema_<step>.safetensors`` written by ``scripts/train_demo_model.py``, or None."""
    snapshots = sorted(Path(run_dir).glob("ema_*.safetensors"))
    return snapshots[-1] if snapshots else None


def load_model(device: torch.device = torch.device("cpu"),
               checkpoint: Optional[Path] = None) -> tuple:
    """The demo model as ``(denoiser, config, info)``.

    ``denoiser(x, sigma, class_labels=None, cond_scale=1.0)`` is
    :func:`itermix_kdiff.models.class_conditional_denoiser`. Which weights, in this order:
    ``checkpoint`` when given; the shipped ``itermix_kdiff/demo/weights/shapes_32.safetensors``;
    the newest training snapshot (``~/.cache/itermix_kdiff/train/shapes32_p1/ema_*``); else the
    demo architecture with random weights (speed only: ``info["trained"]`` is False). ``info``
    says which, and is stored with the results.
    """
    from itermix_kdiff import models

    if checkpoint is None and models.DEMO_CHECKPOINT.is_file():
        denoiser, config = models.load_demo_model(device=device)
        return denoiser, config, {"source": "shipped", "path": str(models.DEMO_CHECKPOINT), "trained": True}
    checkpoint = checkpoint if checkpoint is not None else newest_snapshot()
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        config_path = checkpoint.with_suffix(".json")
        config = json.loads(config_path.read_text()) if config_path.is_file() else None
        model = models.load_kdiffusion_model(config, checkpoint, device=device)
        config = config if config is not None else models.read_safetensors_config(checkpoint)
        denoiser = models.class_conditional_denoiser(model, config["dataset"]["num_classes"])
        return denoiser, config, {"source": "checkpoint", "path": str(checkpoint), "trained": True}
    from itermix_kdiff.demo import train

    config_path = TRAIN_DIR / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else train.demo_config()
    model = train.build(config, seed=0)[0].to(device).eval().requires_grad_(False)
    denoiser = models.class_conditional_denoiser(model, config["dataset"]["num_classes"])
    return denoiser, config, {"source": "random init (untrained)", "path": None, "trained": False}


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; any other name as ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
