"""comfy.sampler_helpers (ComfyUI 0.8.0's names): what a guider prepares before a run."""

import comfy.utils


def prepare_mask(noise_mask, shape, device):
    """An inpainting mask fitted to the latent of ``shape`` (see ``comfy.utils.reshape_mask``)."""
    return comfy.utils.reshape_mask(noise_mask, shape).to(device)


def prepare_model_patcher(model, conds, model_options):
    """Make the wrappers patched onto the MODEL ``model`` visible to the run: they are added to
    ``model_options["transformer_options"]["wrappers"]``, where ``comfy.patcher_extension``
    looks them up. (ComfyUI also registers the prompts' hooks here; the stand-in has none.)"""
    run_wrappers = model_options["transformer_options"].setdefault("wrappers", {})
    for wrapper_type, by_key in model.wrappers.items():
        for key, wrappers in by_key.items():
            run_wrappers.setdefault(wrapper_type, {}).setdefault(key, []).extend(wrappers)
