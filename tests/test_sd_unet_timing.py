"""scripts/time_sd_unet.py (the GPU timing of a random-weight SD 1.5 UNet step, with and without
mixing): its refusals, and a CPU smoke run on the tiny SD 1.x config (latents 8x8)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from tests.tiny_sd import one_thread, tiny_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "time_sd_unet.py"


@pytest.fixture(scope="module", autouse=True)
def _threads():
    yield from one_thread()


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("time_sd_unet", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refusals(script):
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="CUDA is not available.*--device cpu --latent 8"):
            script.main([])
    with pytest.raises(SystemExit, match="at most 16"):
        script.main(["--device", "cpu", "--latent", "128"])


def test_cpu_smoke_run(script, tmp_path, capsys):
    tiny = tiny_checkpoint("sd1")
    out = tmp_path / "step.json"
    result = script.main(["--device", "cpu", "--latent", "8", "--config", str(tiny.config), "--steps", "3",
                          "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["latent"] == [1, 4, 8, 8] and saved["dtype"] == "float32" and saved["repeats"] == 1
    assert saved["baseline_calls"] == 3 and saved["candidate_calls"] == 2  # cosine: step 0's call skipped
    for key in ("euler_s_per_step", "itermix_s_per_step", "euler_s_per_call", "itermix_s_per_call", "ratio"):
        assert math.isfinite(saved[key]) and saved[key] > 0, key
    assert saved["unet_parameters"] == sum(p.numel() for p in tiny.models["unet"].parameters())
    assert result["peak_memory_bytes"] is None
    assert "itermix / euler:" in capsys.readouterr().out
