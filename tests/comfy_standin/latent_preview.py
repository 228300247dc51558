"""latent_preview (ComfyUI 0.8.0): the sampling callback that drives the progress bar and
previews (no previewer is configured here, as with ``--preview-method none``)."""

import comfy.utils


def get_previewer(device, latent_format):
    return None


def prepare_callback(model, steps, x0_output_dict=None):
    preview_format = "JPEG"
    previewer = get_previewer(model.load_device, model.model.latent_format)
    pbar = comfy.utils.ProgressBar(steps)

    def callback(step, x0, x, total_steps):
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        preview_bytes = None
        if previewer:
            preview_bytes = previewer.decode_latent_to_preview_image(preview_format, x0)
        pbar.update_absolute(step + 1, total_steps, preview_bytes)
    return callback
