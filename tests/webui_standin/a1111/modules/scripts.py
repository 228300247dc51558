"""``modules.scripts``: ``Script``, loading script files and running their hooks
(docs/webui-api.md, "Scripts and the UI")."""

import importlib.util
import inspect
import os
from collections import namedtuple

AlwaysVisible = object()


class Script:
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    infotext_fields = None

    def title(self):
        raise NotImplementedError()

    def show(self, is_img2img):
        return True

    def ui(self, is_img2img):
        pass

    def process(self, p, *args):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass


ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "module"])
scripts_data = []


def load_module(path):
    """Execute a script file as a fresh module object (at start-up and on every "Reload UI")."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_scripts(paths):
    """Run each file and register every ``Script`` subclass in its namespace (``Script``
    itself included, had the file imported it by name)."""
    scripts_data.clear()
    for path in paths:
        module = load_module(path)
        for obj in module.__dict__.values():
            if inspect.isclass(obj) and issubclass(obj, Script):
                scripts_data.append(ScriptClassData(obj, path, module))


class ScriptRunner:
    def __init__(self):
        self.scripts = []
        self.alwayson_scripts = []
        self.selectable_scripts = []
        self.inputs = [None]  # inputs[0]: the index of the selected (non-always-visible) script
        self.infotext_fields = []
        self.is_img2img = False

    def initialize_scripts(self, is_img2img):
        self.is_img2img = is_img2img
        for data in scripts_data:
            script = data.script_class()
            script.filename = data.path
            script.is_txt2img = not is_img2img
            script.is_img2img = is_img2img
            script.title()
            visibility = script.show(is_img2img)
            if visibility == AlwaysVisible:
                script.alwayson = True
                self.scripts.append(script)
                self.alwayson_scripts.append(script)
            elif visibility:
                self.scripts.append(script)
                self.selectable_scripts.append(script)

    def setup_ui(self):
        """Build every script's controls; their values become ``p.script_args`` in order."""
        for script in self.alwayson_scripts:
            controls = script.ui(self.is_img2img) or []
            script.args_from = len(self.inputs)
            self.inputs.extend(controls)
            script.args_to = len(self.inputs)
            if script.infotext_fields is not None:
                self.infotext_fields.extend(script.infotext_fields)
        return self.inputs

    def script_args(self):
        """What the UI submits: the current value of every control."""
        return tuple(0 if c is None else c.value for c in self.inputs)

    def process(self, p):
        for script in self.alwayson_scripts:
            script.process(p, *p.script_args[script.args_from:script.args_to])

    def process_before_every_sampling(self, p, **kwargs):
        for script in self.alwayson_scripts:
            script.process_before_every_sampling(p, *p.script_args[script.args_from:script.args_to], **kwargs)
