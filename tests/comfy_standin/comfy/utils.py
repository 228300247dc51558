"""comfy.utils (ComfyUI 0.8.0's names): the progress bar, batch and mask resizing, latent upscaling.

The progress bar passes every update to a global hook; ComfyUI's server installs one that
sends the progress to the browser and raises ``InterruptProcessingException`` after Cancel, so
a sampler that reports its steps can be cancelled.
"""

import torch

PROGRESS_BAR_ENABLED = True

_global_hook = None


def set_progress_bar_global_hook(function):
    """``function(value, total, preview, node_id=None)`` receives every progress update."""
    global _global_hook
    _global_hook = function


class ProgressBar:
    """The progress of one node; it reports to the hook that was set when it was made."""

    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.node_id = node_id
        self.hook = _global_hook

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)


def repeat_to_batch_size(tensor, batch_size, dim=0):
    """``tensor`` with exactly ``batch_size`` entries along ``dim``: cut, or tiled and then cut."""
    have = tensor.shape[dim]
    if have < batch_size:
        tiles = [1] * tensor.ndim
        tiles[dim] = -(-batch_size // have)
        tensor = tensor.repeat(tiles)
    return tensor.narrow(dim, 0, batch_size)


def reshape_mask(input_mask, output_shape):
    """A mask ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` for a 2-D latent of ``output_shape``
    ``(B', C, H', W')``: resized bilinearly, one copy per channel, fitted to the batch."""
    mask = input_mask.reshape(-1, 1, *input_mask.shape[-2:])
    mask = torch.nn.functional.interpolate(mask, size=tuple(output_shape[2:]), mode="bilinear")
    return repeat_to_batch_size(mask.repeat(1, output_shape[1], 1, 1), output_shape[0])


def common_upscale(samples, width, height, upscale_method, crop):
    """``samples`` resized to ``width`` x ``height`` with one of torch's interpolation modes.
    ComfyUI's own ``bislerp`` and ``lanczos`` and its center crop are not offered here."""
    if crop != "disabled" or upscale_method in ("bislerp", "lanczos"):
        raise NotImplementedError("the stand-in upscales uncropped, with torch.nn.functional.interpolate's modes")
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=upscale_method)
