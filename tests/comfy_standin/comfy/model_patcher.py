"""comfy.model_patcher (ComfyUI 0.8.0's names): ``ModelPatcher``, the MODEL that nodes pass on.

A patch node clones the MODEL and patches the clone: the clone shares the model (its weights)
and has its own options and wrappers, so the MODEL it came from samples as before. The
stand-in patches no weights and loads nothing: ``size`` and ``weight_inplace_update`` are
kept for the signature only.
"""

import copy
import functools


def create_model_options_clone(orig_model_options):
    """A copy of model options that a run may change: every nested dict and list is new, the
    values in them (functions, tensors) are shared."""
    def copied(value):
        if isinstance(value, dict):
            return {key: copied(item) for key, item in value.items()}
        if isinstance(value, list):
            return list(value)
        return value

    return copied(orig_model_options)


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.size = size
        self.weight_inplace_update = weight_inplace_update
        self.model_options = {"transformer_options": {}}
        self.wrappers = {}

    def clone(self):
        twin = type(self)(self.model, self.load_device, self.offload_device, self.size,
                          weight_inplace_update=self.weight_inplace_update)
        twin.model_options = copy.deepcopy(self.model_options)
        twin.wrappers = {kind: {key: list(wrappers) for key, wrappers in by_key.items()}
                         for kind, by_key in self.wrappers.items()}
        return twin

    def get_model_object(self, name):
        """The attribute at the dotted path ``name`` of the model (``"model_sampling"``, ...)."""
        return functools.reduce(getattr, name.split("."), self.model)

    def set_model_denoise_mask_function(self, denoise_mask_function):
        """``fn(sigma, denoise_mask, extra_options)``: the inpainting mask of each step."""
        self.model_options["denoise_mask_function"] = denoise_mask_function

    def add_wrapper_with_key(self, wrapper_type, key, wrapper):
        self.wrappers.setdefault(wrapper_type, {}).setdefault(key, []).append(wrapper)

    def remove_wrappers_with_key(self, wrapper_type, key):
        self.wrappers.get(wrapper_type, {}).pop(key, None)
