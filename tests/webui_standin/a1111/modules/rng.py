"""``modules.rng``: each image's seeded noise (docs/webui-api.md, "Noise and seeds").

An :class:`ImageRNG` keeps one CPU generator per image seed (the webui's CPU noise source),
so row k of every draw depends on seed k alone. Its first draw is the initial noise and
goes through :func:`randn`, which also seeds torch's global generator; after it a nonzero
``opts.eta_noise_seed_delta`` (ENSD) swaps in generators seeded with ``seed + ENSD``.
Variation seeds and seed resizing are not modelled.
"""

import torch

from modules import FLAVOUR, devices, shared


def create_generator(seed):
    return torch.Generator(devices.cpu).manual_seed(int(seed))


def randn(seed, shape, generator=None):
    """Noise of ``shape`` from ``generator``, after seeding the global generator: with the
    seed, or in Forge, when a generator is given, with a value derived from it (so the
    global stream does not repeat the image's noise)."""
    shifted = FLAVOUR == "forge" and generator is not None
    torch.manual_seed((seed + 100000) % 65536 if shifted else seed)
    return torch.randn(shape, generator=generator)


class ImageRNG:
    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0,
                 seed_resize_from_w=0):
        self.shape = tuple(int(size) for size in shape)
        self.seeds = seeds
        self.generators = list(map(create_generator, seeds))
        self.is_first = True

    def _stacked(self, draw):
        return torch.stack([draw(k) for k in range(len(self.seeds))])

    def first(self):
        noise = self._stacked(lambda k: randn(self.seeds[k], self.shape, generator=self.generators[k]))
        delta = shared.opts.eta_noise_seed_delta
        if delta:
            self.generators = [create_generator(seed + delta) for seed in self.seeds]
        return noise

    def next(self):
        """``(len(seeds), *shape)``: the initial noise on the first call, then each image's
        next draw."""
        if not self.is_first:
            return self._stacked(lambda k: torch.randn(self.shape, generator=self.generators[k]))
        self.is_first = False
        return self.first()
