"""comfy.sampler_helpers (ComfyUI 0.8.0): masks and the patcher's wrappers for a run."""

import comfy.patcher_extension
import comfy.utils


def prepare_mask(noise_mask, shape, device):
    return comfy.utils.reshape_mask(noise_mask, shape).to(device)


def prepare_model_patcher(model, conds, model_options):
    comfy.patcher_extension.merge_nested_dicts(model_options["transformer_options"].setdefault("wrappers", {}),
                                               model.wrappers, copy_dict1=False)
