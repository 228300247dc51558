"""comfy.model_base.BaseModel (ComfyUI 0.8.0): ``apply_model(x, t, c_crossattn=...)`` takes the
latent and sigma and returns the denoised latent. Here an EPS model is a real
``k_diffusion.external.DiscreteEpsDDPMDenoiser`` over :class:`TinyUNet`, on the alphas of its
``model_sampling``; a flow model is ComfyUI's CONST arithmetic over the same network."""

import torch
from torch import nn

from comfy import latent_formats, model_sampling


class TinyUNet(nn.Module):
    """A fixed-weight eps (or velocity) network conditioned on the timestep and the prompt."""

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
    def __init__(self, prediction="eps"):
        super().__init__()
        self.latent_format = latent_formats.SD15()
        self.diffusion_model = TinyUNet()
        if prediction == "flow":
            sampling = type("ModelSampling", (model_sampling.ModelSamplingDiscreteFlow, model_sampling.CONST), {})
            self.model_sampling = sampling()
            self.kdiffusion = None
        else:
            import k_diffusion.external

            sampling = type("ModelSampling", (model_sampling.ModelSamplingDiscrete, model_sampling.EPS), {})
            self.model_sampling = sampling()
            alphas_cumprod = 1 / (self.model_sampling.sigmas.double() ** 2 + 1)
            self.kdiffusion = k_diffusion.external.DiscreteEpsDDPMDenoiser(
                self.diffusion_model, alphas_cumprod.float(), quantize=False)

    def apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        if self.kdiffusion is not None:
            return self.kdiffusion(x, t, cond=c_crossattn)
        sigma = t
        out = self.diffusion_model(x, self.model_sampling.timestep(t).float(), cond=c_crossattn)
        return self.model_sampling.calculate_denoised(sigma, out, x)

    def process_latent_in(self, latent):
        return self.latent_format.process_in(latent)

    def process_latent_out(self, latent):
        return self.latent_format.process_out(latent)

    def scale_latent_inpaint(self, sigma, noise, latent_image, **kwargs):
        return self.model_sampling.noise_scaling(sigma.reshape([sigma.shape[0]] + [1] * (len(noise.shape) - 1)), noise, latent_image)
