"""The "Iterative Mixing" settings of the webui shim: one table, read by the UI, the
infotext (PNG info), the HTTP API and the sampler.

Each :data:`FIELDS` entry is one control of the accordion. Its value is stored in
``p.itermix[name]``, recorded in the infotext as ``"Itermix <name>"`` and named
``"itermix_<name>"`` for the API. ``name`` is the itermix sampler keyword it sets
(docs/algorithm.md A2, A3, A5, A7), except ``preset`` (a dict of keywords from
:data:`itermix_kdiff.PRESETS` applied on top, B2) and ``demofusion_tile`` (the window of the
"DemoFusion IterMix" sampler, in pixels). A field's default is the keyword's own: the
:class:`~itermix_kdiff.ItermixOptions` field's, or for the Perlin fields the default in
the Perlin sampler's signature.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

from .. import BLENDING_FUNCTIONS, BLENDING_SCHEDULES, PRESETS, SAMPLERS, ItermixOptions, make_options
from ..options import apply_preset
from ..perlin import PERLIN_MODES, check_perlin_keywords

TITLE = "Iterative Mixing"


class Field(NamedTuple):
    """One control: ``kind`` is ``"slider"`` (``bounds`` = minimum, maximum, step),
    ``"dropdown"`` (``choices``) or ``"checkbox"``; ``perlin`` fields only feed the
    Perlin sampler, ``demofusion`` fields only the DemoFusion one."""

    name: str
    label: str
    kind: str
    default: Any
    bounds: Tuple[float, float, float] = (0.0, 1.0, 0.01)
    choices: Tuple[str, ...] = ()
    perlin: bool = False
    info: str = ""
    demofusion: bool = False


#: The defaults of the sampler keywords the fields set: every option's, then the Perlin sampler's own.
DEFAULTS: Dict[str, Any] = {
    **{f.name: f.default for f in dataclasses.fields(ItermixOptions)},
    **{name: param.default for name, param in inspect.signature(SAMPLERS["euler_perlin"]).parameters.items()
       if name.startswith("perlin_")},
}
FIELDS: Tuple[Field, ...] = (
    Field("alpha_1", "alpha_1", "slider", DEFAULTS["alpha_1"], bounds=(0.0, 10.0, 0.1),
          info="steepness of the blending curve"),
    Field("blending_schedule", "Schedule", "dropdown", DEFAULTS["blending_schedule"],
          choices=tuple(BLENDING_SCHEDULES)),
    Field("blending_function", "Blend function", "dropdown", DEFAULTS["blending_function"],
          choices=tuple(BLENDING_FUNCTIONS)),
    Field("start_blending_at_pct", "Start blending at", "slider", DEFAULTS["start_blending_at_pct"]),
    Field("stop_blending_at_pct", "Stop blending at", "slider", DEFAULTS["stop_blending_at_pct"]),
    Field("clamp_blending_at_pct", "Clamp blending at", "slider", DEFAULTS["clamp_blending_at_pct"]),
    Field("blend_min", "Blend min", "slider", DEFAULTS["blend_min"]),
    Field("blend_max", "Blend max", "slider", DEFAULTS["blend_max"]),
    Field("preset", "Preset", "dropdown", "reference", choices=tuple(PRESETS),
          info="demofusion: shared noise, mix before each step, DemoFusion's curve"),
    Field("rewind", "Rewind", "checkbox", DEFAULTS["rewind"]),
    Field("perlin_mode", "Perlin mode", "dropdown", DEFAULTS["perlin_mode"], choices=tuple(PERLIN_MODES), perlin=True),
    Field("perlin_strength", "Perlin strength", "slider", DEFAULTS["perlin_strength"], perlin=True),
    Field("perlin_scale", "Perlin scale", "slider", DEFAULTS["perlin_scale"], bounds=(1.0, 100.0, 0.5), perlin=True),
    Field("demofusion_tile", "DemoFusion tile", "slider", 512, bounds=(256, 2048, 64), demofusion=True,
          info="the model's native size in pixels: 512 for SD 1.x, 1024 for SDXL"),
)

#: The latent is this many times smaller than the image (every SD-family VAE).
LATENT_FACTOR = 8

#: How the accordion lays the fields out, row by row (every field exactly once).
ROWS: Tuple[Tuple[str, ...], ...] = (
    ("alpha_1", "blending_schedule", "blending_function"),
    ("start_blending_at_pct", "stop_blending_at_pct", "clamp_blending_at_pct"),
    ("blend_min", "blend_max"),
    ("preset", "rewind", "demofusion_tile"),
    ("perlin_mode", "perlin_strength", "perlin_scale"),
)


def infotext_key(field: Field) -> str:
    """The field's key in the infotext (PNG info): ``"Itermix <name>"``."""
    return f"Itermix {field.name}"


def api_name(field: Field) -> str:
    """The field's name for the HTTP API: ``"itermix_<name>"``."""
    return f"itermix_{field.name}"


def default_settings() -> Dict[str, Any]:
    """Every field at its default."""
    return {f.name: f.default for f in FIELDS}


