"""Run by the webui at start-up, in its own Python: make ``itermix_kdiff`` importable.

Installs the repository this folder belongs to with ``pip install --no-deps``: the
package is pure Python and needs only torch, which the webui already has. No
dependency resolution means pip never touches the webui's torch and never pulls the
PyPI k-diffusion or its training dependencies (the webui's own k_diffusion is used).
A real install (rather than adding the repository to sys.path) leaves the package
importable whatever order the webui loads extensions in. It reinstalls when the
checkout's version differs from the installed one.
"""

import configparser
import importlib.metadata
import os

import launch

PACKAGE = "itermix_kdiff"
# realpath: a symlinked extension folder still finds its repository.
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
            print(f"[sd-webui-itermix] {PACKAGE} is not installed and this folder is not inside its "
                  f"repository; run: <webui python> -m pip install --no-deps <path to itermix_kdiff>")
        return
    if have != wanted:
        launch.run_pip(f'install --no-deps "{REPO}"', f"{PACKAGE} {wanted} for sd-webui-itermix")


main()
