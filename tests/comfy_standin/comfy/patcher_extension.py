"""comfy.patcher_extension (ComfyUI 0.8.0's names): wrappers around the steps of a run.

A wrapper of one of the :class:`WrappersMP` types is called as ``wrapper(executor, *args)``
in place of that step; calling ``executor(*args)`` runs the next wrapper, and after the last
one the step itself. ``executor.class_obj`` is the object whose method is wrapped (the
guider, for the guider's steps). Wrappers are found in ``transformer_options["wrappers"]``
as ``{wrapper_type: {key: [wrapper, ...]}}``.
"""


class WrappersMP:
    """The wrapper types the stand-in's guider runs (a subset of ComfyUI's)."""

    OUTER_SAMPLE = "outer_sample"
    SAMPLER_SAMPLE = "sampler_sample"
    PREDICT_NOISE = "predict_noise"


def get_all_wrappers(wrapper_type, transformer_options, is_model_options=False):
    """Every wrapper of ``wrapper_type``, in the order their keys were added."""
    if is_model_options:
        transformer_options = transformer_options.get("transformer_options", {})
    by_key = transformer_options.get("wrappers", {}).get(wrapper_type, {})
    return [wrapper for wrappers in by_key.values() for wrapper in wrappers]


class WrapperExecutor:
    """Position ``idx`` in the chain ``wrappers`` around ``original``."""

    def __init__(self, original, class_obj, wrappers, idx):
        self.original = original
        self.class_obj = class_obj
        self.wrappers = list(wrappers)
        self.idx = idx

    @classmethod
    def new_class_executor(cls, original, class_obj, wrappers, idx=0):
        return cls(original, class_obj, wrappers, idx)

    def execute(self, *args, **kwargs):
        """Run this position: its wrapper, or ``original`` once the wrappers are used up."""
        if self.idx >= len(self.wrappers):
            return self.original(*args, **kwargs)
        return self.wrappers[self.idx](self, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        """What a wrapper calls: the rest of the chain."""
        following = type(self)(self.original, self.class_obj, self.wrappers, self.idx + 1)
        return following.execute(*args, **kwargs)