def parse_value(field: Field, value: Any) -> Any:
    """One field's value from the UI, the API or pasted infotext (where numbers and
    booleans arrive as strings), checked against the field's kind."""
    if field.kind == "checkbox":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise TypeError(f"{api_name(field)} must be true or false, got {value!r}")
        return value
    if field.kind == "dropdown":
        if value not in field.choices:
            raise ValueError(f"{api_name(field)} must be one of {', '.join(field.choices)}; got {value!r}")
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise TypeError(f"{api_name(field)} must be a finite number, got {value!r}")
    return number


def settings_from_args(args: Sequence[Any]) -> Dict[str, Any]:
    """The settings from a script's arguments: the accordion's values in :data:`FIELDS`
    order (a shorter list keeps the later defaults), or, from the API, a dict keyed by
    API names as the first argument (``{"itermix_alpha_1": 3.0, ...}``; missing names keep
    their defaults; the webui fills the slots after it with the UI's defaults, ignored)."""
    if args and isinstance(args[0], dict):
        given = dict(args[0])
        unknown = sorted(set(given) - {api_name(f) for f in FIELDS})
        if unknown:
            raise ValueError(f"unknown Iterative Mixing field(s) {', '.join(unknown)}; accepted: "
                             f"{', '.join(api_name(f) for f in FIELDS)}")
        values = [given.get(api_name(f), f.default) for f in FIELDS]
    elif len(args) <= len(FIELDS):
        values = list(args) + [f.default for f in FIELDS[len(args):]]
    else:
        raise ValueError(f"Iterative Mixing takes at most {len(FIELDS)} values "
                         f"({', '.join(f.name for f in FIELDS)}), got {len(args)}")
    return {f.name: parse_value(f, v) for f, v in zip(FIELDS, values)}


def api_params(settings: Dict[str, Any]) -> Dict[str, Any]:
    """The settings keyed by API names: the dict form :func:`settings_from_args` accepts."""
    return {api_name(f): settings[f.name] for f in FIELDS}


def infotext_params(settings: Dict[str, Any], *, perlin: bool, demofusion: bool = False) -> Dict[str, Any]:
    """The infotext entries for ``p.extra_generation_params`` (the Perlin fields only
    when a Perlin sampler is in use, the DemoFusion ones only with the DemoFusion sampler)."""
    return {infotext_key(f): settings[f.name] for f in FIELDS
            if (perlin or not f.perlin) and (demofusion or not f.demofusion)}


def sampler_options(settings: Dict[str, Any], *, perlin: bool, seed: int) -> Dict[str, Any]:
    """The sampler keywords for these settings: every field but the Perlin and DemoFusion
    ones, then the preset's keywords on top (the demofusion preset sets noise, mix,
    schedule and alpha_1), then, for the Perlin sampler, the Perlin fields and the mask
    seed (A7)."""
    options = apply_preset(settings["preset"], {f.name: settings[f.name] for f in FIELDS
                                                if not (f.perlin or f.demofusion) and f.name != "preset"})
    if perlin:
        options.update({f.name: settings[f.name] for f in FIELDS if f.perlin})
        options["seed"] = seed
    return options


def check_settings(settings: Dict[str, Any]) -> None:
    """Raise ValueError/TypeError now for settings the sampler would reject later."""
    make_options(**sampler_options(settings, perlin=False, seed=0))
    check_perlin_keywords(**{f.name: settings[f.name] for f in FIELDS if f.perlin}, seed=0, perlin_per_row=False)
    tile = settings["demofusion_tile"]
    if tile < LATENT_FACTOR or tile % LATENT_FACTOR:
        raise ValueError(f"itermix_demofusion_tile must be a positive multiple of {LATENT_FACTOR} pixels, got {tile}")


def build_ui(gr: Any, is_img2img: bool) -> List[Any]:
    """The accordion's components, made with the webui's gradio module ``gr`` (passed in
    so that this package never imports gradio), returned in :data:`FIELDS` order."""
    tab = "img2img" if is_img2img else "txt2img"
    by_name = {f.name: f for f in FIELDS}
    made = {}
    with gr.Accordion(TITLE, open=False, elem_id=f"itermix_{tab}"):
        for row in ROWS:
            with gr.Row():
                for name in row:
                    made[name] = make_component(gr, by_name[name], f"itermix_{tab}_{name}")
    return [made[f.name] for f in FIELDS]


def make_component(gr: Any, field: Field, elem_id: str) -> Any:
    """One gradio control for ``field``, using only arguments gradio 3 and 4 both accept."""
    common = dict(value=field.default, label=field.label, elem_id=elem_id)
    if field.info:
        common["info"] = field.info
    if field.kind == "slider":
        minimum, maximum, step = field.bounds
        return gr.Slider(minimum=minimum, maximum=maximum, step=step, **common)
    if field.kind == "dropdown":
        return gr.Dropdown(choices=list(field.choices), **common)
    return gr.Checkbox(**common)


def infotext_fields(paste_field: Any, components: Sequence[Any]) -> List[Any]:
    """``Script.infotext_fields``: ``paste_field(component, "Itermix <name>", api="itermix_<name>")``
    for every component (``paste_field`` is the webui's ``infotext_utils.PasteField``)."""
    return [paste_field(c, infotext_key(f), api=api_name(f)) for f, c in zip(FIELDS, components)]
