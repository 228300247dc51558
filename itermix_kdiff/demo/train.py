"""Training pieces for the demo model: config, one optimisation step, checkpoints, export.

The model is a k-diffusion ``ImageDenoiserModelV1`` wrapped in k-diffusion's
``Denoiser`` (Karras et al. preconditioning, its own loss), class-conditional on
the shape through ``mapping_cond``: a one-hot vector of the class, all zeros for
"no class" (classifier-free guidance; a fraction ``cond_dropout_rate`` of the
training batch gets zeros). The config dict uses the schema of k-diffusion's
``configs/*.json``.

Every random draw goes through one ``torch.Generator`` (noise, sigmas, condition
dropout) and batch ``step`` of the procedural dataset is a function of
``(seed, step)``, so a run is deterministic for its seed and resumes exactly from
a checkpoint that stores the generator's state.
"""

import copy
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

from ..sigmas import get_sigmas
from . import shapes


def demo_config(channels: Sequence[int] = (32, 64, 128), depths: Sequence[int] = (2, 2, 2),
                mapping_out: int = 128, lr: float = 5e-4, batch_size: int = 32,
                sigma_min: float = 0.02, sigma_max: float = 20.0, sigma_data: float = 0.5,
                density_mean: float = -1.2, density_std: float = 1.2,
                cond_dropout_rate: float = 0.1, ema_max: float = 0.9995,
                warmup_steps: int = 200, size: int = 32, patch_size: int = 1,
                self_attn: Optional[Sequence[bool]] = None) -> Dict[str, Any]:
    """k-diffusion config (``configs/*.json`` schema) of the demo model.

    Sigmas for the loss are log-normal, ``ln sigma ~ N(density_mean, density_std^2)``
    (EDM's choice for ``sigma_data = 0.5``); sampling uses ``[sigma_min, sigma_max]``.
    ``mapping_cond_dim = num_classes``: the class enters as a one-hot ``mapping_cond``.
    ``self_attn``: per level, whether its blocks have self-attention (default: none).
    """
    if len(channels) != len(depths):
        raise ValueError(f"channels and depths need the same length, got {channels} and {depths}")
    self_attn = [False] * len(depths) if self_attn is None else [bool(a) for a in self_attn]
    if len(self_attn) != len(depths):
        raise ValueError(f"self_attn needs one entry per level ({len(depths)}), got {len(self_attn)}")
    return {
        "model": {
            "type": "image_v1",
            "input_channels": 3,
            "input_size": [size, size],
            "patch_size": patch_size,
            "mapping_out": mapping_out,
            "mapping_cond_dim": shapes.NUM_CLASSES,
            "depths": list(depths),
            "channels": list(channels),
            "self_attn_depths": self_attn,
            "has_variance": False,
            "loss_config": "karras",
            "loss_weighting": "karras",
            "dropout_rate": 0.0,
            "augment_wrapper": False,
            "augment_prob": 0.0,
            "sigma_data": sigma_data,
            "sigma_min": sigma_min,
            "sigma_max": sigma_max,
            "sigma_sample_density": {"type": "lognormal", "mean": density_mean, "std": density_std},
        },
        "dataset": {
            "type": "itermix_kdiff.demo.shapes",
            "num_classes": shapes.NUM_CLASSES,
            "cond_dropout_rate": cond_dropout_rate,
            "classes": list(shapes.CLASSES),
        },
        "optimizer": {"type": "adamw", "lr": lr, "betas": [0.9, 0.99], "eps": 1e-8,
                      "weight_decay": 1e-4},
        "lr_sched": {"type": "constant", "warmup": warmup_steps},
        "ema_sched": {"type": "inverse", "power": 0.6667, "max_value": ema_max},
        "training": {"batch_size": batch_size},
    }


