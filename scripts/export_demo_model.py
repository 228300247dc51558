#!/usr/bin/env python3
"""Export the demo model's EMA weights to the package (k-diffusion inference format, fp16).

    python scripts/export_demo_model.py --run-name shapes32_p1         # latest checkpoint.pt
    python scripts/export_demo_model.py --snapshot ~/.cache/itermix_kdiff/train/shapes32_p1/ema_004000.safetensors

writes itermix_kdiff/demo/weights/shapes_32.json and shapes_32.safetensors (override with --out).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from itermix_kdiff import models  # noqa: E402
from itermix_kdiff.demo import train as T  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-name", default="shapes32_p1")
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--snapshot", type=Path, default=None, help="an ema_<step>.safetensors written by the trainer")
    p.add_argument("--out", type=Path, default=models.DEMO_CONFIG.with_suffix(""))
    p.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
    args = p.parse_args(argv)
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if args.snapshot:
        import safetensors.torch
        from safetensors import safe_open

        state = safetensors.torch.load_file(str(args.snapshot))
        with safe_open(str(args.snapshot), framework="pt") as f:
            meta = dict(f.metadata() or {})
        config = json.loads(meta.pop("config"))
    else:
        run_dir = args.run_dir or T.default_run_dir(args.run_name)
        ckpt = T.load_checkpoint(run_dir / "checkpoint.pt")
        state, config = ckpt["model_ema"], ckpt["config"]
        meta = {"step": str(ckpt["step"]), "training_seconds": f"{ckpt['elapsed']:.0f}", "seed": str(ckpt["seed"])}
    json_path, st_path = T.export_inference(state, config, args.out, dtype=dtype, metadata=meta)
    print(f"wrote {json_path} and {st_path} ({st_path.stat().st_size / 1e6:.1f} MB), metadata {meta}")


if __name__ == "__main__":
    main()
