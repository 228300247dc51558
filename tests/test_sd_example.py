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


README = Path(__file__).resolve().parents[1] / "README.md"
#: What the README's block runs on a real SD 1.5 file, and what it runs here instead (each must
#: appear exactly once: a README edit that drops one fails here, not silently)
README_SUBSTITUTIONS = (
    ('"v1-5-pruned-emaonly.safetensors", device="cuda", dtype="fp16"', "TINY, config=CONFIG"),
    ('m.get_sigmas("karras", 20)', 'm.get_sigmas("karras", STEPS)'),
    ("int(20 * 0.85)", "int(STEPS * 0.85)"),
)


def readme_sd_block() -> str:
    """The python block of the README's "SD checkpoints" section."""
    text = README.read_text()
    section = text.split("\n## SD checkpoints\n", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```python\n")[1:]
    assert len(blocks) == 1, "the SD checkpoints section should hold one python block"
    return blocks[0].split("```", 1)[0]


def test_readme_block_runs_and_equals_the_script(tmp_path):
    """The README's library example, run on the tiny SD 1.x file (paths, device, dtype and step
    count substituted), gives the same 2x picture, pixel for pixel, as scripts/example_sd.py with
    the README's prompt, negative prompt, guidance and seed: the two stay the same recipe."""
    from PIL import Image

    code = readme_sd_block()
    for old, new in README_SUBSTITUTIONS:
        assert code.count(old) == 1, f"the README's SD example no longer holds {old!r}"
        code = code.replace(old, new)
    tiny = tiny_checkpoint("sd1")
    steps = 4
    namespace = {"TINY": str(tiny.path), "CONFIG": str(tiny.config), "STEPS": steps}
    exec(compile(code, "README.md (SD checkpoints)", "exec"), namespace)
    image = namespace["image"]
    assert image.shape == (1, 3, 128, 128) and bool(image.isfinite().all())
    script = _load_script()
    script.save(image, tmp_path / "readme.png")
    script.main(["--checkpoint", str(tiny.path), "--config", str(tiny.config), "--steps", str(steps),
                 "--prompt", "a castle on a hill", "--negative-prompt", "blurry", "--cfg-scale", "7.5",
                 "--seed", "0", "--out", str(tmp_path / "script")])
    readme_png = np.asarray(Image.open(tmp_path / "readme.png"))
    script_png = np.asarray(Image.open(tmp_path / "script" / "itermix_2x.png"))
    assert np.array_equal(readme_png, script_png), "README.md's SD example and scripts/example_sd.py differ"
