"""``modules.scripts``: the ``Script`` base class, loading script files and calling their
hooks (docs/webui-api.md, "Scripts and the UI").

A script file's scripts are the ``Script`` subclasses its namespace holds once it has run.
The components of the always-on scripts' ``ui`` are laid end to end after a first slot
(the index of the selected dropdown script, always 0 here); each script receives its own
range of the values as positional arguments. Unlike the webui, which logs a failing hook
and goes on, the stand-in lets the exception through.
"""

import importlib.util
import inspect
import os
from collections import namedtuple

AlwaysVisible = object()  # what show() returns for an always-on script


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


ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data = []


def _run_file(path):
    """The script file executed as a new module (at start-up and again on "Reload UI")."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_scripts(paths):
    """Replace ``scripts_data`` with the scripts of the files ``paths`` (the webui finds its
    files itself)."""
    scripts_data.clear()
    for path in paths:
        module = _run_file(path)
        scripts_data.extend(ScriptClassData(value, path, os.path.dirname(path), module)
                            for value in vars(module).values()
                            if inspect.isclass(value) and issubclass(value, Script))


class ScriptRunner:
    def __init__(self):
        self.scripts = []
        self.alwayson_scripts = []
        self.selectable_scripts = []
        self.inputs = [None]  # slot 0: the dropdown's selected script
        self.infotext_fields = []
        self.is_img2img = False

    def initialize_scripts(self, is_img2img):
        self.is_img2img = is_img2img
        for data in scripts_data:
            script = data.script_class()
            script.filename = data.path
            script.is_img2img, script.is_txt2img = is_img2img, not is_img2img
            shown = script.show(is_img2img)
            if not shown:
                continue
            script.alwayson = shown is AlwaysVisible
            self.scripts.append(script)
            (self.alwayson_scripts if script.alwayson else self.selectable_scripts).append(script)

    def setup_ui(self):
        """Build the always-on scripts' components; returns all inputs."""
        for script in self.alwayson_scripts:
            components = list(script.ui(self.is_img2img) or ())
            script.args_from, script.args_to = len(self.inputs), len(self.inputs) + len(components)
            self.inputs.extend(components)
            self.infotext_fields.extend(script.infotext_fields or ())
        return self.inputs

    def script_args(self):
        """What the UI would submit as ``p.script_args``: each input's current value."""
        return tuple(0 if component is None else component.value for component in self.inputs)

    def _own_args(self, p, script):
        return p.script_args[script.args_from:script.args_to]

    def process(self, p):
        for script in self.alwayson_scripts:
            script.process(p, *self._own_args(p, script))

    def process_before_every_sampling(self, p, **kwargs):
        for script in self.alwayson_scripts:
            script.process_before_every_sampling(p, *self._own_args(p, script), **kwargs)
