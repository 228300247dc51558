"""What the extension's ``Script`` does with its settings (the script file only forwards)."""

from __future__ import annotations

from typing import Any, Sequence

from .registry import WEBUI_SAMPLERS, active_samplers
from .settings import check_settings, infotext_params, settings_from_args


def process(p: Any, args: Sequence[Any]) -> None:
    """``Script.process``: when this job samples with an itermix sampler, check the
    accordion's (or the API's) values, store them as ``p.itermix`` for the sampler
    (which reads ``model.p.itermix``) and record them in ``p.extra_generation_params``
    for the infotext. Jobs without an itermix sampler are left untouched."""
    labels = active_samplers(p)
    if not labels:
        return
    settings = settings_from_args(args)
    check_settings(settings)
    p.itermix = settings
    entries = [WEBUI_SAMPLERS[label] for label in labels]
    p.extra_generation_params.update(infotext_params(settings, perlin=any(e.perlin for e in entries),
                                                     demofusion=any(e.demofusion for e in entries)))
