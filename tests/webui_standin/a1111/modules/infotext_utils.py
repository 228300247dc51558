"""``modules.infotext_utils``: ``PasteField``, writing and reading the infotext, pasting
(docs/webui-api.md, "Infotext and the HTTP API")."""

import json
import re


class PasteField(tuple):
    """``(component, target)``, plus ``api``: the field's name in the HTTP API."""

    def __new__(cls, component, target, *, api=None):
        self = super().__new__(cls, (component, target))
        self.component = component
        self.label = target
        self.api = api
        return self


def quote(value):
    text = str(value)
    if "," not in text and ":" not in text and '"' not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def create_infotext(params):
    """``"Key: value, Key: value"``; None values are left out."""
    return ", ".join(f"{k}: {quote(v)}" for k, v in params.items() if v is not None)


FIELD_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_generation_parameters(text):
    """The infotext's ``Key: value`` pairs, values as strings (quoted ones unquoted)."""
    result = {}
    for key, value in FIELD_RE.findall(text):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = json.loads(value)
        result[key.strip()] = value
    return result


def paste(params, paste_fields):
    """"Send to" / "read PNG info": each field whose key is in ``params`` gets the value,
    converted to the type of the component's current value; others keep theirs."""
    for field in paste_fields:
        if field.label not in params:
            continue
        value, current = params[field.label], field.component.value
        if isinstance(current, bool):
            value = value == "True"
        elif isinstance(current, (int, float)):
            value = type(current)(float(value))
        field.component.value = value
