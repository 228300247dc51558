"""The ``itermix-upscale`` CLI and the pipeline functions behind it (itermix_kdiff.cli, .pipeline).

The full run uses the shipped demo model at tiny settings (one image, 3 steps, 32 -> 64);
the error and determinism tests use a tiny model of the demo's architecture written to a
real safetensors file here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from itermix_kdiff import cli, pipeline
from itermix_kdiff.demo import metrics, shapes, train
from itermix_kdiff.options import ItermixOptions


def export_tiny(directory: Path, channels=(8, 8), seed: int = 0):
    """A real k-diffusion image_v1 model of the demo's kind (class-conditional, RGB), tiny,
    exported as the shipped one is (fp16 safetensors and a config JSON)."""
    config = train.demo_config(channels=channels, depths=(1, 1), mapping_out=16)
    model, _, _ = train.build(config, seed)
    return train.export_inference(model.inner_model.state_dict(), config, directory / f"tiny_{channels[0]}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("tiny"))


def run_cli(argv, capsys):
    """``main(argv)``; returns (exit status, stderr)."""
    try:
        status = cli.main(argv)
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


def tiny_args(tiny, out, *more):
    config, checkpoint = tiny
    return ["--out", str(out), "--config", str(config), "--checkpoint", str(checkpoint), "--quiet",
            "--threads", "1", *more]


# ---------------------------------------------------------------- the full run


def test_three_step_run_on_the_shipped_model_writes_every_promised_file(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--out", str(out), "--generate", "1", "--steps", "3", "--seed", "5", "--cfg", "2",
            "--alpha-1", "1.5", "--cleanup-denoise", "0.4", "--hires-denoise", "0.5", "--quiet", "--threads", "1"]
    assert cli.main(argv) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == ["itermix-upscale", *argv]
    s = record["settings"]
    assert (s["steps"], s["scale"], s["seed"], s["cfg_scale"], s["scheduler"]) == (3, 2, 5, 2.0, "karras")
    assert (s["sampler"], s["preset"]) == ("euler", "reference")
    assert (s["cleanup_denoise"], s["hires_denoise"], s["upscale"]) == (0.4, 0.5, "bicubic")
    assert record["options"]["alpha_1"] == 1.5
    assert set(record["options"]) == set(ItermixOptions.__dataclass_fields__) - {"generator", "denoise_mask_fn"}
    assert record["model"]["checkpoint"].endswith("shapes_32.safetensors")
    assert record["seeds"] == {"base": 5, "stage1": {"itermix": 106, "cleanup": 107, "hires": 108}}
    assert len(record["sigmas"]) == 4 and record["sigmas"][-1] == 0
    assert len(record["c1"]) == 3 and record["c1"][0] == 0
    assert record["labels"] == [record["model"]["classes"][0]]
    assert record["stages"][0]["size"] == [64, 64]
    assert set(record["stages"][0]["seconds"]) == {"upscale", "itermix", "cleanup", "hires"}
    assert record["timings"]["total"] > 0
    expected = {"base_32_00.png", "plain_bicubic_64_00.png", "comparison.png", "run.json"} | {
        f"stage1_64_{kind}_00.png" for kind in ("upscaled", "itermix", "cleanup", "hires")}
    assert set(record["files"]) == expected
    assert {p.name for p in out.iterdir()} == expected
    assert Image.open(out / "base_32_00.png").size == (32, 32)
    for kind in ("upscaled", "itermix", "cleanup", "hires"):
        assert Image.open(out / f"stage1_64_{kind}_00.png").size == (64, 64)
    sheet = Image.open(out / "comparison.png")
    assert sheet.width > 5 * 64 and sheet.height > 64  # five labelled columns, one row
    assert set(record["metrics"]) == {"base 32px", "plain bicubic", "hires-fix img2img", "itermix euler",
                                      "itermix + cleanup"}
    assert all(math.isfinite(v) for m in record["metrics"].values() for v in m.values())


def test_the_same_command_twice_gives_identical_pngs(tiny, tmp_path, capsys):
    extra = ["--generate", "2", "--steps", "4", "--scale", "4", "--seed", "3", "--sampler", "euler_perlin",
             "--upscale", "bislerp"]
    for name in ("a", "b"):
        assert cli.main(tiny_args(tiny, tmp_path / name, *extra)) == 0
    files = sorted(p.name for p in (tmp_path / "a").glob("*.png"))
    assert len(files) == 2 * 10 + 1  # base, plain, 2 stages x 4 kinds, per image; the sheet
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert cli.main(tiny_args(tiny, tmp_path / "c", *extra[:-5], "7", *extra[-4:])) == 0
    assert (tmp_path / "c" / files[0]).read_bytes() != (tmp_path / "a" / files[0]).read_bytes()


def test_scene_source_records_ground_truth_metrics(tiny, tmp_path, capsys):
    out = tmp_path / "scene"
    argv = tiny_args(tiny, out, "--scene", "11", "--count", "2", "--steps", "2", "--preset", "demofusion")
    assert cli.main(argv) == 0
    record = json.loads((out / "run.json").read_text())
    truth, labels = shapes.render(range(2), 64, seed=11)
    assert record["source"] == {"kind": "scene", "dataset_seed": 11, "scenes": [0, 1]}
    assert record["labels"] == [shapes.CLASSES[i] for i in labels.tolist()]
    assert record["options"]["mix"] == "before_step" and record["options"]["noise"] == "shared"
    saved_truth = pipeline.image_to_tensor(Image.open(out / "truth_64_00.png"))
    assert (saved_truth - truth[0]).abs().max() <= 1 / 127.5 + 1e-6
    saved = torch.stack([pipeline.image_to_tensor(Image.open(out / f"stage1_64_cleanup_{i:02d}.png"))
                         for i in range(2)])
    # run.json has the PSNR of the float images; the PNGs are rounded to 8 bits
    expected = metrics.psnr(saved, truth).mean().item()
    assert record["metrics"]["itermix + cleanup"]["psnr_to_truth"] == pytest.approx(expected, abs=0.05)
    assert "psnr_to_truth" not in record["metrics"]["ground truth"]


def test_input_images_run_unconditional_unless_a_class_is_given(tiny, tmp_path, capsys):
    image = Image.new("RGB", (16, 8), (200, 30, 30))
    image.save(tmp_path / "in.png")
    assert cli.main(tiny_args(tiny, tmp_path / "u", "--input", str(tmp_path / "in.png"), "--steps", "2")) == 0
    record = json.loads((tmp_path / "u" / "run.json").read_text())
    assert record["labels"] is None and record["stages"][0]["size"] == [16, 32]
    assert cli.main(tiny_args(tiny, tmp_path / "c", "--input", str(tmp_path / "in.png"), "--steps", "2",
                              "--class", "ring")) == 0
    assert json.loads((tmp_path / "c" / "run.json").read_text())["labels"] == ["ring"]


# ---------------------------------------------------------------- errors


def test_missing_files_are_named(tiny, tmp_path, capsys):
    status, err = run_cli(tiny_args(tiny, tmp_path / "o", "--input", str(tmp_path / "nope.png")), capsys)
    assert status == 2 and "input image not found" in err and "nope.png" in err
    argv = ["--out", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "gone.safetensors")]
    status, err = run_cli(argv, capsys)
    assert status == 2 and "not found" in err and "gone.safetensors" in err
    with pytest.raises(FileNotFoundError, match="model config not found"):
        pipeline.load_model(tmp_path / "none.json", tiny[1])


def test_pickle_checkpoint_is_refused(tiny, tmp_path, capsys):
    import safetensors.torch

    state = safetensors.torch.load_file(str(tiny[1]))
    torch.save(state, tmp_path / "model.ckpt")
    with pytest.raises(ValueError, match="safetensors"):
        pipeline.load_model(tiny[0], tmp_path / "model.ckpt")
    status, err = run_cli(tiny_args((tiny[0], tmp_path / "model.ckpt"), tmp_path / "o"), capsys)
    assert status == 2 and "must be a .safetensors file" in err


def test_config_that_does_not_match_the_checkpoint(tiny, tmp_path, capsys):
    other_config, _ = export_tiny(tmp_path, channels=(16, 16))
    with pytest.raises(ValueError, match="does not match") as e:
        pipeline.load_model(other_config, tiny[1])
    assert "of another shape" in str(e.value) and "checkpoint [8" in str(e.value)
    deeper = json.loads(Path(tiny[0]).read_text())
    deeper["model"]["depths"] = [1, 1, 1]
    deeper["model"]["channels"] = [8, 8, 8]
    deeper["model"]["self_attn_depths"] = [False] * 3
    (tmp_path / "deeper.json").write_text(json.dumps(deeper))
    status, err = run_cli(tiny_args((tmp_path / "deeper.json", tiny[1]), tmp_path / "o"), capsys)
    assert status == 2 and "does not match" in err and "missing from the checkpoint" in err
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        pipeline.load_model(tmp_path / "bad.json", tiny[1])


@pytest.mark.parametrize("mode, size, message", [
    ("CMYK", (32, 32), "has mode 'CMYK'"),
    ("I;16", (32, 32), "has mode 'I;16'"),
    ("RGBA", (32, 32), "transparent pixels"),
    ("RGB", (31, 32), "multiples of 2"),
])
def test_input_image_of_the_wrong_mode_or_size(tiny, tmp_path, capsys, mode, size, message):
    image = Image.new(mode, size)
    path = tmp_path / ("in.tiff" if mode == "CMYK" else "in.png")
    image.save(path)
    status, err = run_cli(tiny_args(tiny, tmp_path / "o", "--input", str(path)), capsys)
    assert status == 2 and message in err


def test_images_of_different_sizes_are_refused(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (16, 8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="one size"):
        pipeline.load_images([tmp_path / "a.png", tmp_path / "b.png"])


def test_accepted_image_modes_convert_to_rgb(tmp_path):
    grey = Image.new("L", (4, 2), 255)
    opaque = Image.new("RGBA", (4, 2), (0, 255, 0, 255))
    assert torch.equal(pipeline.image_to_tensor(grey), torch.ones(3, 2, 4))
    assert pipeline.image_to_tensor(opaque)[:, 0, 0].tolist() == [-1.0, 1.0, -1.0]


@pytest.mark.parametrize("flags, message", [
    (["--alpha-1", "-1"], "--alpha-1 must be >= 0.0"),
    (["--blending-schedule", "wavy"], "invalid choice: 'wavy'"),
    (["--stop-blending-at-pct", "0.1", "--steps", "5"], "leaves zero blending steps"),
    (["--rewind", "--rewind-min", "0.9", "--rewind-max", "0.5"], "--rewind-min must be < --rewind-max"),
    (["--sampler", "euler_ancestral", "--s-churn", "1"], "--s-churn is not an option of sampler euler_ancestral"),
    (["--sampler-arg", "bogus=1"], "takes perlin_mode"),
    (["--cleanup-denoise", "1.5"], "argument --cleanup-denoise: must be in [0.0, 1.0], got 1.5"),
    (["--config", "x.json"], "--config needs --checkpoint"),
    (["--blend-min", "0.8", "--blend-max", "0.2"], "--blend-min must be <= --blend-max"),
    (["--blending-schedule", "linear", "--start-blending-at-pct", "1"], "--start-blending-at-pct must be < 1"),
    (["--steps", "1"], "every c1 is 0 for this run of 1 step(s) (--steps 1: the cosine schedule's c1 starts at 0"),
    (["--steps", "1", "--blending-schedule", "linear"], "(--steps 1: the linear schedule's c1 starts at 0"),
    (["--blend-max", "0"], "every c1 is 0 for this run of 30 step(s) (--blend-max=0)"),
    (["--alpha-1", "1e6"], "(--alpha-1=1000000.0 with the cosine schedule)"),
])
def test_bad_flags_are_argparse_errors(tmp_path, capsys, flags, message):
    argv = ["--out", str(tmp_path / "o"), *flags]
    if "--sampler-arg" in flags:
        argv += ["--sampler", "euler_perlin"]
    status, err = run_cli(argv, capsys)
    assert status == 2 and message in err
    assert not (tmp_path / "o").exists()


def test_every_mixing_option_is_a_flag():
    parser = cli.build_parser()
    dests = {a.dest for a in parser._actions}
    for name in ItermixOptions.__dataclass_fields__:
        assert name in dests or name in cli.NOT_FLAGS, name
    args = parser.parse_args(["--out", "o", "--preset", "demofusion", "--alpha-1", "2", "--no-lazy",
                              "--clamp-blending-at-pct", "0.8", "--schedule-steps", "40"])
    options = cli.resolve_options(args)
    assert options == {"noise": "shared", "mix": "before_step", "blending_schedule": "demofusion", "alpha_1": 2.0,
                       "lazy": False, "clamp_blending_at_pct": 0.8, "schedule_steps": 40}
    assert cli.resolve_options(parser.parse_args(["--out", "o"])) == {}


def test_sampler_args_are_parsed_and_passed(tiny, tmp_path, capsys):
    argv = tiny_args(tiny, tmp_path / "o", "--sampler", "euler_perlin", "--sampler-arg", "perlin_mode=latents",
                     "--sampler-arg", "perlin_strength=0.5", "--steps", "2", "--generate", "1")
    assert cli.main(argv) == 0
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    assert record["settings"]["sampler_args"] == {"perlin_mode": "latents", "perlin_strength": 0.5}
    assert cli.parse_value("3") == 3 and cli.parse_value("true") is True and cli.parse_value("x") == "x"


# ---------------------------------------------------------------- pipeline pieces


def test_bislerp_slerps_between_bilinear_taps():
    a = torch.tensor([1.0, 0.0, 0.0])
    b = torch.tensor([0.0, 2.0, 0.0])
    x = torch.stack([a, b], dim=1).view(1, 3, 1, 2)  # a 1x2 image of two orthogonal colours
    out = pipeline.bislerp(x, 1, 4)
    # half-pixel taps: positions max(-0.25, 0), 0.25, 0.75, 1.25 -> ratios 0, 0.25, 0.75, (edge) 0
    for j, r in ((1, 0.25), (2, 0.75)):
        direction = torch.tensor([math.cos(r * math.pi / 2), math.sin(r * math.pi / 2), 0.0])
        expected = direction * (1 * (1 - r) + 2 * r)
        torch.testing.assert_close(out[0, :, 0, j], expected)
    torch.testing.assert_close(out[0, :, 0, 0], a)
    torch.testing.assert_close(out[0, :, 0, 3], b)


def test_bislerp_keeps_flat_images_and_dtype():
    x = torch.full((2, 3, 4, 5), 0.3, dtype=torch.float16)
    out = pipeline.bislerp(x, 8, 10)
    assert out.shape == (2, 3, 8, 10) and out.dtype == torch.float16
    assert torch.equal(out, torch.full_like(out, 0.3))
    y = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    up = pipeline.upscale(y, (8, 8), "bislerp")
    assert torch.isfinite(up).all() and not torch.equal(up, pipeline.upscale(y, (8, 8), "bicubic"))
    with pytest.raises(ValueError, match="bicubic, bislerp"):
        pipeline.upscale(y, (8, 8), "lanczos")


def test_img2img_starts_at_the_denoise_step(tiny):
    model = pipeline.load_model(*tiny)
    sigmas = pipeline.schedule_sigmas(model, "karras", 10)
    x = torch.zeros(1, 3, 8, 8)
    assert pipeline.img2img_start(10, 0.15) == 8
    assert torch.equal(pipeline.img2img(model.denoiser, x, sigmas, 0.0, {}, torch.Generator()), x)
    calls = []

    def counting(v, sigma, **kw):
        calls.append(sigma[0].item())
        return model.denoiser(v, sigma, **kw)

    pipeline.img2img(counting, x, sigmas, 0.3, {}, torch.Generator().manual_seed(0))
    assert calls == pytest.approx(sigmas[7:-1].tolist())


def test_comparison_sheet_layout():
    cols = [("a", torch.zeros(2, 3, 8, 8)), ("b", torch.ones(2, 3, 16, 16))]
    sheet = pipeline.comparison_sheet(cols, zoom=2, pad=4)
    assert sheet.width == 4 + 2 * (32 + 4)
    label_h = sheet.height - 2 * (32 + 4)
    assert label_h > 0
    assert sheet.getpixel((4, label_h)) == (128, 128, 128)  # zeros in [-1, 1] are mid-grey
    assert sheet.getpixel((4 + 36, label_h)) == (255, 255, 255)


def test_stage_seeds_are_distinct_per_pass():
    seeds = pipeline.stage_seeds(9, 2)
    flat = [seeds["base"]] + [v for k in ("stage1", "stage2") for v in seeds[k].values()]
    assert len(set(flat)) == len(flat)
    with pytest.raises(ValueError, match="seed"):
        pipeline.stage_seeds(-1, 1)


@pytest.mark.parametrize("sampler", sorted(cli.sampler_names()))
def test_every_registered_sampler_runs(tiny, tmp_path, capsys, sampler):
    assert cli.main(tiny_args(tiny, tmp_path / "o", "--generate", "1", "--steps", "2", "--sampler", sampler)) == 0
    assert json.loads((tmp_path / "o" / "run.json").read_text())["settings"]["sampler"] == sampler


def test_a_black_denoise_mask_keeps_the_upscaled_image(tiny, tmp_path, capsys):
    Image.new("L", (5, 5), 0).save(tmp_path / "keep.png")
    Image.new("L", (5, 5), 255).save(tmp_path / "mix.png")
    argv = tiny_args(tiny, tmp_path / "o", "--generate", "1", "--steps", "3", "--denoise-mask",
                     str(tmp_path / "keep.png"), "--mixing-mask", str(tmp_path / "mix.png"))
    assert cli.main(argv) == 0
    out = tmp_path / "o"
    assert (out / "stage1_64_itermix_00.png").read_bytes() == (out / "stage1_64_upscaled_00.png").read_bytes()
    record = json.loads((out / "run.json").read_text())
    assert record["options"]["denoise_mask"] == str(tmp_path / "keep.png")
    assert record["options"]["mixing_masks"] == str(tmp_path / "mix.png")


# ---------------------------------------------------------------- flags, folders and interrupted runs


def test_help_shows_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--scheduler" in text and "(default: karras)" in text
    assert "--steps STEPS steps of the full schedule (default: 30)" in text
    assert "--generate N generate N images at the model's size (4 when no source is given) --input" in text
    assert "(default: None)" not in text  # a None default is said in words
    for f in cli.option_fields():
        if f.default is None:
            assert f"{cli.flag(f.name)} INT {cli.OPTION_HELP[f.name]}" in text, f.name
            assert "default: the run's --steps" in cli.OPTION_HELP[f.name]
        else:
            assert f"(default: {f.default}, or the preset's)" in text, f.name


def test_scheduler_flag_gives_get_sigmas_numbers(tiny, tmp_path):
    from itermix_kdiff.sigmas import get_sigmas

    assert cli.main(tiny_args(tiny, tmp_path / "o", "--generate", "1", "--steps", "3",
                              "--scheduler", "exponential")) == 0
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    model = pipeline.load_model(*tiny)
    expected = get_sigmas(model.denoiser, "exponential", 3, config=model.config)
    assert record["settings"]["scheduler"] == "exponential"
    assert record["sigmas"] == [round(s, 6) for s in expected.tolist()]
    assert expected[0] != pipeline.schedule_sigmas(model, "karras", 3)[1]


def test_deprecated_model_flag_still_works_and_warns(tiny, tmp_path):
    config, checkpoint = tiny
    argv = ["--out", str(tmp_path / "o"), "--model", str(config), "--checkpoint", str(checkpoint), "--quiet",
            "--threads", "1", "--generate", "1", "--steps", "2", "--cfg", "1.5"]
    with pytest.warns(FutureWarning, match="--model is deprecated; use --config"):
        assert cli.main(argv) == 0
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    assert record["model"]["config"] == str(config) and record["settings"]["cfg_scale"] == 1.5


@pytest.mark.parametrize("flags, message", [
    (["--device", "foo"], "--device 'foo' is not a torch device"),
    (["--threads", "0"], "argument --threads: must be >= 1, got 0"),
    (["--threads", "-1"], "argument --threads: must be >= 1, got -1"),
    (["--cfg", "nan"], "argument --cfg-scale/--cfg: a finite number is needed, got 'nan'"),
    (["--cfg", "1e308"], "argument --cfg-scale/--cfg: must be in [0.0, 100.0], got 1e308"),
    *[(["--scheduler", name], f"--scheduler {name} needs a model with a discrete noise table (a Stable Diffusion "
                              f"--checkpoint); this model is continuous: use one of karras, exponential")
      for name in ("normal", "simple", "sgm_uniform", "ddim_uniform", "beta")],
    (["--steps", "0"], "argument --steps: must be >= 1, got 0"),
    (["--sampler", "euler_perlin", "--sampler-arg", "perlin_scale=0"], "perlin_scale must be > 0"),
    (["--sampler", "euler_ancestral", "--sampler-arg", "eta=abc"], "eta must be a number, got str"),
    (["--sampler", "euler_ancestral", "--sampler-arg", "eta=nan"], "eta must be finite"),
    (["--sampler", "dpmpp_2m", "--s-churn", "1"], "--s-churn is not an option of sampler dpmpp_2m"),
])
def test_bad_values_are_refused_before_the_model_loads(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    status, err = run_cli(["--out", str(tmp_path / "o"), *flags], capsys)
    assert status == 2 and message in err, err
    assert not (tmp_path / "o").exists()


def test_cuda_without_a_gpu_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status, err = run_cli(["--out", str(tmp_path / "o"), "--device", "cuda"], capsys)
    assert status == 2 and "--device cuda: no such device here" in err


def test_damaged_files_are_named_before_the_weights_load(tiny, tmp_path, capsys, monkeypatch):
    config, checkpoint = tiny
    data = Path(checkpoint).read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:len(data) // 2])
    forged = bytearray(data)
    forged[8:9] = b"["
    (tmp_path / "forged.safetensors").write_bytes(bytes(forged))
    noise = torch.randint(0, 256, (32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    Image.fromarray(noise.numpy(), "RGB").save(tmp_path / "in.png")
    png = (tmp_path / "in.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[:len(png) // 2])
    load = pipeline.load_model
    loaded = []
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: loaded.append(a) or load(*a, **k))
    cases = [(tiny_args((config, tmp_path / "cut.safetensors"), tmp_path / "o"), "is truncated"),
             (tiny_args((config, tmp_path / "forged.safetensors"), tmp_path / "o"), "must be a .safetensors file"),
             (tiny_args(tiny, tmp_path / "o", "--input", str(tmp_path / "cut.png")), "is damaged or truncated"),
             (tiny_args(tiny, tmp_path / "o", "--mixing-mask", str(tmp_path / "cut.png")),
              "--mixing-mask " + str(tmp_path / "cut.png"))]
    for argv, message in cases:
        status, err = run_cli(argv, capsys)
        assert status == 2 and message in err, err
    assert loaded == [] and not (tmp_path / "o").exists()


def test_an_earlier_run_is_refused_unless_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    argv = tiny_args(tiny, out, "--generate", "1", "--steps", "2")
    assert cli.main(argv) == 0
    (out / "notes.txt").write_text("mine")
    status, err = run_cli(argv, capsys)
    assert status == 2 and "holds another run's files" in err and "--overwrite" in err
    stale = out / "stage2_128_itermix_00.png"  # a file of a 4x run that this 2x run does not write
    stale.write_bytes(b"")
    assert cli.main(argv + ["--overwrite"]) == 0
    assert not stale.exists() and (out / "notes.txt").read_text() == "mine"
    record = json.loads((out / "run.json").read_text())
    assert set(record["files"]) == {p.name for p in out.iterdir()} - {"notes.txt"}
    (tmp_path / "file").write_text("")
    status, err = run_cli(tiny_args(tiny, tmp_path / "file"), capsys)
    assert status == 2 and "is not a folder" in err


def test_an_interrupted_run_keeps_its_finished_stages(tiny, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    img2img = pipeline.img2img
    calls = []

    def interrupt_in_stage_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # stage 1: cleanup, hires; stage 2: cleanup
            raise KeyboardInterrupt
        return img2img(*args, **kwargs)

    monkeypatch.setattr(pipeline, "img2img", interrupt_in_stage_two)
    with pytest.raises(KeyboardInterrupt):
        cli.main(tiny_args(tiny, out, "--generate", "1", "--steps", "2", "--scale", "4"))
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted" and record["stopped_at"] == "stage 2 128x128: cleanup"
    assert [s["name"] for s in record["stages"]] == ["stage1"]
    assert {p.name for p in out.iterdir()} == set(record["files"])
    assert "stage1_64_cleanup_00.png" in record["files"] and not any("stage2" in f for f in record["files"])


def test_an_interrupted_write_leaves_no_half_file(tiny, tmp_path, monkeypatch):
    out = tmp_path / "o"
    out.mkdir()
    save = Image.Image.save

    def half_then_interrupt(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        cli.save_batch(out, "base_8", torch.zeros(1, 3, 8, 8), [])
    monkeypatch.setattr(Image.Image, "save", save)
    assert list(out.iterdir()) == []


def test_an_unwritable_out_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "file" / "sub", Path("/proc/itermix-out")):
        status, err = run_cli(["--out", str(out), "--steps", "2"], capsys)
        assert status == 2 and f"--out {out} cannot be written" in err, err


def forged(tiny, directory: Path, name: str, config_text: str) -> Path:
    """The tiny model's weights with ``config_text`` as the safetensors 'config' metadata."""
    import safetensors.torch

    path = directory / f"{name}.safetensors"
    safetensors.torch.save_file(safetensors.torch.load_file(str(tiny[1])), str(path), metadata={"config": config_text})
    return path


