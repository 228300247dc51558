"""The SD UNet as a k-diffusion denoiser, classifier-free guidance inside.

``K.external.DiscreteEpsDDPMDenoiser`` (or ``DiscreteVDDPMDenoiser`` for v-prediction) turns
the UNet's eps (v) into a denoiser ``D(x, sigma)``: ``c_in = 1 / sqrt(sigma^2 + 1)`` scales the
input and ``sigma_to_t`` maps sigma to the (fractional) training timestep. Its inner model here
is :class:`GuidedUNet`, which runs the negative and the positive conditioning as one batch of
2B and returns ``u + (c - u) * cond_scale``. Guidance on eps (or v) equals guidance on the
denoised latents, since ``D`` is affine in the model output.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import nn


def alphas_cumprod(scheduler_config: Mapping) -> torch.Tensor:
    """The training noise table ``prod(1 - beta)`` of a diffusers scheduler config, in float32
    as diffusers' schedulers compute it (so their sigmas map to whole timesteps exactly; the
    original training code's float64 table differs by under 1e-6 relative)."""
    n = int(scheduler_config.get("num_train_timesteps", 1000))
    start, end = float(scheduler_config["beta_start"]), float(scheduler_config["beta_end"])
    schedule = scheduler_config.get("beta_schedule", "scaled_linear")
    if scheduler_config.get("rescale_betas_zero_snr") or scheduler_config.get("trained_betas") is not None:
        raise ValueError("scheduler configs with rescale_betas_zero_snr or trained_betas are not supported")
    if schedule == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float32) ** 2
    elif schedule == "linear":
        betas = torch.linspace(start, end, n, dtype=torch.float32)
    else:
        raise ValueError(f"beta_schedule {schedule!r} is not supported; accepted: scaled_linear, linear")
    return torch.cumprod(1 - betas, dim=0)


def _rows(t: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    """``t`` with ``batch`` rows: as is, or repeated whole when ``batch`` is a multiple of its rows
    (one prompt for a batch of latents, or DemoFusion's view-major batches of windows)."""
    if t.shape[0] == batch:
        return t
    if t.shape[0] and batch % t.shape[0] == 0:
        return t.repeat(batch // t.shape[0], *([1] * (t.ndim - 1)))
    raise ValueError(f"{name} has {t.shape[0]} rows, which do not divide the latents' batch of {batch}")


class GuidedUNet(nn.Module):
    """``(x, t, cond, uncond=None, cond_scale=1, pooled=None, uncond_pooled=None, time_ids=None)
    -> eps or v``: a diffusers ``UNet2DConditionModel`` with classifier-free guidance.

    ``cond``/``uncond`` are the text contexts (B, 77, C); SDXL also takes the pooled text
    embeddings and the size/crop ids (B, 6). Without ``uncond`` (guidance scale 1) the UNet runs
    once on the positive conditioning. The UNet runs in its own dtype; the result comes back in
    ``x``'s.
    """

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: Optional[torch.Tensor] = None,
                cond_scale: float = 1.0, pooled: Optional[torch.Tensor] = None,
                uncond_pooled: Optional[torch.Tensor] = None, time_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        batch = x.shape[0]
        guided = uncond is not None
        context = _rows(cond, batch, "cond")
        added = None
        if pooled is not None:
            added = {"text_embeds": _rows(pooled, batch, "pooled"), "time_ids": _rows(time_ids, batch, "time_ids")}
        if guided:
            context = torch.cat([_rows(uncond, batch, "uncond"), context])
            x_in, t_in = torch.cat([x, x]), torch.cat([t, t])
            if added is not None:
                added = {"text_embeds": torch.cat([_rows(uncond_pooled, batch, "uncond_pooled"), added["text_embeds"]]),
                         "time_ids": added["time_ids"].repeat(2, 1)}
        else:
            x_in, t_in = x, t
        dtype = self.unet.dtype
        if added is not None:
            added = {k: v.to(dtype) for k, v in added.items()}
        out = self.unet(x_in.to(dtype), t_in, encoder_hidden_states=context.to(dtype),
                        added_cond_kwargs=added, return_dict=False)[0].to(x.dtype)
        if not guided:
            return out
        u, c = out.chunk(2)
        return u + (c - u) * cond_scale


def make_denoiser(unet: nn.Module, scheduler_config: Mapping, prediction_type: str) -> nn.Module:
    """k-diffusion's discrete wrapper around :class:`GuidedUNet`: ``DiscreteEpsDDPMDenoiser`` for
    ``"epsilon"``, ``DiscreteVDDPMDenoiser`` for ``"v_prediction"``. Timesteps are not rounded
    (``quantize=False``), so any sigma maps to its exact fractional timestep."""
    import k_diffusion as K

    wrappers = {"epsilon": K.external.DiscreteEpsDDPMDenoiser, "v_prediction": K.external.DiscreteVDDPMDenoiser}
    if prediction_type not in wrappers:
        raise ValueError(f"prediction_type must be one of {', '.join(wrappers)}; got {prediction_type!r}")
    table = alphas_cumprod(scheduler_config).to(unet.device)
    return wrappers[prediction_type](GuidedUNet(unet), table, quantize=False).eval()
