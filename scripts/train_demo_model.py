#!/usr/bin/env python3
"""Train the demo model: a class-conditional k-diffusion ImageDenoiserModelV1 on the shapes dataset.

Deterministic for --seed (on the CPU; CUDA with TF32 is not bit-reproducible); resumable:
re-running with the same arguments (or only a new --lr, --batch-size or sigma density, e.g. for
a low-LR final stretch) continues from <run-dir>/checkpoint.pt, written atomically every
--checkpoint-minutes. Every --snapshot-every steps the EMA weights are also exported in
k-diffusion's inference format (<run-dir>/ema_<step>.json + .safetensors) so intermediate models
can be evaluated while training goes on. --time-limit ends this invocation after that many
seconds (checkpoint and snapshot written, so the same command continues later). Uses CUDA when
available (TF32 on).

    # the shipped model (the defaults are its architecture and settings; under 4 minutes on one H200):
    python scripts/train_demo_model.py --run-name shapes32_p1 --steps 4361
    # a second run from the first one's weights, with the loss's sigmas moved up:
    python scripts/train_demo_model.py --run-name shapes32_mid --steps 9000 \
        --init-from ~/.cache/itermix_kdiff/train/shapes32_p1/checkpoint.pt --density-mean -0.6 --density-std 1.4
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from itermix_kdiff.demo import train as T  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-name", default="shapes32_p1")
    p.add_argument("--run-dir", type=Path, default=None, help="default ~/.cache/itermix_kdiff/train/<run-name>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=6000, help="total optimisation steps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--channels", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--depths", type=int, nargs="+", default=[2, 2, 2])
    p.add_argument("--patch-size", type=int, default=1)
    p.add_argument("--self-attn", type=int, nargs="+", default=[0, 0, 1],
                   help="per level, 1 for self-attention in its blocks")
    p.add_argument("--mapping-out", type=int, default=128)
    p.add_argument("--ema-max", type=float, default=0.9995)
    p.add_argument("--density-mean", type=float, default=-1.2, help="mean of ln(sigma) for the training loss")
    p.add_argument("--density-std", type=float, default=1.2, help="std of ln(sigma) for the training loss")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start a NEW run from another run's checkpoint.pt (weights, EMA, optimiser, step), "
                        "e.g. to try other training settings without touching that run")
    p.add_argument("--checkpoint-minutes", type=float, default=3.0)
    p.add_argument("--snapshot-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0: torch's default); one thread is fastest on a busy machine")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--time-limit", type=float, default=None,
                   help="stop after this many seconds of this invocation, with a checkpoint and an EMA snapshot")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        # TF32 matmuls and convolutions: several times faster on Ampere and later, ample precision here.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    run_dir = args.run_dir or T.default_run_dir(args.run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    config = T.demo_config(channels=args.channels, depths=args.depths, mapping_out=args.mapping_out,
                           patch_size=args.patch_size,
                           self_attn=args.self_attn, lr=args.lr, batch_size=args.batch_size, ema_max=args.ema_max,
                           density_mean=args.density_mean, density_std=args.density_std)
    model, model_ema, opt = T.build(config, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    step, elapsed, loss_ema = 0, 0.0, math.nan
    if args.init_from is not None and ckpt_path.exists():
        raise SystemExit(f"--init-from starts a new run, but {ckpt_path} exists; resume it without --init-from")
    source = args.init_from or ckpt_path
    if source.exists():
        state = T.load_checkpoint(source)

        def fixed(c):
            # The architecture, data and EMA define the run; the loss's sigma density, the
            # learning rate and the batch size are training settings a run may change.
            model_cfg = {k: v for k, v in c["model"].items() if k != "sigma_sample_density"}
            return model_cfg, c["dataset"], c["ema_sched"]

        if fixed(state["config"]) != fixed(config) or state["seed"] != args.seed:
            raise SystemExit(f"{source} was written with another model, dataset or seed; use another --run-name")
        if state["config"] != config:
            print(f"resuming with new training settings: {config['optimizer']}, {config['training']}, "
                  f"sigma density {config['model']['sigma_sample_density']}", flush=True)
        model.inner_model.load_state_dict(state["model"])
        model_ema.inner_model.load_state_dict(state["model_ema"])
        opt.load_state_dict(state["opt"])
        generator.set_state(state["generator"])
        step, elapsed, loss_ema = state["step"], state["elapsed"], state["loss_ema"]
        print(f"resumed from {source} at step {step}", flush=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    model.to(device).train()
    model_ema.to(device).eval()
    for st in opt.state.values():
        for k, v in st.items():
            if torch.is_tensor(v) and k != "step":
                st[k] = v.to(device)
    print(f"device {device}, {T.param_count(model)} parameters, run dir {run_dir}", flush=True)

    log = open(run_dir / "log.txt", "a")
    start_step, t0 = step, time.time()
    last_ckpt = time.time()

    def checkpoint():
        T.save_checkpoint(ckpt_path, model, model_ema, opt, config, step, args.seed, generator,
                          elapsed + time.time() - t0, loss_ema)

    def snapshot():
        T.export_inference(model_ema.inner_model.state_dict(), config, run_dir / f"ema_{step:06d}",
                           metadata={"step": str(step)})

    bar = tqdm(total=args.steps, initial=step, dynamic_ncols=True, mininterval=5)
    while step < args.steps:
        if args.time_limit is not None and time.time() - t0 >= args.time_limit:
            if step % args.snapshot_every:
                snapshot()
            print(f"time limit of {args.time_limit:.0f} s reached at step {step}", flush=True)
            break
        loss = T.train_step(model, model_ema, opt, config, step, args.seed, generator, device)
        loss_ema = loss if math.isnan(loss_ema) else 0.99 * loss_ema + 0.01 * loss
        step += 1
        bar.update(1)
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss_ema:.4f}")
            rate = (step - start_step) / (time.time() - t0)
            log.write(f"step {step} loss_ema {loss_ema:.5f} steps/s {rate:.2f} "
                      f"elapsed {elapsed + time.time() - t0:.0f}\n")
            log.flush()
        if step % args.snapshot_every == 0:
            snapshot()
        if time.time() - last_ckpt > args.checkpoint_minutes * 60 or step == args.steps:
            checkpoint()
            last_ckpt = time.time()
    bar.close()
    checkpoint()
    print(f"done: step {step}, {elapsed + time.time() - t0:.0f} s of training", flush=True)


if __name__ == "__main__":
    main()
