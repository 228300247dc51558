"""comfy_extras.nodes_custom_sampler (ComfyUI 0.8.0's names): the SamplerCustom node and the
noise objects it uses. ComfyUI 0.8.0 declares the node with its io schema and returns an
``io.NodeOutput``, which indexes like the tuple returned here."""

import torch

import comfy.sample
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
