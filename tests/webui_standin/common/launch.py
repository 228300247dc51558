"""Stand-in for the webui's ``launch`` module as an extension's install.py uses it
(docs/webui-api.md, "The extension folder"): ``run_pip`` only records the pip command
line it would run."""

pip_calls = []


def run_pip(command, desc=None, live=False):
    pip_calls.append((command, desc))
