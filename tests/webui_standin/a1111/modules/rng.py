"""``modules.rng``: per-image seeded noise, one generator per seed."""

import torch


class ImageRNG:
    def __init__(self, shape, seeds):
        self.shape = tuple(shape)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def next(self):
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])
