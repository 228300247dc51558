"""comfy.latent_formats (ComfyUI 0.8.0's names): how a model family's latents relate to LATENTs.

A LATENT holds the VAE's output as it is; the diffusion model works on it times the family's
scale factor. ``process_in`` goes into the model's space, ``process_out`` back.
"""


class LatentFormat:
    scale_factor = 1.0
    latent_channels = 4

    def process_in(self, latent):
        return latent * self.scale_factor

    def process_out(self, latent):
        return latent / self.scale_factor


class SD15(LatentFormat):
    """SD 1.x: four channels, scale factor 0.18215."""

    scale_factor = 0.18215
