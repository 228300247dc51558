"""``modules.sd_samplers_common``: ``SamplerData``, the interrupt exception, img2img steps."""

from collections import namedtuple

SamplerDataTuple = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])


class SamplerData(SamplerDataTuple):
    def total_steps(self, steps):
        # options must be a dict: .get on None fails here as in the webui's API listing.
        if self.options.get("second_order", False):
            steps = steps * 2
        return steps


class InterruptedException(BaseException):
    pass


def setup_img2img_steps(p, steps=None):
    """``(steps, t_enc)``: the full schedule length and how many of its steps the
    denoising strength runs; the sampler then uses ``sigmas[steps - t_enc - 1:]``."""
    if steps is not None:
        # An explicit count (the hires pass) is the number of steps actually run.
        requested = steps
        steps = int(requested / min(p.denoising_strength, 0.999)) if p.denoising_strength > 0 else 0
        return steps, requested - 1
    steps = p.steps
    return steps, int(min(p.denoising_strength, 0.999) * steps)
