"""comfy.model_sampling (ComfyUI 0.8.0's names): how a model family noises a latent, and its
table of noise levels.

ComfyUI builds a model's ``model_sampling`` from two classes: a table (``sigmas``, rising,
with ``timestep(sigma)``/``sigma(timestep)`` between noise level and model timestep) and a
family's noising (``noise_scaling`` makes the noised latent of a clean one, A1:
``x0 + sigma eps`` for EPS, ``sigma eps + (1 - sigma) x0`` for CONST, the flow models).
The stand-in has SD 1.x's discrete table and the flow table. ``percent_to_sigma`` turns a
fraction of sampling done (0 at the start, 1 at the end) into the sigma reached there, as
ComfyUI's nodes that act over part of a run (ControlNet ranges, hooks) read it: past either end
it gives a sigma beyond the table (above any run's first, or 0).
"""

import torch


def _per_row(sigma, ndim):
    """``sigma`` shaped to scale an ``ndim``-D batch: one value for all, or one per row."""
    if sigma.numel() == 1:
        return sigma.reshape(())
    return sigma.reshape(-1, *[1] * (ndim - 1))


class EPS:
    """Models that predict the noise: the latent at ``sigma`` is ``x0 + sigma eps``."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        scale = _per_row(sigma, noise.ndim)
        if max_denoise:
            # a run from the top of the table starts from noise of the full std sqrt(1 + sigma^2)
            scale = torch.sqrt(1.0 + scale ** 2)
        return noise * scale + latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent


class CONST:
    """Flow models: the latent at ``sigma`` in [0, 1] is ``sigma eps + (1 - sigma) x0``, and
    the model's output is a velocity (``x0 = x - sigma v``)."""

    def calculate_denoised(self, sigma, model_output, model_input):
        return model_input - model_output * _per_row(sigma, model_output.ndim)

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        s = _per_row(sigma, noise.ndim)
        return s * noise + (1.0 - s) * latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent / (1.0 - _per_row(sigma, latent.ndim))


class _Table(torch.nn.Module):
    """A rising table ``sigmas`` of noise levels, whose ends are the model's sigma range."""

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]


class ModelSamplingDiscrete(_Table):
    """SD 1.x's 1000 noise levels, from its scaled-linear betas (0.00085 to 0.012). A timestep
    is a (fractional) index into the table: ``timestep`` gives the index of the entry nearest
    in log sigma, ``sigma`` interpolates log sigma linearly between entries (k-diffusion's
    ``DiscreteSchedule`` maps the same way). The stand-in reads no ``model_config``."""

    def __init__(self, model_config=None, zsnr=None):
        super().__init__()
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        table = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.register_buffer("sigmas", table.float())
        self.register_buffer("log_sigmas", table.log().float())
        self.sigma_data = 1.0

    def timestep(self, sigma):
        gaps = (sigma.log().reshape(-1, 1) - self.log_sigmas.reshape(1, -1)).abs()
        return gaps.argmin(dim=1).reshape(sigma.shape)

    def sigma(self, timestep):
        t = timestep.float().clamp(0, len(self.sigmas) - 1)
        below, above = t.floor().long(), t.ceil().long()
        w = t - below
        return ((1 - w) * self.log_sigmas[below] + w * self.log_sigmas[above]).exp()

    def percent_to_sigma(self, percent):
        """A float: the sigma at timestep ``(1 - percent) * 999``; 999999999.9 for
        ``percent <= 0``, 0.0 for ``percent >= 1``."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return self.sigma(torch.tensor((1.0 - percent) * 999.0)).item()


def time_snr_shift(alpha, t):
    """SD3's timestep shift: ``alpha t / (1 + (alpha - 1) t)`` (the identity for alpha = 1)."""
    return alpha * t / (1 + (alpha - 1) * t)


class ModelSamplingDiscreteFlow(_Table):
    """The flow models' table: sigma = the shifted ``t / multiplier`` for t = 1 .. 1000. The
    shift is ``model_config.sampling_settings["shift"]`` (1.0 without a config)."""

    def __init__(self, model_config=None):
        super().__init__()
        settings = getattr(model_config, "sampling_settings", None) or {}
        self.set_parameters(shift=settings.get("shift", 1.0), multiplier=settings.get("multiplier", 1000))

    def set_parameters(self, shift=1.0, timesteps=1000, multiplier=1000):
        self.shift = shift
        self.multiplier = multiplier
        steps = torch.arange(1, timesteps + 1) / timesteps
        self.register_buffer("sigmas", self.sigma(steps * multiplier))

    def timestep(self, sigma):
        return sigma * self.multiplier

    def sigma(self, timestep):
        return time_snr_shift(self.shift, timestep / self.multiplier)

    def percent_to_sigma(self, percent):
        """The shifted ``1 - percent`` (a float); 1.0 for ``percent <= 0``, 0.0 for ``percent >= 1``."""
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return time_snr_shift(self.shift, 1.0 - percent)
