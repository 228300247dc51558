"""A minimal stand-in for gradio (not installed in the tests; docs/webui-api.md, "Gradio"):
the layout blocks and components the extension builds, with the keyword arguments gradio
3.41 (A1111) and gradio 4 (Forge) both accept; anything else raises TypeError. Components record the
block they were made in, and keep their current ``value``."""

_open_blocks = []


def _parent():
    return _open_blocks[-1] if _open_blocks else None


class Block:
    def __init__(self, *, elem_id=None, visible=True):
        self.elem_id = elem_id
        self.visible = visible
        self.children = []
        self.parent = _parent()
        if self.parent is not None:
            self.parent.children.append(self)

    def __enter__(self):
        _open_blocks.append(self)
        return self

    def __exit__(self, *exc):
        _open_blocks.pop()
        return False


class Accordion(Block):
    def __init__(self, label=None, *, open=True, elem_id=None, visible=True):
        super().__init__(elem_id=elem_id, visible=visible)
        self.label = label
        self.open = open


class Row(Block):
    pass


class Column(Block):
    pass


class Component(Block):
    def __init__(self, value=None, *, label=None, info=None, elem_id=None, visible=True, interactive=None):
        super().__init__(elem_id=elem_id, visible=visible)
        self.value = value
        self.label = label
        self.info = info
        self.interactive = interactive


class Slider(Component):
    def __init__(self, minimum=0, maximum=100, value=None, *, step=None, **kwargs):
        value = minimum if value is None else value
        if not minimum <= value <= maximum:
            raise ValueError(f"Slider value {value} outside [{minimum}, {maximum}]")
        super().__init__(value, **kwargs)
        self.minimum, self.maximum, self.step = minimum, maximum, step


class Dropdown(Component):
    def __init__(self, choices=None, value=None, *, multiselect=None, **kwargs):
        choices = list(choices or [])
        if value is not None and value not in choices:
            raise ValueError(f"Dropdown value {value!r} not among its choices {choices}")
        super().__init__(value, **kwargs)
        self.choices = choices


class Checkbox(Component):
    def __init__(self, value=False, **kwargs):
        super().__init__(bool(value), **kwargs)
