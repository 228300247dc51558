"""End to end in a real ComfyUI, optional: runs only with ``ITERMIX_COMFYUI=/path/to/ComfyUI``.

Builds a random-weight checkpoint that ComfyUI detects as SD1.5 (key names and shapes from
ComfyUI's own UNetModel, SDClipModel and AutoencoderKL built on the meta device, values from a
seeded generator), starts that ComfyUI headless on 127.0.0.1 with a base directory of its own
(``--base-directory``: the node pack linked into its custom_nodes, the checkpoint in its models),
queues the shipped workflows with small sizes and reads the latents SaveLatent writes. A second
test compares the scheduler nodes' sigmas with ComfyUI's own ``calculate_sigmas`` and ``KSampler``.

``ITERMIX_COMFYUI_PYTHON`` is ComfyUI's Python (default: this one); ``itermix_kdiff`` is made
importable there through ``PYTHONPATH``. With ``ITERMIX_SEED_PACK=/path/to/ComfyUI-Iterative-Mixer``
the same prompts with ``rng="global"`` also run in a second server with that pack instead, and
their latents must be equal.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "extensions" / "comfyui-itermix" / "workflows"
COMFY = os.environ.get("ITERMIX_COMFYUI")
PYTHON = os.environ.get("ITERMIX_COMFYUI_PYTHON", sys.executable)
SEED_PACK = os.environ.get("ITERMIX_SEED_PACK")

pytestmark = pytest.mark.skipif(not COMFY, reason="set ITERMIX_COMFYUI=/path/to/ComfyUI to run ComfyUI end to end")

CHECKPOINT = "itermix_tiny_sd15.safetensors"

BUILD = r'''
"""A random-weight SD1.5-layout checkpoint. Init, in sorted key order from one generator seeded
1234: 1-D weights of norms 1, biases 0, embeddings N(0, 0.02), other weights
N(0, 1 / fan_in); stored as float16."""
import sys
checkpoint = sys.argv[1]
sys.argv = sys.argv[:1] + ["--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import torch
import comfy.model_detection
import comfy.ops
import comfy.sd1_clip
from comfy.ldm.models.autoencoder import AutoencoderKL
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
from safetensors.torch import save_file

unet_config = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1, 1],
                   channel_mult=[1, 1], transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1],
                   transformer_depth_middle=1, context_dim=768, num_heads=8, num_head_channels=-1,
                   use_linear_in_transformer=False, use_spatial_transformer=True, legacy=False,
                   adm_in_channels=None, use_temporal_attention=False, use_temporal_resblock=False)
ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
            "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
with torch.device("meta"):
    parts = {
        "model.diffusion_model.": UNetModel(**unet_config, operations=comfy.ops.disable_weight_init),
        "cond_stage_model.": comfy.sd1_clip.SDClipModel(device="meta"),
        "first_stage_model.": AutoencoderKL(ddconfig=ddconfig, embed_dim=4),
    }
shapes = {}
for prefix, module in parts.items():
    for key, value in module.state_dict().items():
        if prefix == "cond_stage_model." and not key.startswith("transformer.text_model."):
            continue
        if key.endswith("position_ids"):
            continue
        shapes[prefix + key] = tuple(value.shape)
g = torch.Generator().manual_seed(1234)
sd = {}
for key in sorted(shapes):
    shape = shapes[key]
    if len(shape) == 1 and key.endswith("bias"):
        value = torch.zeros(shape)
    elif len(shape) == 1 and ("norm" in key or key.split(".")[-2].startswith("ln")):
        value = torch.ones(shape)
    elif "embedding" in key:
        value = torch.randn(shape, generator=g) * 0.02
    else:
        fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else shape[0]
        value = torch.randn(shape, generator=g) / fan_in ** 0.5
    sd[key] = value.half()
config = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
assert type(config).__name__ == "SD15", type(config).__name__
save_file(sd, checkpoint)
print(len(sd), "tensors")
'''


SCHEDULES = r'''
"""The nodes' sigmas against ComfyUI's own, on SD's discrete table and the flow table (shift 3):
IterativeMixingScheduler's (get_sigmas on a ScheduleView) against calculate_sigmas for every
scheduler, 1 to 40, 50 and 100 steps, and the deprecated nodes' (ksampler_sigmas) against
KSampler's. Prints the cases that differ, as JSON."""
import json
import sys
sys.argv = sys.argv[:1] + ["--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import torch
import comfy.model_sampling
import comfy.samplers
from itermix_kdiff import get_sigmas
from itermix_kdiff.comfy import ScheduleView, ksampler_sigmas


class Discrete(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
    pass


class Flow(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
    pass


class Model:
    """What KSampler and ksampler_sigmas read of a MODEL."""

    def __init__(self, model_sampling):
        self.model_sampling = model_sampling

    def get_model_object(self, name):
        return getattr(self, name)


def same(ours, theirs):
    try:
        return torch.equal(ours(), theirs())
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:100]


flow = Flow()
flow.set_parameters(shift=3.0)
differ, cases = [], 0
for family, table in (("discrete", Discrete()), ("flow", flow)):
    for name in comfy.samplers.SCHEDULER_NAMES:
        for steps in list(range(1, 41)) + [50, 100]:
            cases += 1
            result = same(lambda: get_sigmas(ScheduleView(table), name, steps),
                          lambda: comfy.samplers.calculate_sigmas(table, name, steps))
            if result is not True:
                differ.append([family, name, steps, result])
        for sampler in ("euler", "dpm_2"):
            for steps, denoise in ((4, 1.0), (10, 1.0), (10, 0.6)):
                cases += 1
                result = same(lambda: ksampler_sigmas(Model(table), sampler, name, steps, denoise),
                              lambda: comfy.samplers.KSampler(Model(table), steps, "cpu", sampler=sampler,
                                                              scheduler=name, denoise=denoise).sigmas)
                if result is not True:
                    differ.append([family, name, steps, sampler, denoise, result])
print(json.dumps({"cases": cases, "differ": differ}))
'''


def build_checkpoint(path: Path) -> None:
    result = subprocess.run([PYTHON, "-c", BUILD, str(path)], cwd=COMFY, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ComfyUI started headless with its own base directory and one node pack linked in."""

    def __init__(self, base: Path, pack: Path, checkpoint: Path):
        (base / "custom_nodes").mkdir(parents=True)
        (base / "custom_nodes" / pack.name).symlink_to(pack)
        (base / "models" / "checkpoints").mkdir(parents=True)
        (base / "models" / "checkpoints" / CHECKPOINT).symlink_to(checkpoint)
        pylib = base / "pylib"
        pylib.mkdir()
        (pylib / "itermix_kdiff").symlink_to(ROOT / "itermix_kdiff")
        self.base = base
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(pylib)}
        self.log = open(base / "comfyui.log", "w")
        self.proc = subprocess.Popen(
            [PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
             "--base-directory", str(base)], cwd=COMFY, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 300
        while True:
            try:
                self.get("/system_stats")
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("ComfyUI did not start:\n" + (base / "comfyui.log").read_text()[-3000:])
                time.sleep(1)

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return json.loads(r.read())

    def run(self, prompt: dict) -> dict:
        """Queue ``prompt``; wait for it; the latents of its SaveLatent nodes by node id."""
        data = json.dumps({"prompt": prompt, "client_id": "itermix-test"}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/prompt", data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                prompt_id = json.loads(r.read())["prompt_id"]
        except urllib.error.HTTPError as error:
            raise AssertionError(error.read().decode()) from error
        deadline = time.time() + 1200
        while True:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                break
            assert time.time() < deadline, "prompt did not finish"
            time.sleep(1)
        entry = history[prompt_id]
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-3000:]
        from safetensors.torch import load_file

        out = {}
        for node_id, output in entry["outputs"].items():
            for item in output.get("latents", []):
                path = self.base / "output" / item["subfolder"] / item["filename"]
                out[node_id] = load_file(str(path))["latent_tensor"]
        return out

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def small(name: str, **sampler_inputs) -> dict:
    """A shipped API workflow at 128 x 128 px, 3-4 steps, its image outputs replaced by SaveLatent
    nodes ("90": the iterative mixing result, "91": the final latent)."""
    wf = json.loads((WORKFLOWS / name).read_text())
    wf["1"]["inputs"]["ckpt_name"] = CHECKPOINT
    wf["4"]["inputs"].update(width=128, height=128)
    wf["5"]["inputs"]["steps"] = 3
    decode = next(k for k, node in wf.items() if node["class_type"] == "VAEDecode")
    final = wf[decode]["inputs"]["samples"]
    for key in [k for k, node in wf.items() if node["class_type"] in ("VAEDecode", "SaveImage")]:
        del wf[key]
    mixed = None
    for node_id, node in wf.items():
        kind, inputs = node["class_type"], node["inputs"]
        if kind in ("IterativeMixingScheduler", "IterativeMixingSchedulerAdvanced"):
            inputs["steps"] = 4
        if kind == "IterativeMixingSampler":
            inputs.update(sampler_inputs)
        if kind == "SamplerCustom":
            mixed = [node_id, 0]
        if kind == "IterMix Upscale":
            inputs.update(steps=4, cleanup_steps=3, cleanup_denoise=0.3)
        if kind == "KSampler" and node_id != "5":
            inputs.update(steps=3, denoise=0.3)
        if kind == "IterMix DemoFusion Model":
            inputs["tile_size"] = 128
    wf["91"] = {"class_type": "SaveLatent", "inputs": {"samples": final, "filename_prefix": "latents/final"}}
    if mixed is not None:
        wf["90"] = {"class_type": "SaveLatent", "inputs": {"samples": mixed, "filename_prefix": "latents/mixed"}}
    return wf


def global_variants(for_reference: bool = False) -> list:
    """The reference pack's workflow shapes with ``rng="global"``: euler, euler_perlin, and the
    Advanced scheduler (steps 0..3 of 4). The reference pack gets them without our new inputs."""
    new = {"preset", "mix", "noise", "lazy", "rng"}
    variants = []
    for sampler, advanced in (("euler", False), ("euler_perlin", False), ("euler", True)):
        wf = small("itermix_upscale_recipe_api.json", sampler=sampler, rng="global")
        if advanced:
            wf["7"] = {"class_type": "IterativeMixingSchedulerAdvanced", "inputs": {
                "model": ["1", 0], "scheduler": "karras", "steps": 4, "start_at_step": 0, "end_at_step": 3,
                "denoise": 1.0}}
        if for_reference:
            for key in new:
                wf["8"]["inputs"].pop(key)
        variants.append(wf)
    return variants


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / CHECKPOINT
    build_checkpoint(path)
    return path


def test_schedules_equal_comfyuis():
    """The scheduler nodes' sigmas are ComfyUI's, bit for bit, except where ComfyUI's kl_optimal
    divides 0 by 0 (one step) and gives NaN."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([PYTHON, "-c", SCHEDULES], cwd=COMFY, capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"\n{report['cases']} cases; differing: {report['differ']}")
    assert report["cases"] == 2 * 9 * 42 + 2 * 9 * 6
    assert [case[:3] for case in report["differ"]] == [["discrete", "kl_optimal", 1], ["flow", "kl_optimal", 1]]


#: ComfyUI sampler names outside SAMPLERS that the deprecated one-node sampler runs here:
#: ddim (ComfyUI's Euler), UniPC, the other signature of dpm_fast, a CFG++ sampler, a "_gpu"
#: Brownian variant, a keyword the core's checks refuse (exp_heun_2_x0's solver_type "phi_2"),
#: multistep ones. (dpm_adaptive runs too, but takes minutes on this CPU.)
DEPRECATED_NAMES = ("euler", "ddim", "lms", "dpm_fast", "uni_pc", "uni_pc_bh2", "euler_cfg_pp", "dpmpp_2m_sde_gpu",
                    "exp_heun_2_x0", "res_multistep")


def deprecated_prompt(names=DEPRECATED_NAMES) -> dict:
    """The recipe's txt2img latent (16 x 16) through one "Iterative Mixing KSampler" per sampler
    name (3 steps), each saved: the results by name are ``out[str(40 + i)]``."""
    recipe = small("itermix_upscale_recipe_api.json")
    wf = {key: recipe[key] for key in ("1", "2", "3", "4", "5")}
    for i, name in enumerate(names):
        wf[str(20 + i)] = {"class_type": "Iterative Mixing KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["5", 0], "seed": 42,
            "steps": 3, "cfg": 7.0, "sampler_name": name, "scheduler": "karras", "denoise": 1.0, "alpha_1": 2.4,
            "blending_schedule": "cosine", "blending_function": "addition", "normalize_on_mean": False}}
        wf[str(40 + i)] = {"class_type": "SaveLatent",
                           "inputs": {"samples": [str(20 + i), 0], "filename_prefix": f"latents/deprecated_{name}"}}
    return wf


def test_shipped_workflows_run_and_repeat_in_comfyui(tmp_path, checkpoint):
    """The default recipe runs first on a fresh server, where every node runs (cold cache: the
    global RNG at SamplerCustom is as the txt2img KSampler left it), and again after other prompts
    (warm: only SamplerCustom and what follows rerun, the global RNG as the last prompt's cleanup
    KSampler left it). It must repeat bit for bit; the reference pack, which reads the global RNG,
    must not (checked with ITERMIX_SEED_PACK)."""
    server = Server(tmp_path / "ours", ROOT / "extensions" / "comfyui-itermix", checkpoint)
    try:
        info = server.get("/object_info/IterativeMixingSampler")["IterativeMixingSampler"]
        assert "rng" in info["input"]["optional"]
        first = server.run(small("itermix_upscale_recipe_api.json"))  # cold: the first prompt of the server
        assert first["90"].shape == (1, 4, 32, 32) and first["91"].shape == (1, 4, 32, 32)
        assert torch.isfinite(first["91"]).all()
        ours_global = [server.run(wf) for wf in global_variants()]  # warm, as the reference's below
        other = small("itermix_upscale_recipe_api.json")
        other["9"]["inputs"]["noise_seed"] = 43
        assert not torch.equal(server.run(other)["90"], first["90"])
        again = server.run(small("itermix_upscale_recipe_api.json"))  # warm: upstream nodes cached
        diff = float((first["90"] - again["90"]).abs().max())
        print(f"\ndefault rng, cold first run vs warm re-run: max |diff| {diff}")
        assert torch.equal(first["90"], again["90"]) and torch.equal(first["91"], again["91"])
        for sampler, rewind in (("heun", False), ("euler_ancestral", False), ("dpmpp_sde", True)):
            # ComfyUI's own samplers, one step at a time (dpmpp_sde on its Brownian tree, with rewind)
            run = server.run(small("itermix_upscale_recipe_api.json", sampler=sampler, rewind=rewind))
            assert torch.isfinite(run["90"]).all() and not torch.equal(run["90"], first["90"]), sampler
        one = server.run(small("itermix_upscale_one_node_api.json"))
        assert torch.equal(one["91"], first["91"])  # the same recipe in one node
        demo = server.run(small("itermix_demofusion_api.json"))
        assert demo["91"].shape == (1, 4, 32, 32) and torch.isfinite(demo["91"]).all()
        assert not torch.equal(demo["91"], first["90"])
        deprecated = server.run(deprecated_prompt())
        results = {name: deprecated[str(40 + i)] for i, name in enumerate(DEPRECATED_NAMES)}
        for name, latent in results.items():
            assert latent.shape == (1, 4, 16, 16) and torch.isfinite(latent).all(), name
        assert torch.equal(results["ddim"], results["euler"])  # ComfyUI's ddim is its Euler
        # one step at a time lms and res_multistep are first-order steps: Euler's; the others are not
        for name in ("uni_pc", "dpm_fast", "dpmpp_2m_sde_gpu"):
            assert not torch.allclose(results[name], results["euler"]), name
        assert not torch.equal(results["exp_heun_2_x0"], results["euler"])  # run with its own solver_type
        print("Iterative Mixing KSampler, max |diff| from euler:",
              ", ".join(f"{name} {float((v - results['euler']).abs().max()):.3g}" for name, v in results.items()))
        print("latent std: recipe", float(first["91"].std()), "one node", float(one["91"].std()),
              "demofusion", float(demo["91"].std()))
    finally:
        server.close()
    if SEED_PACK:
        reference = Server(tmp_path / "reference", Path(SEED_PACK), checkpoint)
        try:
            variants = global_variants(for_reference=True)
            cold = reference.run(variants[0])  # the first prompt of a fresh server
            # then warm, as ours ran: euler_perlin, the Advanced scheduler, euler again
            theirs = [reference.run(wf) for wf in variants[1:] + variants[:1]]
        finally:
            reference.close()
        theirs = theirs[-1:] + theirs[:-1]
        for name, a, b in zip(("euler", "euler_perlin", "advanced scheduler"), ours_global, theirs):
            diff = float((a["90"] - b["90"]).abs().max())
            print(f"rng=global vs reference pack, {name}: max |diff| {diff}")
            assert torch.equal(a["90"], b["90"]) and torch.equal(a["91"], b["91"]), name
        diff = float((cold["90"] - theirs[0]["90"]).abs().max())
        print(f"reference pack, euler, cold first run vs warm re-run: max |diff| {diff}")
        assert diff > 0  # the global RNG differs with the cache state: the reference does not repeat
