"""comfy.model_base (ComfyUI 0.8.0's names): the diffusion model inside a MODEL.

``BaseModel.apply_model(x, sigma, c_crossattn=...)`` is the denoised latent; the model also
carries its ``model_sampling``, its ``latent_format`` and ``scale_latent_inpaint``. In the
stand-in the network is :class:`TinyUNet`, a small fixed-weight network conditioned on the
timestep and the prompt. An EPS model runs it through a real
``k_diffusion.external.DiscreteEpsDDPMDenoiser`` on the alphas of its table; a flow model
reads its output as a velocity (``CONST.calculate_denoised``).
"""

from enum import Enum

import torch
from torch import nn

from comfy import latent_formats, model_sampling as sampling


class ModelType(Enum):
    EPS = 1
    FLOW = 6


#: the table and the noising that make up each family's ``model_sampling``
FAMILIES = {
    ModelType.EPS: (sampling.ModelSamplingDiscrete, sampling.EPS),
    ModelType.FLOW: (sampling.ModelSamplingDiscreteFlow, sampling.CONST),
}


def model_sampling(model_config, model_type):
    table, noising = FAMILIES[model_type]
    return type("ModelSampling", (table, noising), {})(model_config)


class TinyUNet(nn.Module):
    """One convolution gated by the timestep, plus a projection of the prompt's mean token;
    normal weights of std 0.1 drawn from ``seed``. Counts its calls."""

    def __init__(self, channels=4, context_dim=8, seed=0):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.proj = nn.Linear(context_dim, channels)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        self.calls = 0

    def forward(self, x, t, cond=None, **kwargs):
        self.calls += 1
        gate = torch.sigmoid(t.float() / 500 - 1).view(-1, 1, 1, 1)
        out = self.conv(x) * gate
        if cond is not None:
            out = out + self.proj(cond.mean(dim=1))[:, :, None, None]
        return out


class BaseModel(nn.Module):
    """The stand-in's model of ``model_type``; ``model_config`` goes to its ``model_sampling``
    (a flow model reads ``sampling_settings["shift"]`` from it)."""

    def __init__(self, model_config, model_type=ModelType.EPS, device=None):
        super().__init__()
        self.model_type = model_type
        self.latent_format = latent_formats.SD15()
        self.diffusion_model = TinyUNet()
        self.model_sampling = model_sampling(model_config, model_type)
        self.kdiffusion = None
        if model_type == ModelType.EPS:
            import k_diffusion.external

            alphas_cumprod = 1 / (self.model_sampling.sigmas.double() ** 2 + 1)
            self.kdiffusion = k_diffusion.external.DiscreteEpsDDPMDenoiser(
                self.diffusion_model, alphas_cumprod.float(), quantize=False)

    def apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        if self.kdiffusion is not None:
            return self.kdiffusion(x, t, cond=c_crossattn)
        velocity = self.diffusion_model(x, self.model_sampling.timestep(t).float(), cond=c_crossattn)
        return self.model_sampling.calculate_denoised(t, velocity, x)

    def process_latent_in(self, latent):
        return self.latent_format.process_in(latent)

    def process_latent_out(self, latent):
        return self.latent_format.process_out(latent)

    def scale_latent_inpaint(self, sigma, noise, latent_image, **kwargs):
        """The clean latent noised to ``sigma`` (what inpainting keeps outside the mask)."""
        return self.model_sampling.noise_scaling(sigma, noise, latent_image)
