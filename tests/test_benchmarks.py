"""The benchmark suite (benchmarks/): its metrics on known inputs, its bookkeeping, and smoke
runs of every part (nothing here asserts a speed: the figures live in benchmarks/results)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from benchmarks import bench_quality as Q
from benchmarks import bench_speed as S
from benchmarks import sweep as W
from benchmarks.common import (CallCounter, compare_timings, environment, markdown_table, quantile,
                               to_jsonable)

# ---------------------------------------------------------------- common


def test_compare_timings_interleaves_and_excludes_warmup():
    calls = []
    result = compare_timings(lambda: calls.append("A"), lambda: calls.append("B"), repeats=4, warmup=2)
    assert calls[:4] == ["A", "B", "A", "B"]  # the warm-up, thrown away
    assert calls[4:] == ["A", "B", "B", "A", "A", "B", "B", "A"]  # pairs in alternating order
    assert result["repeats"] == 4 and result["warmup"] == 2
    assert result["ratio_q25"] <= result["ratio"] <= result["ratio_q75"]
    with pytest.raises(ValueError, match="repeats"):
        compare_timings(lambda: None, lambda: None, repeats=0)


def test_compare_timings_repeats_short_calls_to_min_time():
    calls = []
    result = compare_timings(lambda: calls.append("A"), lambda: calls.append("B"), repeats=3, warmup=1,
                             min_time=1e-3)
    number = result["number"]
    assert number > 1  # appending to a list takes far less than a millisecond
    assert len(calls) == 2 + 2 + 2 * 3 * number  # warm-up, calibration, the timed pairs
    assert calls[4:4 + number] == ["A"] * number and calls[4 + number:4 + 3 * number] == ["B"] * (2 * number)


def test_quantile_interpolates_like_numpy():
    assert quantile([4, 1, 3, 2], 0.5) == 2.5
    assert quantile([1, 2, 3, 4, 5], 0.25) == 2.0
    assert quantile([1, 2], 0.75) == 1.75


def test_call_counter_counts_calls_and_rows():
    counter = CallCounter(lambda x, sigma, **kw: x * kw.get("scale", 1))
    out = counter(torch.ones(3, 2), torch.ones(3), scale=2)
    counter(torch.ones(1, 2), torch.ones(1))
    assert torch.equal(out, torch.full((3, 2), 2.0))
    assert (counter.calls, counter.rows) == (2, 4)
    counter.reset()
    assert (counter.calls, counter.rows) == (0, 0)


def test_environment_records_machine_versions_command_and_load():
    env = environment()
    assert env["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert env["versions"]["k-diffusion"] and env["versions"]["itermix_kdiff"]
    assert env["command"] and env["machine"]["cpu_count"] >= 1
    assert env["machine"]["torch_threads"] == torch.get_num_threads()
    assert env["load_avg"] is None or len(env["load_avg"]) == 3
    json.dumps(to_jsonable(env))


def test_markdown_table_and_json_safety():
    table = markdown_table([{"a": 1.23456, "b": None}, {"a": True, "b": "x"}], ["a", "b"], ["A", "B"], digits=2)
    assert table.splitlines() == ["| A | B |", "|---|---|", "| 1.23 | — |", "| yes | x |"]
    assert to_jsonable({"t": torch.tensor([1.0, 2.0]), "n": float("nan"), "p": (1, 2)}) == {
        "t": [1.0, 2.0], "n": "nan", "p": [1, 2]}


# ---------------------------------------------------------------- quality metrics on known inputs


def test_lr_psnr_known_values():
    base = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    nearest = base.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # box-downsamples back to base
    assert torch.allclose(Q.lr_psnr(nearest, base), torch.full((2,), 10 * math.log10(4 / 1e-12)), atol=1e-3)
    shifted = nearest + 0.1  # every downsampled pixel off by 0.1: PSNR = 10 log10(2^2 / 0.01)
    assert torch.allclose(Q.lr_psnr(shifted, base), torch.full((2,), 10 * math.log10(400.0)), atol=1e-3)
    assert Q.lr_psnr(shifted.repeat_interleave(2, 2).repeat_interleave(2, 3), base).sub(26.0206).abs().max() < 1e-3


def test_sharpness_error_known_values():
    truth = torch.zeros(1, 3, 64, 64)
    truth[..., 20:40, 20:40] = 1.0
    assert Q.sharpness_error(truth, truth).item() == 0.0
    assert Q.sharpness_error(truth * 0.5, truth).item() == pytest.approx(0.5)  # half the contrast
    assert Q.sharpness_error(truth * 1.5, truth).item() == pytest.approx(0.5)


def test_ratio_of_means():
    assert Q.ratio_of_means([1.0, 3.0], [2.0, 2.0]) == 1.0
    assert Q.ratio_of_means([2.0, 4.0], [1.0, 2.0]) == 2.0


def test_image_metrics_with_a_known_classifier():
    # class 0 when the mean red is positive, else 1
    clf = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        clf[2].weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]))
    base = torch.zeros(2, 3, 32, 32)
    base[:, 0] = 0.5
    out = torch.zeros(2, 3, 64, 64)
    out[0, 0] = 0.5  # the base, upscaled: same class
    out[1, 0] = -0.3  # another class
    truth = out.clone()
    truth[..., 10:20, 10:20] += 0.5
    rows = Q.image_metrics(out, base, truth, clf, fidelity=True)
    assert [r["composition"] for r in rows] == [1.0, 0.0]
    assert [(r["class_output"], r["class_base"]) for r in rows] == [(0, 0), (1, 0)]
    assert rows[0]["consistency_db"] > 100
    assert rows[1]["consistency_db"] == pytest.approx(10 * math.log10(4 / (0.64 / 3)))
    assert rows[0]["sharpness_error"] == pytest.approx(1.0)  # a flat output against an edged truth
    assert rows[0]["hfe"] == 0.0 and rows[0]["hfe_truth"] > 0 and rows[0]["grain"] == 0.0
    assert Q.image_metrics(out, base, truth, clf, fidelity=False)[0].keys().isdisjoint({"psnr_db", "sharpness_error"})


def test_summarize_averages_and_ratios():
    def rec(method, hfe, grain, seconds, scene):
        return {"method": method, "base": "render", "target": 64, "scene": scene, "consistency_db": 30.0 + scene,
                "psnr_db": 20.0, "sharpness_error": 0.1 * scene, "hfe": hfe, "hfe_truth": 0.5, "grain": grain,
                "grain_truth": 0.01, "composition": float(scene == 0), "calls": 9, "seconds": seconds}

    rows = Q.summarize([rec("itermix", 0.4, 0.02, 2.0, 0), rec("itermix", 0.6, 0.04, 2.0, 1),
                        rec("direct", 1.0, 0.01, 1.0, 0), rec("direct", 1.0, 0.01, 1.0, 1)])
    it = next(r for r in rows if r["method"] == "itermix")
    assert it["scenes"] == 2 and it["consistency_db"] == 30.5 and it["sharpness_error"] == pytest.approx(0.05)
    assert it["detail"] == pytest.approx(1.0) and it["grain"] == pytest.approx(3.0)
    assert it["composition"] == 0.5 and it["calls"] == 9 and it["time_vs_direct"] == 2.0


# ---------------------------------------------------------------- speed and memory


def test_free_denoiser_is_the_gaussian_denoiser():
    x = torch.randn(2, 4, 8, 8)
    sigma = torch.tensor([0.5, 2.0])
    expected = x * (0.25 / (sigma ** 2 + 0.25)).view(2, 1, 1, 1)
    assert torch.allclose(S.free_denoiser(x, sigma), expected)
    assert torch.allclose(S.free_denoiser(x, torch.zeros(2)), x)


def test_skipped_model_calls_match_the_schedule():
    rows = {r["setting"]: r for r in S.count_skips([10])}
    assert all(r["calls"] == r["predicted_calls"] for r in rows.values())
    assert rows["cosine (default)"]["saved"] == 1  # c1[0] = 0
    assert rows["logistic"]["saved"] == 0  # never exactly 0
    assert rows["logistic, start 0.3"]["saved"] == 3
    assert rows["dpmpp_2m, cosine"]["saved"] == 0  # its history needs every step
    assert rows["demofusion preset"]["saved"] == 0  # mixes before the model call
    assert rows["cosine, rewind"]["steps_run"] > 10


def test_lazy_noised_latents_stay_flat_while_the_stack_grows():
    rows = S.memory_rows([5, 30, 50], (1, 4, 64, 64))
    peak = {(r["mode"], r["steps"]): r["peak_latents"] for r in rows}
    assert {r["method"] for r in rows} == {"torch.profiler allocation events"}
    # counted allocations: the stack holds one more latent per step, the lazy source none
    assert peak[("stack", 30)] - peak[("stack", 5)] == pytest.approx(25, abs=0.05)
    assert peak[("stack", 50)] - peak[("stack", 30)] == pytest.approx(20, abs=0.05)
    for steps in (30, 50):
        assert peak[("lazy", steps)] == pytest.approx(peak[("lazy", 5)], abs=0.05)
    assert peak[("lazy", 50)] == pytest.approx(peak[("euler", 50)], abs=0.05)  # as much as sample_euler
    assert peak[("lazy", 50)] < peak[("stack", 50)] / 5


def test_speed_quick_run_writes_its_report(tmp_path):
    result = S.main(["--quick", "--parts", "free,demo,skips,perlin", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["environment"]["command"] and saved["quick"] is True
    rows = saved["timings"]
    assert {r["part"] for r in rows} == {"free", "demo"}
    assert {r["blending_function"] for r in rows if r["part"] == "free"} == set(S.BLENDS)
    assert {r["noise"] for r in rows if r["part"] == "free"} == {"drawn in the run", "precomputed"}
    for r in rows:
        assert r["ratio"] > 0 and r["baseline_calls"] == r["steps"]
    euler = [r for r in rows if r["part"] == "demo" and r["sampler"] == "euler"]
    assert euler and all(r["candidate_calls"] == r["steps"] - 1 for r in euler)  # cosine skips step 0
    assert all(g["met"] is None for g in result["goals"])  # the goal sizes are not in --quick
    if saved["perlin"] is not None:
        assert saved["perlin"][0]["max_abs_diff"] < 1e-5
    md = (tmp_path / "speed.md").read_text()
    assert "| euler | addition | drawn in the run |" in md and "Command:" in md


# ---------------------------------------------------------------- quality


def test_quality_quick_run_bookkeeping(tmp_path):
    # the bookkeeping on one scene, the cheap methods and one itermix method; make bench-quick runs them all
    methods = ["true render", "bicubic", "direct", "itermix"]
    result = Q.main(["--quick", "--scenes", "1", "--out", str(tmp_path), "--methods", ",".join(methods)])
    steps, scenes = result["settings"]["steps"], result["settings"]["scenes"]
    assert scenes == 1 and steps == 2
    saved = json.loads((tmp_path / "quality.json").read_text())
    assert len(saved["records"]) == len(result["records"])
    summary = {(r["method"], r["base"], r["target"]): r for r in result["summary"]}
    assert {m for m, _, _ in summary} == set(methods)
    for kind in Q.BASE_KINDS:
        assert summary[("bicubic", kind, 128)]["scenes"] == scenes  # the two-stage path ran
    truth = summary[("true render", "render", 64)]
    assert truth["psnr_db"] > 100 and truth["sharpness_error"] == 0.0
    assert truth["detail"] == pytest.approx(1.0) and truth["grain"] == pytest.approx(1.0)
    assert ("true render", "sample", 64) not in summary  # no ground truth for the model's samples
    for kind in Q.BASE_KINDS:
        bicubic, direct = summary[("bicubic", kind, 64)], summary[("direct", kind, 64)]
        assert bicubic["consistency_db"] > direct["consistency_db"] + 5  # direct ignores the base
        assert bicubic["calls"] == 0 and direct["calls"] == steps
        cleanup = steps - int(steps * (1 - Q.CLEANUP_DENOISE))
        assert summary[("itermix", kind, 64)]["calls"] == steps - 1 + cleanup
        assert summary[("itermix", kind, 128)]["calls"] == 2 * (steps - 1 + cleanup)
    assert "psnr_db" not in summary[("bicubic", "sample", 64)]
    md = (tmp_path / "quality.md").read_text()
    assert "### 32→128 from true 32×32 renders" in md and "| itermix |" in md
    from PIL import Image

    for name in ("quality_consistency_detail.png", "quality_examples.png"):
        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 100 and im.size[1] > 100


def test_demofusion_tiled_method_runs_per_target():
    ctx = Q.setup(2, 4, 1.0)
    records = Q.evaluate_scene(ctx, "demofusion tiled", Q.METHODS["demofusion tiled"], 0, ["render"], [64])
    assert len(records) == 1 and records[0]["target"] == 64
    assert records[0]["calls"] >= 2 and math.isfinite(records[0]["consistency_db"])


# ---------------------------------------------------------------- sweeps


def test_sweep_parsing_and_validation():
    assert W.parse_grid(["alpha_1=1,2.4", "rewind=true,false", "blending_function=slerp"]) == {
        "alpha_1": [1, 2.4], "rewind": [True, False], "blending_function": ["slerp"]}
    assert W.parse_seeds("0-3,7,2") == [0, 1, 2, 3, 7]
    points = W.grid_points({"a": [1, 2], "b": ["x", "y"]})
    assert points == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    method = W.point_method({"sampler": "euler_perlin", "perlin_mode": "latents", "alpha_1": 3, "preset": "demofusion"})
    assert method["sampler_kwargs"] == {"perlin_mode": "latents"}
    assert method["options"]["alpha_1"] == 3 and method["options"]["mix"] == "before_step"
    for bad, error in (({"alpha_1": -1}, ValueError), ({"bogus": 1}, ValueError), ({"sampler": "nope"}, ValueError),
                       ({"blending_function": "cubic"}, ValueError), ({"cleanup": "yes"}, TypeError),
                       ({"generator": 1}, ValueError)):
        with pytest.raises(error):
            W.point_method(bad)
    for text in ("3-1", "", "a-b"):
        with pytest.raises(ValueError, match="--seeds"):
            W.parse_seeds(text)
    with pytest.raises(ValueError, match="NAME=V1"):
        W.parse_grid(["alpha_1"])


def test_shards_cover_every_job_once_and_balance():
    jobs = list(range(10))
    shards = [W.shard(jobs, r, 3) for r in range(3)]
    indices = sorted(i for s in shards for i, _ in s)
    assert indices == jobs
    assert [len(s) for s in shards] == [4, 3, 3]
    assert all(job == i for s in shards for i, job in s)
    with pytest.raises(ValueError):
        W.shard(jobs, 3, 3)


def _metrics(records):
    skip = ("seconds", "run_id")
    return [{k: v for k, v in r.items() if k not in skip} for r in records]


def test_sweep_single_process_and_sharded_runs_agree(tmp_path):
    argv = ["--grid", "alpha_1=1,4", "--seeds", "0-1", "--steps", "2", "--targets", "64", "--bases", "render",
            "--baselines", "bicubic", "--out", str(tmp_path / "one")]
    records = W.main(argv)
    assert len(records) == 6  # (1 baseline + 2 points) x 2 seeds x 1 base x 1 target
    assert [r["job"] for r in records] == list(range(6))
    lines = (tmp_path / "one" / "sweep.jsonl").read_text().splitlines()
    assert len(lines) == 6
    runs = W.read_jsonl(tmp_path / "one" / "sweep_runs.jsonl")
    assert len(runs) == 1 and runs[0]["processes"] == 1 and runs[0]["grid"] == {"alpha_1": [1, 4]}
    md = (tmp_path / "one" / "sweep.md").read_text()
    assert "| alpha_1=1 |" in md and "| bicubic |" in md

    # the same jobs dealt to two processes (run one after the other here) give the same records
    ctx = Q.setup(2, Q.DEFAULT_BASE_STEPS, 3.0)
    jobs = W.make_jobs(W.grid_points({"alpha_1": [1, 4]}), ["bicubic"], [0, 1])
    parts = [W.run_shard(ctx, jobs, r, 2, tmp_path / "two" / f"part{r}.jsonl", "x", ["render"], [64],
                         log=lambda s: None) for r in range(2)]
    merged = W.merge(parts, tmp_path / "two" / "sweep.jsonl")
    assert _metrics(merged) == _metrics(records)
    assert not any(p.exists() for p in parts)


# ---------------------------------------------------------------- Stable Diffusion checkpoints


def test_rectangular_lr_psnr_box_averages_back():
    base = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    nearest = base.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert Q.lr_psnr(nearest, base).item() > 100
    assert Q.lr_psnr(nearest + 0.1, base).item() == pytest.approx(10 * math.log10(400.0), abs=1e-3)


def test_sd_prompts_file_and_refusals(tmp_path, capsys):
    from benchmarks import __main__ as bench_main
    from benchmarks import bench_sd

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a castle\n\n  # a comment\n  a harbour at dusk  \n")
    assert bench_sd.read_prompts(prompts) == ["a castle", "a harbour at dusk"]
    assert bench_sd.read_prompts(None) == list(bench_sd.DEFAULT_PROMPTS)
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="no prompt"):
        bench_sd.read_prompts(tmp_path / "empty.txt")
    # refused before anything loads: SD options need --checkpoint, --scenes is the demo model's
    for argv, match in ((["--prompts", str(prompts)], "--prompts need"),
                        (["--checkpoint", "x.safetensors", "--scenes", "2"], "--scenes belongs")):
        with pytest.raises(SystemExit):
            bench_main.main(argv)
        assert match in capsys.readouterr().err


def _finite_numbers(value):
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def test_sd_checkpoint_quick_run(tmp_path):
    """``python -m benchmarks --checkpoint`` on the tiny SD 1.x file: every file, finite figures,
    and every model-call count what the schedule predicts, worked out here by hand."""
    from benchmarks import __main__ as bench_main
    from benchmarks import bench_sd
    from itermix_kdiff.pipeline import img2img_start
    from tests.tiny_sd import tiny_checkpoint

    tiny = tiny_checkpoint("sd1")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a castle on a hill\na harbour at dusk\n")
    out = tmp_path / "out"
    steps = 3
    bench_main.main(["--checkpoint", str(tiny.path), "--config", str(tiny.config), "--prompts", str(prompts),
                     "--quick", "--steps", str(steps), "--threads", "1", "--out", str(out)])
    for name in ("speed.json", "speed.md", "quality.json", "quality.md", "summary.md", "quality_examples.png"):
        assert (out / name).is_file(), name
    speed = json.loads((out / "speed.json").read_text())
    quality = json.loads((out / "quality.json").read_text())
    assert _finite_numbers(speed) and _finite_numbers(quality)
    assert speed["model"]["family"] == "sd1" and len(speed["model"]["sha256"]) == 64

    # speed: native latents and 2x, each sampler against its k-diffusion baseline
    rows = speed["timings"]
    assert {(r["sampler"], tuple(r["shape"])) for r in rows} == {
        (s, shape) for s in ("euler", "dpmpp_2m") for shape in ((1, 4, 8, 8), (1, 4, 16, 16))}
    n = speed["settings"]["steps"]
    for r in rows:
        assert r["ratio"] > 0 and r["baseline_calls"] == n and r["baseline_s_per_step"] > 0
        assert r["candidate_calls"] == (n - 1 if r["sampler"] == "euler" else n)  # cosine skips step 0

    # quality: the first prompt only (--quick), every method, one 2x stage
    assert quality["settings"]["prompts"] == ["a castle on a hill"] and quality["settings"]["steps"] == steps
    assert quality["bases"][0]["calls"] == steps
    summary = {r["method"]: r for r in quality["summary"]}
    assert set(summary) == set(bench_sd.METHODS) and {r["target"] for r in quality["summary"]} == {"128x128"}
    cleanup = steps - img2img_start(steps, Q.CLEANUP_DENOISE)
    expected = {"bicubic": 0, "bislerp": 0, "direct": steps, "itermix": steps - 1 + cleanup,
                "itermix, no cleanup": steps - 1, "slerp": steps - 1 + cleanup, "norm_only": steps - 1 + cleanup,
                **{f"img2img {d}": steps - img2img_start(steps, d) for d in (0.3, 0.5, 0.7)}}
    for name, calls in expected.items():
        assert summary[name]["calls"] == calls, name
    for r in quality["records"]:
        assert r["calls"] == r["predicted_calls"], r["method"]
    assert summary["bicubic"]["detail"] == 1.0 and summary["bicubic"]["grain"] == 1.0
    assert summary["direct"]["time_vs_direct"] == 1.0
    md = (out / "quality.md").read_text()
    assert "Every model-call count equals the schedule's prediction." in md and "| itermix |" in md
    assert "## Speed on sd1" in (out / "summary.md").read_text()
