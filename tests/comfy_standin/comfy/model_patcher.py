"""comfy.model_patcher.ModelPatcher, the MODEL type (ComfyUI 0.8.0): the model, its options and
its wrappers; ``clone()`` copies the options and wrappers, shares the model."""

import copy

import torch

import comfy.patcher_extension
import comfy.utils


def create_model_options_clone(orig_model_options):
    return comfy.patcher_extension.copy_nested_dicts(orig_model_options)


class ModelPatcher:
    def __init__(self, model, load_device=torch.device("cpu"), offload_device=torch.device("cpu")):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.model_options = {"transformer_options": {}}
        self.wrappers = {}
        self.callbacks = {}

    def clone(self):
        n = self.__class__(self.model, self.load_device, self.offload_device)
        n.model_options = copy.deepcopy(self.model_options)
        for k, w in self.wrappers.items():
            n.wrappers[k] = {k1: w1.copy() for k1, w1 in w.items()}
        return n

    def model_dtype(self):
        return torch.float32

    def get_model_object(self, name):
        return getattr(self.model, name)

    def set_model_denoise_mask_function(self, denoise_mask_function):
        self.model_options["denoise_mask_function"] = denoise_mask_function

    def add_wrapper_with_key(self, wrapper_type, key, wrapper):
        w = self.wrappers.setdefault(wrapper_type, {}).setdefault(key, [])
        w.append(wrapper)

    def remove_wrappers_with_key(self, wrapper_type, key):
        w = self.wrappers.get(wrapper_type, {})
        if key in w:
            w.pop(key)

    def get_all_wrappers(self, wrapper_type):
        w_list = []
        for w in self.wrappers.get(wrapper_type, {}).values():
            w_list.extend(w)
        return w_list
