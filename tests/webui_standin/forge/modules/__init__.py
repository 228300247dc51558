"""Stand-in for Forge's ``modules`` package: the A1111 1.10.1 stand-in (which Forge is
based on) with ``FLAVOUR = "forge"``, which switches on Forge's differences
(docs/webui-api.md, "Forge"): ``sd_samplers.add_sampler``, ``xi`` from the predictor's
``noise_scaling`` (flow models included), its CFG denoiser's order and guidance, no
negative prompt at CFG 1, ``process_before_every_sampling`` called twice in the hires
pass."""

import os

FLAVOUR = "forge"

__path__.append(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                             "a1111", "modules"))
