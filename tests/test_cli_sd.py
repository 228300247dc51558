"""``itermix-upscale --checkpoint`` on Stable Diffusion checkpoints: the tiny random-weight SD
files of :mod:`tests.tiny_sd` (with their diffusers config folders) through the whole CLI run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from itermix_kdiff import cli, pipeline, sample_itermix_euler
from itermix_kdiff.sd import load_sd
from tests.tiny_sd import one_thread, tiny_checkpoint

PROMPT = "a castle on a hill"


@pytest.fixture(scope="module", autouse=True)
def _threads():
    yield from one_thread()


def sd_args(tiny, out, *more):
    return ["--out", str(out), "--checkpoint", str(tiny.path), "--config", str(tiny.config), "--prompt", PROMPT,
            "--steps", "2", "--quiet", *more]


def run_cli(argv, capsys):
    try:
        status = cli.main(argv)
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


def pixels(path):
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def source_image(tmp_path_factory):
    """A 64x64 picture (the tiny models' native size) to start from."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    image = torch.stack([x, y, (x * y).sin()])[None]
    path = tmp_path_factory.mktemp("input") / "castle.png"
    pipeline.tensor_to_image(image[0]).save(path)
    return path


def test_input_run_writes_every_file_and_repeats(tmp_path, capsys, source_image):
    tiny = tiny_checkpoint("sd1")
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        assert cli.main(sd_args(tiny, out, "--input", str(source_image), "--seed", "3")) == 0
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["status"] == "done"
    assert record["model"]["kind"] == "stable diffusion"
    assert record["model"]["family"] == "sd1" and record["model"]["prediction_type"] == "epsilon"
    assert record["settings"]["prompt"] == PROMPT and record["settings"]["cfg_scale"] == 7.5
    assert record["stages"][0]["size"] == [128, 128] and record["stages"][0]["latent_size"] == [16, 16]
    names = sorted(p.name for p in runs[0].iterdir())
    assert names == sorted(record["files"])
    for kind in ("upscaled", "itermix", "cleanup", "hires"):
        assert f"stage1_128_{kind}_00.png" in names
    assert "base_64_00.png" in names and "comparison.png" in names
    for name in names:
        if name.endswith(".png"):
            assert np.array_equal(pixels(runs[0] / name), pixels(runs[1] / name)), name
    assert all(math_ok(v) for metrics in record["metrics"].values() for v in metrics.values())

    # the itermix picture is the library's steps put together by hand: VAE encode (mode), 2x
    # bicubic latent upscale, sample_itermix_euler seeded with the stage's itermix seed, decode
    m = load_sd(tiny.path, config=tiny.config)
    image = pipeline.load_images([source_image], 8)
    latent = F.interpolate(m.encode(image), scale_factor=2, mode="bicubic", align_corners=False)
    sigmas = m.get_sigmas("karras", 2)
    seed = pipeline.stage_seeds(3, 1)["stage1"]["itermix"]
    x = sample_itermix_euler(m.denoiser, latent, sigmas, extra_args=m.conditioning(PROMPT, "", 7.5, 128, 128),
                             generator=torch.Generator().manual_seed(seed), disable=True)
    expected = np.asarray(pipeline.tensor_to_image(m.decode(x)[0]))
    assert np.array_equal(pixels(runs[0] / "stage1_128_itermix_00.png"), expected)


def math_ok(value):
    return isinstance(value, float) and np.isfinite(value)


def test_sdxl_generation_conditions_each_stage_on_its_size(tmp_path, capsys):
    tiny = tiny_checkpoint("sdxl")
    out = tmp_path / "xl"
    assert cli.main(sd_args(tiny, out, "--generate", "2", "--scale", "4", "--width", "48", "--height", "64")) == 0
    record = json.loads((out / "run.json").read_text())
    assert [s["size"] for s in record["stages"]] == [[128, 96], [256, 192]]
    assert "base_48_01.png" in record["files"] and "stage2_192_cleanup_01.png" in record["files"]
    assert Image.open(out / "stage2_192_cleanup_01.png").size == (192, 256)

    m = load_sd(tiny.path, config=tiny.config)
    model = pipeline.LoadedModel(m.denoiser, None, 0, (), None, tiny.path, sd=m)
    args = cli.build_parser().parse_args(sd_args(tiny, out))
    args.negative_prompt, args.cfg_scale = "blurry", 5.0
    conditioning = cli.stage_conditioning(args, model)
    extra = conditioning((32, 24))
    assert extra["time_ids"].tolist() == [[256.0, 192.0, 0.0, 0.0, 256.0, 192.0]]
    assert extra["cond_scale"] == 5.0
    same = m.conditioning(PROMPT, "blurry", 5.0, width=192, height=256)
    assert all(torch.equal(extra[k], same[k]) for k in ("cond", "uncond", "pooled", "uncond_pooled"))
    assert conditioning((32, 24)) is extra  # encoded once per size


@pytest.mark.parametrize("flags, message", [
    ([], "needs --prompt"),
    (["--prompt", "x", "--scene", "0"], "--scene renders the demo model's shapes"),
    (["--prompt", "x", "--class", "disk"], "takes --prompt"),
    (["--prompt", "x", "--width", "100"], "--width must be a multiple of 8"),
    (["--prompt", "x", "--vae-tile", "30"], "--vae-tile must be a multiple of 8"),
])
def test_sd_flags_are_checked_before_the_weights_load(tmp_path, capsys, monkeypatch, flags, message):
    tiny = tiny_checkpoint("sd1")
    monkeypatch.setattr(pipeline, "load_sd_model", lambda *a, **k: pytest.fail("weights loaded"))
    argv = ["--out", str(tmp_path / "o"), "--checkpoint", str(tiny.path), "--config", str(tiny.config), *flags]
    status, err = run_cli(argv, capsys)
    assert status == 2 and message in err


def test_sd_config_must_be_a_folder_and_input_keeps_its_size(tmp_path, capsys, source_image):
    tiny = tiny_checkpoint("sd1")
    config = tmp_path / "model.json"
    config.write_text("{}")
    base = ["--out", str(tmp_path / "o"), "--checkpoint", str(tiny.path), "--prompt", "x"]
    status, err = run_cli([*base, "--config", str(config)], capsys)
    assert status == 2 and "a diffusers config folder" in err
    status, err = run_cli([*base, "--input", str(source_image), "--width", "64"], capsys)
    assert status == 2 and "keeps its own size" in err


def test_sd_flags_are_refused_for_the_demo_model(tmp_path, capsys):
    status, err = run_cli(["--out", str(tmp_path / "o"), "--prompt", "a castle", "--dtype", "float16"], capsys)
    assert status == 2 and "--prompt, --dtype: only for a Stable Diffusion --checkpoint" in err


def test_input_sides_must_suit_the_vae(tmp_path, capsys):
    tiny = tiny_checkpoint("sd1")
    odd = tmp_path / "odd.png"
    Image.new("RGB", (60, 64)).save(odd)
    status, err = run_cli(sd_args(tiny, tmp_path / "o", "--input", str(odd)), capsys)
    assert status == 2 and "multiples of 8" in err
