"""Run by ComfyUI-Manager after it installs this folder, in ComfyUI's Python: make
``itermix_kdiff`` importable.

Installs the repository this folder belongs to with ``pip install --no-deps``: the package is
pure Python and needs only torch, which ComfyUI already has, so pip resolves nothing and never
touches ComfyUI's torch (and never installs the unrelated PyPI package named ``comfy``, which
would shadow ComfyUI's own ``comfy`` package). Reinstalls when the checkout's version differs
from the installed one.
"""

import configparser
import importlib.metadata
import os
import subprocess
import sys

PACKAGE = "itermix_kdiff"
# realpath: a symlinked folder still finds its repository.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def repo_version(repo):
    """The version in the repository's setup.cfg, or None when this folder is not inside one."""
    if not os.path.isfile(os.path.join(repo, PACKAGE, "__init__.py")):
        return None
    config = configparser.ConfigParser()
    config.read(os.path.join(repo, "setup.cfg"))
    return config.get("metadata", "version", fallback=None)


def installed_version():
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def main():
    wanted, have = repo_version(REPO), installed_version()
    if wanted is None:
        if have is None:
            print(f"[comfyui-itermix] {PACKAGE} is not installed and this folder is not inside its repository; "
                  f"run: <ComfyUI python> -m pip install --no-deps <path to itermix_kdiff>")
        return
    if have != wanted:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-deps", REPO])


if __name__ == "__main__":
    main()
