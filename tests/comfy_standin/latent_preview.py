"""latent_preview (ComfyUI 0.8.0's names): the callback a sampling node hands to the sampler.

No previewer is configured (as with ComfyUI's ``--preview-method none``): the callback keeps
the latest denoised latent and moves the progress bar, whose hook is where ComfyUI's server
reports progress and raises after Cancel.
"""

import comfy.utils


def prepare_callback(model, steps, x0_output_dict=None):
    """``callback(step, x0, x, total_steps)`` for a run of ``steps`` steps on ``model``."""
    pbar = comfy.utils.ProgressBar(steps)

    def callback(step, x0, x, total_steps):
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        pbar.update_absolute(step + 1, total_steps, None)

    return callback
