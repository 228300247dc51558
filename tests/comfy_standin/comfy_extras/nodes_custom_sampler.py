"""comfy_extras.nodes_custom_sampler (ComfyUI 0.8.0's names): the SamplerCustom and
SamplerCustomAdvanced nodes, the NOISE nodes (DisableNoise, RandomNoise) and the objects they
make, and the CFGGuider node. ComfyUI 0.8.0 declares the nodes with its io schema and returns
an ``io.NodeOutput``, which indexes like the tuples returned here.

A NOISE is an object with ``seed`` and ``generate_noise(latent)``; SamplerCustomAdvanced passes
its ``seed`` to the sampler as ``extra_args["seed"]``: DisableNoise's is always 0.
"""

import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview


class Noise_EmptyNoise:
    """No noise (``add_noise`` off): zeros like the latent."""

    def __init__(self):
        self.seed = 0

    def generate_noise(self, input_latent):
        return torch.zeros_like(input_latent["samples"], device="cpu")


class Noise_RandomNoise:
    """``add_noise`` on: the seed's noise (``comfy.sample.prepare_noise``)."""

    def __init__(self, seed):
        self.seed = seed

    def generate_noise(self, input_latent):
        return comfy.sample.prepare_noise(input_latent["samples"], self.seed, input_latent.get("batch_index"))


class SamplerCustom:
    @classmethod
    def execute(cls, model, add_noise, noise_seed, cfg, positive, negative, sampler, sigmas, latent_image):
        """``(output, denoised_output)``: the sampled LATENT, and the last denoised prediction
        as a LATENT (the output itself when the sampler reported none)."""
        latent = dict(latent_image)
        latent["samples"] = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        noise = (Noise_RandomNoise(noise_seed) if add_noise else Noise_EmptyNoise()).generate_noise(latent)
        x0_output = {}
        callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1, x0_output)
        samples = comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent["samples"],
                                             noise_mask=latent.get("noise_mask"), callback=callback,
                                             disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=noise_seed)
        out = {**latent, "samples": samples}
        if "x0" not in x0_output:
            return (out, out)
        return (out, {**latent, "samples": model.model.process_latent_out(x0_output["x0"].cpu())})

    sample = execute


def _denoised_output(model_patcher, latent, samples, x0_output):
    """The nodes' second output: the last denoised prediction the callback saw, unscaled, as a
    LATENT; the output itself when the sampler reported none."""
    out = {**latent, "samples": samples}
    if "x0" not in x0_output:
        return out
    return {**latent, "samples": model_patcher.model.process_latent_out(x0_output["x0"].cpu())}


class DisableNoise:
    """NOISE: none (zeros), seed 0."""

    @classmethod
    def execute(cls):
        return (Noise_EmptyNoise(),)

    get_noise = execute


class RandomNoise:
    """NOISE: the seed's noise, seed ``noise_seed``."""

    @classmethod
    def execute(cls, noise_seed):
        return (Noise_RandomNoise(noise_seed),)

    get_noise = execute


class CFGGuider:
    """GUIDER: the MODEL with its prompts and CFG scale (``comfy.samplers.CFGGuider``)."""

    @classmethod
    def execute(cls, model, positive, negative, cfg):
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return (guider,)

    get_guider = execute


class SamplerCustomAdvanced:
    @classmethod
    def execute(cls, noise, guider, sampler, sigmas, latent_image):
        """``(output, denoised_output)`` as SamplerCustom, with the noise from ``noise`` and the
        sampler's ``extra_args["seed"]`` its ``seed``."""
        latent = dict(latent_image)
        latent["samples"] = comfy.sample.fix_empty_latent_channels(guider.model_patcher, latent["samples"])
        x0_output = {}
        callback = latent_preview.prepare_callback(guider.model_patcher, sigmas.shape[-1] - 1, x0_output)
        samples = guider.sample(noise.generate_noise(latent), latent["samples"], sampler, sigmas,
                                denoise_mask=latent.get("noise_mask"), callback=callback,
                                disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=noise.seed)
        samples = samples.to(comfy.model_management.intermediate_device())
        return ({**latent, "samples": samples}, _denoised_output(guider.model_patcher, latent, samples, x0_output))

    sample = execute
