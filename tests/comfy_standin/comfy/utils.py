"""comfy.utils: the progress bar (whose hook, set by ComfyUI's server, raises on interrupt),
batch repetition, mask reshaping and latent upscaling (ComfyUI 0.8.0)."""

import math

import torch

PROGRESS_BAR_ENABLED = True


def set_progress_bar_enabled(enabled):
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


PROGRESS_BAR_HOOK = None


def set_progress_bar_global_hook(function):
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)


def repeat_to_batch_size(tensor, batch_size, dim=0):
    if tensor.shape[dim] > batch_size:
        return tensor.narrow(dim, 0, batch_size)
    elif tensor.shape[dim] < batch_size:
        return tensor.repeat(dim * [1] + [math.ceil(batch_size / tensor.shape[dim])] + [1] * (len(tensor.shape) - 1 - dim)).narrow(dim, 0, batch_size)
    return tensor


def reshape_mask(input_mask, output_shape):
    input_mask = input_mask.reshape((-1, 1, input_mask.shape[-2], input_mask.shape[-1]))
    mask = torch.nn.functional.interpolate(input_mask, size=output_shape[2:], mode="bilinear")
    if mask.shape[1] < output_shape[1]:
        mask = mask.repeat((1, output_shape[1]) + (1,) * 2)[:, :output_shape[1]]
    return repeat_to_batch_size(mask, output_shape[0])


def common_upscale(samples, width, height, upscale_method, crop):
    if crop != "disabled" or upscale_method in ("bislerp", "lanczos"):
        raise NotImplementedError("the stand-in upscales with torch's interpolate modes, uncropped")
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=upscale_method)
