"""scripts/example_sd.py (the README's library example) on the tiny SD 1.x checkpoint: base at
the native size, 2x latent upscale, itermix, cleanup, decode; the same seed gives the same PNGs."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_sd import one_thread, tiny_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "example_sd.py"


@pytest.fixture(scope="module", autouse=True)
def _threads():
    yield from one_thread()


def _load_script():
    spec = importlib.util.spec_from_file_location("example_sd", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_and_repeats(tmp_path, capsys):
    from PIL import Image

    tiny = tiny_checkpoint("sd1")
    script = _load_script()
    pictures = []
    for run in ("a", "b"):
        script.main(["--checkpoint", str(tiny.path), "--config", str(tiny.config), "--steps", "4",
                     "--out", str(tmp_path / run)])
        base, big = Image.open(tmp_path / run / "base.png"), Image.open(tmp_path / run / "itermix_2x.png")
        assert base.size == (64, 64) and big.size == (128, 128)
        pictures.append((np.asarray(base), np.asarray(big)))
    assert "itermix_2x.png (128x128)" in capsys.readouterr().out
    assert all(np.array_equal(a, b) for a, b in zip(*pictures))
    assert pictures[0][1].std() > 0      # a picture, not a constant
