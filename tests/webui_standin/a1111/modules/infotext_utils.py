"""``modules.infotext_utils``: ``PasteField`` and reading the infotext back (docs/webui-api.md,
"Infotext and the HTTP API").

The stand-in's infotext is the webui's parameters line alone (``Key: value, ...``), with no
prompt lines above it; :func:`paste` does what "send to" and "read PNG info" do to a
script's components.
"""

import json


class PasteField(tuple):
    """``(component, target)``, plus ``api``, the field's name in the HTTP API. ``target``
    is an infotext key (``label``) or a function of the parsed infotext (``function``)."""

    def __new__(cls, component, target, *, api=None):
        field = super().__new__(cls, (component, target))
        field.component, field.api = component, api
        field.label = target if isinstance(target, str) else None
        field.function = target if callable(target) else None
        return field


def _pairs(text):
    """Each ``Key: value`` of a comma-separated line; a value in double quotes is a JSON
    string and may hold commas and colons."""
    position, decoder = 0, json.JSONDecoder()
    while position < len(text):
        colon = text.find(":", position)
        if colon < 0:
            return
        key = text[position:colon].strip()
        start = colon + 1
        while start < len(text) and text[start] == " ":
            start += 1
        if text.startswith('"', start):
            value, end = decoder.raw_decode(text, start)
            end = text.find(",", end)
        else:
            end = text.find(",", start)
            value = text[start:len(text) if end < 0 else end].strip()
        if key:
            yield key, value
        position = len(text) if end < 0 else end + 1


def parse_generation_parameters(x, skip_fields=None):
    """The infotext's ``Key: value`` pairs, every value a string, quoted ones unquoted."""
    skipped = set(skip_fields or ())
    return {key: value for key, value in _pairs(x) if key not in skipped}


def paste(params, paste_fields):
    """Give each field whose key ``params`` has the value, in the type of the component's
    current value (the infotext holds strings); leave the others as they are."""
    for field in paste_fields:
        if field.label not in params:
            continue
        current, text = field.component.value, params[field.label]
        if isinstance(current, bool):
            field.component.value = text == "True"
        elif isinstance(current, (int, float)):
            field.component.value = type(current)(float(text))
        else:
            field.component.value = text
