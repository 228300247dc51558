"""comfy_extras.nodes_differential_diffusion (ComfyUI 0.8.0's names): the DifferentialDiffusion
node, which turns a soft inpainting mask into a per-step one."""

import torch


class DifferentialDiffusion:
    @classmethod
    def execute(cls, model, strength=1.0):
        """A clone of the MODEL ``model`` whose inpainting mask follows :meth:`forward`."""
        patched = model.clone()
        patched.set_model_denoise_mask_function(
            lambda *args, **kwargs: cls.forward(*args, **kwargs, strength=strength))
        return (patched,)

    @classmethod
    def forward(cls, sigma: torch.Tensor, denoise_mask: torch.Tensor, extra_options: dict, strength: float):
        """The mask at ``sigma``: 1 where the soft mask is at least the share of the run still to
        go, measured in timesteps from the run's first sigma to its last (at least the table's
        smallest), else 0; with ``strength`` < 1 blended back towards the soft mask."""
        table = extra_options["model"].inner_model.model_sampling
        run = extra_options["sigmas"]
        first = table.timestep(run[0])
        last = table.timestep(torch.maximum(run[-1], table.sigma_min))
        still_to_go = (table.timestep(sigma[0]) - last) / (first - last)
        hard = (denoise_mask >= still_to_go).to(denoise_mask.dtype)
        if not strength or strength >= 1:
            return hard
        return strength * hard + (1 - strength) * denoise_mask
