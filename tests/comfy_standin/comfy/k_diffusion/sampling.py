"""comfy.k_diffusion.sampling: ComfyUI's copy of k-diffusion's samplers. Here k-diffusion's
own functions under the same names, with ComfyUI's default noise: seeded from
``extra_args["seed"]`` (a generator on x's device, seed + 1 on the CPU; a Brownian tree with
that seed for the SDE samplers)."""

import torch
import k_diffusion.sampling as kd

from k_diffusion.sampling import get_sigmas_exponential, get_sigmas_karras, to_d  # noqa: F401 (ComfyUI's names)


def default_noise_sampler(x, seed=None):
    if seed is not None:
        if x.device == torch.device("cpu"):
            seed += 1
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed)
    else:
        generator = None
    return lambda sigma, sigma_next: torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)


class BrownianTreeNoiseSampler:
    """ComfyUI's signature (``cpu`` chooses where the tree lives; k-diffusion's tree is used)."""

    def __init__(self, x, sigma_min, sigma_max, seed=None, transform=lambda x: x, cpu=False):
        self.sampler = kd.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed, transform=transform)

    def __call__(self, sigma, sigma_next):
        return self.sampler(sigma, sigma_next)


def _seed(extra_args):
    return (extra_args or {}).get("seed", None)


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0., s_tmin=0., s_tmax=float('inf'), s_noise=1.):
    return kd.sample_euler(model, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax, s_noise)


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1., s_noise=1., noise_sampler=None):
    noise_sampler = default_noise_sampler(x, seed=_seed(extra_args)) if noise_sampler is None else noise_sampler
    return kd.sample_euler_ancestral(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler)


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0., s_tmin=0., s_tmax=float('inf'), s_noise=1.):
    return kd.sample_heun(model, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax, s_noise)


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0., s_tmin=0., s_tmax=float('inf'), s_noise=1.):
    return kd.sample_dpm_2(model, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax, s_noise)


@torch.no_grad()
def sample_dpm_2_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1., s_noise=1., noise_sampler=None):
    noise_sampler = default_noise_sampler(x, seed=_seed(extra_args)) if noise_sampler is None else noise_sampler
    return kd.sample_dpm_2_ancestral(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler)


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1., s_noise=1., noise_sampler=None):
    noise_sampler = default_noise_sampler(x, seed=_seed(extra_args)) if noise_sampler is None else noise_sampler
    return kd.sample_dpmpp_2s_ancestral(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler)


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1., s_noise=1., noise_sampler=None, r=1 / 2):
    if len(sigmas) <= 1:
        return x
    if noise_sampler is None:
        noise_sampler = BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=_seed(extra_args), cpu=True)
    return kd.sample_dpmpp_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, r)


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    return kd.sample_dpmpp_2m(model, x, sigmas, extra_args, callback, disable)


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1., s_noise=1., noise_sampler=None, solver_type='midpoint'):
    if len(sigmas) <= 1:
        return x
    if noise_sampler is None:
        noise_sampler = BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=_seed(extra_args), cpu=True)
    return kd.sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler, solver_type)


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    noise_sampler = default_noise_sampler(x, seed=_seed(extra_args)) if noise_sampler is None else noise_sampler
    return kd.sample_lcm(model, x, sigmas, extra_args, callback, disable, noise_sampler)
