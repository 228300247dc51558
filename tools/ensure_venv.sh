#!/usr/bin/env bash
# Create (once) the pinned environment under ~/.cache/itermix_kdiff/, keyed by a
# hash of requirements-dev.txt and the Python version, and point ./.venv at it.
# A fresh clone reuses an existing environment; a change to the pins builds anew.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
key=$( (cat requirements-dev.txt; "$PY" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
root=${ITERMIX_CACHE:-$HOME/.cache/itermix_kdiff}
env="$root/venv-$key"
mkdir -p "$root"
# one builder at a time: `make demo` and `make test` may start together
exec 9>"$root/.lock"
flock 9
if [ ! -f "$env/.complete" ]; then
    echo "creating environment $env (several GB, a few minutes)" >&2
    rm -rf "$env"
    "$PY" -m venv "$env"
    "$env/bin/python" -m pip install -q --upgrade "pip<26"
    "$env/bin/python" -m pip install -q -r requirements-dev.txt
    touch "$env/.complete"
fi
if [ "$(readlink .venv 2>/dev/null)" != "$env" ]; then
    rm -rf .venv
    ln -s "$env" .venv
fi
