# Quickstart: `make demo` and `make test` from a fresh clone. Both create the pinned
# environment when it is missing (tools/ensure_venv.sh keeps it under
# ~/.cache/itermix_kdiff/, keyed by a hash of requirements-dev.txt, and links .venv to it).
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export PYTHONPATH := $(CURDIR)

.PHONY: venv test demo bench bench-quick lint
venv:
	@tools/ensure_venv.sh

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) -m itermix_kdiff --out outputs/demo --overwrite --generate 2 --scale 4 --steps 20 --threads 2

bench: venv
	$(PY) -m benchmarks

bench-quick: venv
	$(PY) -m benchmarks --quick

lint: venv
	$(PY) -m ruff check .