def class_mapping_cond(labels: torch.Tensor, num_classes: int, drop: Optional[torch.Tensor] = None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot ``mapping_cond`` of ``labels``; rows where ``drop`` is True are all zeros (unconditional)."""
    cond = torch.nn.functional.one_hot(labels.long(), num_classes).to(dtype)
    if drop is not None:
        cond = cond * (~drop).to(dtype)[:, None]
    return cond


def build(config: Dict[str, Any], seed: int):
    """``(model, model_ema, optimizer)`` for ``config``; weights initialised from ``seed``.

    The global RNG is forked, seeded for the initialisation and restored.
    """
    import k_diffusion as K

    config = K.config.load_config(copy.deepcopy(config))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inner = K.config.make_model(config)
    model = K.config.make_denoiser_wrapper(config)(inner)
    model_ema = copy.deepcopy(model).requires_grad_(False)
    opt_cfg = config["optimizer"]
    opt = torch.optim.AdamW(inner.parameters(), lr=opt_cfg["lr"], betas=tuple(opt_cfg["betas"]),
                            eps=opt_cfg["eps"], weight_decay=opt_cfg["weight_decay"])
    return model, model_ema, opt


def learning_rate(config: Dict[str, Any], step: int) -> float:
    """Linear warmup over ``lr_sched.warmup`` steps, then constant: ``lr * min(1, (step + 1) / warmup)``."""
    warmup = config["lr_sched"].get("warmup", 0)
    base = config["optimizer"]["lr"]
    return base * min(1.0, (step + 1) / warmup) if warmup else base


def ema_decay(config: Dict[str, Any], step: int) -> float:
    """Inverse EMA warmup: ``min(max_value, 1 - (1 + step) ** -power)`` (k-diffusion's EMAWarmup, inv_gamma 1)."""
    sched = config["ema_sched"]
    value = 1 - (1 + step) ** -sched["power"]
    return max(0.0, min(sched["max_value"], value))


def train_step(model, model_ema, opt, config: Dict[str, Any], step: int, seed: int,
               generator: torch.Generator, device) -> float:
    """One optimisation step on batch ``step`` of dataset ``seed``; returns the loss.

    ``loss = mean(Denoiser.loss(x, eps, sigma, mapping_cond=c))`` with
    ``ln sigma ~ N(mean, std^2)``, ``eps ~ N(0, I)`` and ``c`` the one-hot class,
    zeroed with probability ``cond_dropout_rate``; then the EMA update
    ``ema = d * ema + (1 - d) * model`` with ``d = ema_decay(step)``.
    """
    batch_size = config["training"]["batch_size"]
    size = config["model"]["input_size"][0]
    density = config["model"]["sigma_sample_density"]
    num_classes = config["dataset"]["num_classes"]
    # Rendered where the model runs: on a GPU the rendering would otherwise dominate the step.
    images, labels = shapes.batch(seed, step, batch_size, size, device=device)
    noise = torch.randn(images.shape, generator=generator)
    sigma = torch.exp(density["mean"] + density["std"] * torch.randn(batch_size, generator=generator))
    drop = torch.rand(batch_size, generator=generator) < config["dataset"]["cond_dropout_rate"]
    noise, sigma, drop = (t.to(device) for t in (noise, sigma, drop))
    cond = class_mapping_cond(labels, num_classes, drop)
    for group in opt.param_groups:
        group["lr"] = learning_rate(config, step)
    loss = model.loss(images, noise, sigma, mapping_cond=cond).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    decay = ema_decay(config, step)
    with torch.no_grad():
        for p_ema, p in zip(model_ema.parameters(), model.parameters()):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(model_ema.buffers(), model.buffers()):
            b_ema.copy_(b)
    return loss.item()


def save_checkpoint(path: Path, model, model_ema, opt, config: Dict[str, Any], step: int, seed: int,
                    generator: torch.Generator, elapsed: float, loss_ema: float) -> None:
    """Atomically write a training checkpoint (tensors and plain values only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.inner_model.state_dict(),
        "model_ema": model_ema.inner_model.state_dict(),
        "opt": opt.state_dict(),
        "config": json.dumps(config),
        "step": step,
        "seed": seed,
        "generator": generator.get_state(),
        "elapsed": elapsed,
        "loss_ema": loss_ema,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (``weights_only``: no arbitrary pickles)."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    state["config"] = json.loads(state["config"])
    return state


def export_inference(state_dict: Dict[str, torch.Tensor], config: Dict[str, Any], out_stem: Path,
                     dtype: torch.dtype = torch.float16, metadata: Optional[Dict[str, str]] = None):
    """Write k-diffusion's inference format: ``<stem>.json`` (config) and ``<stem>.safetensors``.

    The safetensors metadata also carries the config (as k-diffusion's
    ``convert_for_inference.py`` does), plus ``metadata``.
    """
    import safetensors.torch

    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config, indent=4)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in state_dict.items()}
    meta = {"config": text, **(metadata or {})}
    safetensors.torch.save_file(tensors, str(out_stem.with_suffix(".safetensors")), metadata=meta)
    out_stem.with_suffix(".json").write_text(text + "\n")
    return out_stem.with_suffix(".json"), out_stem.with_suffix(".safetensors")


def default_run_dir(run_name: str) -> Path:
    """``~/.cache/itermix_kdiff/train/<run_name>`` (outside the repository)."""
    return Path(os.path.expanduser("~")) / ".cache" / "itermix_kdiff" / "train" / run_name


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


#: The plain k-diffusion samplers the demo model is evaluated with (not itermix samplers).
EVAL_SAMPLERS = {
    "dpmpp_2m": "sample_dpmpp_2m",
    "heun": "sample_heun",
    "euler": "sample_euler",
    "euler_ancestral": "sample_euler_ancestral",
    "dpmpp_2m_sde": "sample_dpmpp_2m_sde",
}
STOCHASTIC_SAMPLERS = ("euler_ancestral", "dpmpp_2m_sde")


@torch.no_grad()
def sample_images(denoiser, labels: torch.Tensor, *, size: int = 32, steps: int = 24,
                  cond_scale: float = 2.0, sigma_min: float = 0.02, sigma_max: float = 20.0,
                  sampler: str = "dpmpp_2m", generator: Optional[torch.Generator] = None,
                  device=None, dtype: torch.dtype = torch.float32,
                  restore: Optional[torch.Tensor] = None, sigma_start: Optional[float] = None) -> torch.Tensor:
    """Class-conditional samples ``(B, 3, size, size)`` from a ``class_conditional_denoiser``.

    Karras sigmas (rho 7) from ``sigma_max`` to ``sigma_min`` over ``steps`` steps, then 0;
    start ``x = sigma_max * N(0, I)`` drawn from ``generator``; k-diffusion's ``sampler``
    (one of ``EVAL_SAMPLERS``). The stochastic ones draw their fresh noise from ``generator``
    too, so every sampler is deterministic for a seeded generator.

    With ``restore`` (clean images) and ``sigma_start``: start from
    ``restore + sigma_start * N(0, I)`` and run the part of the schedule below
    ``sigma_start`` — how well the model keeps a true shape from that noise level.
    """
    import k_diffusion as K

    if sampler not in EVAL_SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(EVAL_SAMPLERS)}, got {sampler!r}")
    labels = torch.as_tensor(labels).long()
    if (restore is None) != (sigma_start is None):
        raise ValueError("restore and sigma_start go together")
    sigmas = get_sigmas((sigma_min, sigma_max), "karras", steps)
    shape = [labels.shape[0], 3, size, size]
    if restore is None:
        x = torch.randn(shape, generator=generator) * sigma_max
    else:
        if tuple(restore.shape) != tuple(shape):
            raise ValueError(f"restore must have shape {tuple(shape)}, got {tuple(restore.shape)}")
        sigmas = torch.cat([torch.tensor([float(sigma_start)]), sigmas[sigmas < sigma_start]])
        x = restore.cpu().float() + torch.randn(shape, generator=generator) * float(sigma_start)
    x, sigmas = x.to(device, dtype), sigmas.to(device, dtype)
    fn = getattr(K.sampling, EVAL_SAMPLERS[sampler])
    extra = {"class_labels": labels.to(device), "cond_scale": cond_scale}
    kwargs = {}
    if sampler in STOCHASTIC_SAMPLERS:
        kwargs["noise_sampler"] = lambda sigma, sigma_next: torch.randn(shape, generator=generator).to(device, dtype)
    return fn(denoiser, x, sigmas, extra_args=extra, disable=True, **kwargs).clamp(-1, 1)
