"""``modules.rng``: per-image seeded noise (docs/webui-api.md, "Noise and seeds").

``ImageRNG`` holds one CPU generator per image seed. Its first ``next()`` is each image's
initial noise; when ``opts.eta_noise_seed_delta`` (ENSD) is set, the generators are then
re-seeded with ``seed + ENSD``, so every later draw (the samplers' ancestral noise, through
``TorchHijack``) comes from those. Row k depends only on seed k, whatever the batch. ``randn``
seeds torch's global RNG as well, as the webui does (A1111 with the seed, Forge with
``(seed + 100000) % 65536`` when a generator is given)."""

import torch

from modules import FLAVOUR, shared


def create_generator(seed):
    return torch.Generator("cpu").manual_seed(int(seed))


def randn(seed, shape, generator=None):
    torch.manual_seed((seed + 100000) % 65536 if FLAVOUR == "forge" and generator is not None else seed)
    return torch.randn(shape, generator=generator)


def randn_without_seed(shape, generator=None):
    return torch.randn(shape, generator=generator)


def randn_local(seed, shape):
    return torch.randn(shape, generator=create_generator(seed))


class ImageRNG:
    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0,
                 seed_resize_from_w=0):
        self.shape = tuple(map(int, shape))
        self.seeds = seeds
        self.generators = [create_generator(seed) for seed in seeds]
        self.is_first = True

    def first(self):
        noise = torch.stack([randn(seed, self.shape, generator=g) for seed, g in zip(self.seeds, self.generators)])
        delta = shared.opts.eta_noise_seed_delta or 0
        if delta:
            self.generators = [create_generator(seed + delta) for seed in self.seeds]
        return noise

    def next(self):
        if self.is_first:
            self.is_first = False
            return self.first()
        return torch.stack([randn_without_seed(self.shape, generator=g) for g in self.generators])