def test_a_forged_or_broken_model_config_is_named_with_its_flag(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    good = json.loads(Path(tiny[0]).read_text())
    for i, (text, message) in enumerate([
            ("{}", "is not a k-diffusion model config (configs/*.json schema): it needs a 'model' section"),
            ("[1, 2]", "it needs a 'model' section"),
            ('{"model": "x"}', "it needs a 'model' section"),
            (json.dumps({**good, "model": {**good["model"], "input_size": "big"}}),
             "model.input_size must be a positive int or [height, width], got 'big'"),
            (json.dumps({**good, "model": {**good["model"], "sigma_max": None}}),
             "model.sigma_min and model.sigma_max"),
            (json.dumps({**good, "dataset": {"classes": 3}}), "dataset.classes must be a list of names"),
            ("{not json", "is not valid JSON")]):
        path = forged(tiny, tmp_path, f"forged{i}", text)
        status, err = run_cli(["--out", str(tmp_path / "o"), "--checkpoint", str(path), "--steps", "2"], capsys)
        assert status == 2 and "--checkpoint: " in err and str(path) in err and message in err, err
        assert not (tmp_path / "o").exists()
    (tmp_path / "list.json").write_text("[1, 2]")
    status, err = run_cli(tiny_args((tmp_path / "list.json", tiny[1]), tmp_path / "o"), capsys)
    assert status == 2 and f"--config: model config {tmp_path / 'list.json'} is not a k-diffusion model" in err, err


def test_prompt_with_a_pickle_or_a_missing_checkpoint_names_the_checkpoint(tiny, tmp_path, capsys):
    import safetensors.torch

    torch.save(safetensors.torch.load_file(str(tiny[1])), tmp_path / "model.ckpt")
    for path, message in [(tmp_path / "model.ckpt", "--checkpoint: checkpoint must be a .safetensors file"),
                          (tmp_path / "gone.safetensors", "--checkpoint: checkpoint not found")]:
        status, err = run_cli(["--out", str(tmp_path / "o"), "--checkpoint", str(path), "--prompt", "a castle"], capsys)
        assert status == 2 and message in err and "only for a Stable Diffusion" not in err, err


def test_an_interrupted_load_leaves_a_record_of_the_run(tmp_path, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "load_model", interrupt)
    argv = ["--out", str(tmp_path / "o"), "--steps", "2", "--seed", "4", "--quiet"]
    with pytest.raises(KeyboardInterrupt):
        cli.main(argv)
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    assert record["status"] == "interrupted" and record["stopped_at"] == "load_model"
    assert record["command"] == ["itermix-upscale", *argv] and record["settings"]["steps"] == 2
    assert record["seeds"]["base"] == 4 and record["files"] == ["run.json"]
    assert record["error"] == "KeyboardInterrupt: "


def test_a_table_schedule_with_too_many_steps_for_an_sd_checkpoint_names_steps(tmp_path, capsys):
    from tests.tiny_sd import tiny_checkpoint

    sd = tiny_checkpoint("sd1")
    argv = ["--out", str(tmp_path / "o"), "--checkpoint", str(sd.path), "--config", str(sd.config), "--prompt", "a",
            "--generate", "1", "--steps", "1200", "--scheduler", "simple", "--quiet", "--threads", "1"]
    status, err = run_cli(argv, capsys)
    assert status == 2, err
    assert "--scheduler simple: scheduler 'simple' gives 200 repeated sigma(s) for --steps 1200" in err, err
    assert not (tmp_path / "o").exists()
