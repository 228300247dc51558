"""comfy.sample (ComfyUI 0.8.0's names): seeded noise and the two entry points the sampling
nodes call (KSampler's :func:`sample`, SamplerCustom's :func:`sample_custom`)."""

import torch

import comfy.model_management
import comfy.samplers
import comfy.utils


def prepare_noise(latent_image, seed, noise_inds=None):
    """Standard normal noise shaped like ``latent_image``, on the CPU, from ``seed``. As in
    ComfyUI it is drawn from torch's global generator, reseeded with ``seed``
    (``torch.manual_seed`` returns that generator), so it also sets the global RNG state.
    Per-latent noise for a ``batch_index`` is not offered."""
    if noise_inds is not None:
        raise NotImplementedError("the stand-in draws no per-index noise (batch_index)")
    generator = torch.manual_seed(seed)
    return torch.randn(latent_image.shape, dtype=latent_image.dtype, layout=latent_image.layout,
                       generator=generator, device="cpu")


def fix_empty_latent_channels(model, latent_image):
    """An all-zero latent with another channel count than the model's is widened to it; any
    other latent is returned as it is."""
    channels = model.get_model_object("latent_format").latent_channels
    if latent_image.shape[1] == channels or torch.count_nonzero(latent_image) > 0:
        return latent_image
    return comfy.utils.repeat_to_batch_size(latent_image, channels, dim=1)


def sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0,
           disable_noise=False, start_step=None, last_step=None, force_full_denoise=False, noise_mask=None,
           sigmas=None, callback=None, disable_pbar=False, seed=None):
    ksampler = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name,
                                       scheduler=scheduler, denoise=denoise, model_options=model.model_options)
    samples = ksampler.sample(noise, positive, negative, cfg=cfg, latent_image=latent_image, start_step=start_step,
                              last_step=last_step, force_full_denoise=force_full_denoise, denoise_mask=noise_mask,
                              sigmas=sigmas, callback=callback, disable_pbar=disable_pbar, seed=seed)
    return samples.to(comfy.model_management.intermediate_device())


def sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent_image, noise_mask=None, callback=None,
                  disable_pbar=False, seed=None):
    samples = comfy.samplers.sample(model, noise, positive, negative, cfg, model.load_device, sampler, sigmas,
                                    model_options=model.model_options, latent_image=latent_image,
                                    denoise_mask=noise_mask, callback=callback, disable_pbar=disable_pbar, seed=seed)
    return samples.to(comfy.model_management.intermediate_device())
