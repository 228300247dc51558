"""The ComfyUI node pack (itermix_kdiff.comfy, extensions/comfyui-itermix) against a stand-in of
ComfyUI 0.8.0 (tests/comfy_standin, mirroring its API) whose diffusion model is a real
k-diffusion DiscreteEpsDDPMDenoiser. Flows run through the stand-in's SamplerCustom, KSAMPLER,
CFGGuider and KSamplerX0Inpaint as ComfyUI runs them."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "comfy_standin"
EXTENSION = ROOT / "extensions" / "comfyui-itermix"

if str(STANDIN) not in sys.path:
    sys.path.insert(0, str(STANDIN))

import comfy.model_management  # noqa: E402  (the stand-in)
import comfy.samplers  # noqa: E402
import comfy.utils  # noqa: E402
from comfy.model_base import BaseModel, ModelType  # noqa: E402
from comfy.model_patcher import ModelPatcher  # noqa: E402
from comfy_extras.nodes_custom_sampler import SamplerCustom  # noqa: E402
from comfy_extras.nodes_differential_diffusion import DifferentialDiffusion  # noqa: E402

from itermix_kdiff import SAMPLERS, sample_itermix_euler, sample_itermix_euler_perlin  # noqa: E402
from itermix_kdiff.comfy import NODE_CLASS_MAPPINGS as NODES, comfy_noised_latents  # noqa: E402
from itermix_kdiff.comfy.sampler import sample_comfy  # noqa: E402
from .reference_loop import a4_euler  # noqa: E402

# The ComfyUI-Iterative-Mixer pack's INPUT_TYPES (nodes.py at 857ee06), written down: the names
# "KSAMPLERS", "KSCHEDULERS", "SCHEDULER_NAMES" stand for comfy.samplers' lists.
BLEND_SCHEDULES = ["cosine", "linear", "logistic"]
BLEND_FUNCTIONS = ["addition", "norm_only", "slerp"]
SEED = ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff})
CFG = ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01})
DENOISE = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})
ALPHA = ("FLOAT", {"default": 2.4, "min": 0.05, "max": 100.0, "step": 0.05})
REFERENCE_INPUTS = {
    "Batch Unsampler": [
        ("model", ("MODEL",)), ("sampler_name", ("KSAMPLERS",)), ("scheduler", ("KSCHEDULERS",)),
        ("steps", ("INT", {"default": 10000, "min": 0, "max": 10000})),
        ("start_at_step", ("INT", {"default": 0, "min": 0, "max": 10000})),
        ("end_at_step", ("INT", {"default": 10000, "min": 1, "max": 10000})),
        ("latent_image", ("LATENT",)), ("normalize", ("BOOLEAN", {"default": False}))],
    "Latent Batch Statistics Plot": [("batch", ("LATENT",))],
    "Latent Batch Comparison Plot": [("latent_batch_1", ("LATENT",)), ("latent_batch_2", ("LATENT",))],
    "Iterative Mixing KSampler Advanced": [
        ("model", ("MODEL",)), ("seed", SEED), ("cfg", CFG), ("sampler_name", ("KSAMPLERS",)),
        ("scheduler", ("KSCHEDULERS",)), ("positive", ("CONDITIONING",)), ("negative", ("CONDITIONING",)),
        ("latent_image_batch", ("LATENT",)), ("denoise", DENOISE), ("alpha_1", ALPHA),
        ("reverse_input_batch", ("BOOLEAN", {"default": True})),
        ("blending_schedule", (BLEND_SCHEDULES, {"default": "cosine"})),
        ("stop_blending_at_pct", ("FLOAT", {"default": 1.0})), ("clamp_blending_at_pct", ("FLOAT", {"default": 1.0})),
        ("blending_function", (BLEND_FUNCTIONS, {"default": "addition"}))],
    "Iterative Mixing KSampler": [
        ("model", ("MODEL",)), ("positive", ("CONDITIONING",)), ("negative", ("CONDITIONING",)),
        ("latent_image", ("LATENT",)), ("seed", SEED), ("steps", ("INT", {"default": 40, "min": 0, "max": 10000})),
        ("cfg", CFG), ("sampler_name", ("KSAMPLERS",)), ("scheduler", ("KSCHEDULERS",)), ("denoise", DENOISE),
        ("alpha_1", ALPHA), ("blending_schedule", (BLEND_SCHEDULES, {"default": "cosine"})),
        ("blending_function", (BLEND_FUNCTIONS, {"default": "addition"})),
        ("normalize_on_mean", ("BOOLEAN", {"default": False}))],
    "IterativeMixingSampler": [
        ("model", ("MODEL",)), ("sampler", (["euler", "euler_perlin", "lcm", "dpmpp_2m"], {"default": "euler"})),
        ("alpha_1", ALPHA), ("blending_schedule", (BLEND_SCHEDULES, {"default": "cosine"})),
        ("blending_function", (BLEND_FUNCTIONS, {"default": "addition"})),
        ("normalize_on_mean", ("BOOLEAN", {"default": False})),
        ("start_blending_at_pct", ("FLOAT", {"default": 0.0, "min": 0.0, "step": 0.01})),
        ("stop_blending_at_pct", ("FLOAT", {"default": 1.0, "min": 0.0, "step": 0.01})),
        ("clamp_blending_at_pct", ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})),
        ("blend_min", ("FLOAT", {"default": 0.0, "step": 0.01})),
        ("blend_max", ("FLOAT", {"default": 1.0, "step": 0.01})),
        ("perlin_mode", (["masks", "latents", "matched_noise"], {"default": "masks"})),
        ("perlin_strength", ("FLOAT", {"default": 0.75, "step": 0.001})),
        ("perlin_scale", ("FLOAT", {"default": 10., "min": 0.1, "max": 400.0})),
        ("rewind", ("BOOLEAN", {"default": False})),
        ("rewind_min", ("FLOAT", {"default": 0.5, "min": 0.0, "max": 0.99})),
        ("rewind_max", ("FLOAT", {"default": 0.8, "min": 0.01, "max": 0.99}))],
    "IterativeMixingScheduler": [
        ("model", ("MODEL",)), ("scheduler", ("SCHEDULER_NAMES",)),
        ("steps", ("INT", {"default": 20, "min": 1, "max": 10000})), ("denoise", DENOISE)],
    "IterativeMixingSchedulerAdvanced": [
        ("model", ("MODEL",)), ("scheduler", ("SCHEDULER_NAMES",)),
        ("steps", ("INT", {"default": 20, "min": 1, "max": 10000})),
        ("start_at_step", ("INT", {"default": 0, "min": 0, "max": 10000})),
        ("end_at_step", ("INT", {"default": 10000, "min": 0, "max": 10000})), ("denoise", DENOISE)],
    "MixingMaskGenerator": [
        ("mask_type", (["perlin", "random"], {"default": "perlin"})),
        ("perlin_scale", ("FLOAT", {"default": 10., "min": 0.1, "max": 400.0, "step": 0.01})), ("seed", SEED),
        ("width", ("INT", {"default": 512, "min": 16, "max": 8192, "step": 8})),
        ("height", ("INT", {"default": 512, "min": 16, "max": 8192, "step": 8})),
        ("batch_size", ("INT", {"default": 1, "min": 1, "max": 4096}))],
}
REFERENCE_OUTPUTS = {
    "Batch Unsampler": ("LATENT",), "Latent Batch Statistics Plot": ("IMAGE",),
    "Latent Batch Comparison Plot": ("IMAGE",),
    "Iterative Mixing KSampler Advanced": ("LATENT", "LATENT", "LATENT", "IMAGE"),
    "Iterative Mixing KSampler": ("LATENT",), "IterativeMixingSampler": ("SAMPLER",),
    "IterativeMixingScheduler": ("SIGMAS",), "IterativeMixingSchedulerAdvanced": ("SIGMAS",),
    "MixingMaskGenerator": ("MASK",),
}
COMFY_LISTS = {"KSAMPLERS": comfy.samplers.KSampler.SAMPLERS, "KSCHEDULERS": comfy.samplers.KSampler.SCHEDULERS,
               "SCHEDULER_NAMES": comfy.samplers.SCHEDULER_NAMES}


def node(name):
    return NODES[name]()


def latent(batch=1, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(batch, 4, size, size, generator=g) * 5}


def conditioning(seed):
    return [[torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(seed)), {}]]


POSITIVE, NEGATIVE = conditioning(1), conditioning(2)
CPU = torch.device("cpu")
SD3_SAMPLING = types.SimpleNamespace(sampling_settings={"shift": 3.0})  # the part of a model config it reads


@pytest.fixture(scope="module")
def model():
    return ModelPatcher(BaseModel(None), CPU, CPU)


def sampler_node(**kw):
    """IterativeMixingSampler with the reference's defaults, ``kw`` on top."""
    inputs = {name: spec[1]["default"] for name, spec in REFERENCE_INPUTS["IterativeMixingSampler"][1:]}
    inputs.update(kw)
    return node("IterativeMixingSampler").get_sampler(None, **inputs)[0]


def custom(model, sampler, sigmas, lat, seed=5, add_noise=False, cfg=2.0):
    return SamplerCustom().sample(model, add_noise, seed, cfg, POSITIVE, NEGATIVE, sampler, sigmas, lat)[0]["samples"]


def scheduler(model, steps=5, name="karras"):
    return node("IterativeMixingScheduler").get_sigmas(model, name, steps, 1.0)[0]


def test_nine_reference_nodes_keep_inputs_order_types_and_defaults():
    for name, inputs in REFERENCE_INPUTS.items():
        ours = NODES[name].INPUT_TYPES()
        required = list(ours["required"].items())
        assert [k for k, _ in required] == [k for k, _ in inputs], name
        for (key, spec), (_, ref) in zip(required, inputs):
            kind = COMFY_LISTS.get(ref[0], ref[0]) if isinstance(ref[0], str) else ref[0]
            if isinstance(kind, list):
                assert spec[0][:len(kind)] == kind, (name, key)  # the reference's choices first, in order
            else:
                assert spec[0] == kind, (name, key)
            ref_options = ref[1] if len(ref) > 1 else {}
            our_options = spec[1] if len(spec) > 1 else {}
            assert {k: our_options.get(k) for k in ref_options} == ref_options, (name, key)
        for key, spec in ours.get("optional", {}).items():  # new inputs: optional, after, with defaults
            assert key not in ours["required"]
            assert isinstance(spec[0], list) is False or spec[1]["default"] in spec[0]
        assert NODES[name].RETURN_TYPES == REFERENCE_OUTPUTS[name]
        assert callable(getattr(NODES[name], NODES[name].FUNCTION)) and isinstance(NODES[name].CATEGORY, str)
    assert set(NODES["IterativeMixingSampler"].INPUT_TYPES()["required"]["sampler"][0]) == set(SAMPLERS)


def test_extension_folder_exports_the_mappings():
    spec = importlib.util.spec_from_file_location("comfyui_itermix", EXTENSION / "__init__.py",
                                                  submodule_search_locations=[str(EXTENSION)])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(REFERENCE_INPUTS) | {"IterMix DemoFusion Model", "IterMix Upscale"} == set(module.NODE_CLASS_MAPPINGS)
    assert set(module.NODE_DISPLAY_NAME_MAPPINGS) == set(module.NODE_CLASS_MAPPINGS)
    requirements = (EXTENSION / "requirements.txt").read_text()
    assert all(line.startswith("#") or not line.strip() for line in requirements.splitlines())


def test_schedulers_give_comfyuis_sigmas(model):
    ms = model.get_model_object("model_sampling")
    for name in comfy.samplers.SCHEDULER_NAMES:
        for steps, denoise in ((7, 1.0), (6, 0.6)):
            ours = node("IterativeMixingScheduler").get_sigmas(model, name, steps, denoise)[0]
            full = comfy.samplers.calculate_sigmas(ms, name, steps if denoise == 1.0 else int(steps / denoise))
            assert torch.equal(ours, full if denoise == 1.0 else full[-(steps + 1):]), (name, denoise)
        adv = node("IterativeMixingSchedulerAdvanced").get_sigmas(model, name, 7, 2, 5, 1.0)[0]
        assert torch.equal(adv, comfy.samplers.calculate_sigmas(ms, name, 7)[:6][2:]), name
    ks = comfy.samplers.KSampler(model, 6, "cpu", sampler="dpm_2", scheduler="normal", denoise=0.5)
    from itermix_kdiff.comfy import ksampler_sigmas
    assert torch.equal(ksampler_sigmas(model, "dpm_2", "normal", 6, 0.5), ks.sigmas)


def core_sampler(function, **kw):
    """A KSAMPLER whose function calls the core sampler on SamplerCustom's x, as the reference
    pack does (with add_noise off, x is the clean latent)."""
    def fn(model, x, sigmas, extra_args=None, callback=None, disable=None):
        return function(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, **kw)
    return comfy.samplers.KSAMPLER(fn)


def test_global_rng_equals_the_core_and_the_reference_loop(model):
    lat, sigmas = latent(), scheduler(model, 6)
    runs = []
    for sampler in (sampler_node(rng="global"), core_sampler(sample_itermix_euler),
                    comfy.samplers.KSAMPLER(lambda m, x, s, extra_args=None, callback=None, disable=None:
                                            a4_euler(lambda v, t: m(v, t, **extra_args), x, s))):
        torch.manual_seed(123)
        runs.append(custom(model, sampler, sigmas, lat))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    # euler_perlin reads its Perlin seed from SamplerCustom's noise_seed, as the reference does
    perlin = []
    for sampler in (sampler_node(rng="global", sampler="euler_perlin"),
                    core_sampler(sample_itermix_euler_perlin, seed=5)):
        torch.manual_seed(7)
        perlin.append(custom(model, sampler, sigmas, lat))
    assert torch.equal(perlin[0], perlin[1])
    # and the global RNG is what it reads: another state, another latent
    torch.manual_seed(8)
    assert not torch.equal(custom(model, sampler_node(rng="global"), sigmas, lat), runs[0])


def test_default_rng_repeats_whatever_ran_before_and_handles_batches(model):
    lat, sigmas = latent(), scheduler(model, 5)
    torch.manual_seed(1)
    first = custom(model, sampler_node(), sigmas, lat)
    torch.manual_seed(2)
    torch.randn(100)
    assert torch.equal(custom(model, sampler_node(), sigmas, lat), first)
    assert not torch.equal(custom(model, sampler_node(), sigmas, lat, seed=6), first)
    # add_noise on: the sampler starts from the clean latent and ignores the added noise
    assert torch.equal(custom(model, sampler_node(), sigmas, lat, add_noise=True), first)
    pair = {"samples": torch.cat([lat["samples"], latent(seed=3)["samples"]])}
    two = custom(model, sampler_node(), sigmas, pair)
    assert two.shape == (2, 4, 8, 8) and torch.isfinite(two).all()
    torch.testing.assert_close(two[:1], first, rtol=1e-5, atol=1e-5)  # row 0 draws the batch-of-one noise
    assert not torch.allclose(two[0], two[1])


def test_every_sampler_runs_with_presets_noise_and_lazy(model):
    lat, sigmas = latent(size=4), scheduler(model, 3)
    outs = {}
    for name in SAMPLERS:
        outs[name] = custom(model, sampler_node(sampler=name), sigmas, lat)
        assert outs[name].shape == lat["samples"].shape and torch.isfinite(outs[name]).all(), name
    assert len({tuple(o.flatten()[:4].tolist()) for o in outs.values()}) > 5
    eager = custom(model, sampler_node(preset="demofusion"), sigmas, lat)
    assert torch.equal(custom(model, sampler_node(preset="demofusion", lazy=True), sigmas, lat), eager)
    assert not torch.equal(eager, outs["euler"])
    shared = custom(model, sampler_node(noise="shared"), sigmas, lat)
    assert not torch.equal(shared, outs["euler"])
    before = custom(model, sampler_node(mix="before_step"), sigmas, lat)
    assert not torch.equal(before, outs["euler"])


def test_mixing_masks_limit_where_mixing_happens(model):
    lat, sigmas = latent(), scheduler(model, 5)
    plain = custom(model, sampler_node(), sigmas, lat)
    ones = custom(model, sampler_node(mixing_masks=torch.ones(1, 64, 64)), sigmas, lat)
    assert torch.equal(ones, plain)
    zeros = custom(model, sampler_node(mixing_masks=torch.zeros(5, 8, 8)), sigmas, lat)
    assert torch.equal(zeros, custom(model, sampler_node(blend_min=1.0), sigmas, lat))  # no mixing at all
    masks = node("MixingMaskGenerator").get_masks("perlin", 10.0, 3, 64, 64, 5)[0]
    assert masks.shape == (5, 8, 8) and 0 <= masks.min() and masks.max() <= 1
    perlin = custom(model, sampler_node(mixing_masks=masks), sigmas, lat)
    assert not torch.equal(perlin, plain) and not torch.equal(perlin, zeros)
    with pytest.raises(ValueError, match="mixing_masks"):
        custom(model, sampler_node(mixing_masks=torch.ones(3, 8, 8)), sigmas, lat)


def test_inpainting_mask_and_differential_diffusion(model):
    lat, sigmas = latent(), scheduler(model, 5)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    inpaint = custom(model, sampler_node(), sigmas, {**lat, "noise_mask": mask})
    keep = comfy.utils.reshape_mask(mask, inpaint.shape) == 0
    torch.testing.assert_close(inpaint[keep], lat["samples"][keep])
    assert not torch.allclose(inpaint[~keep], lat["samples"][~keep])
    soft = torch.linspace(0, 1, 64).expand(1, 64, 64).clone()
    dd_model = DifferentialDiffusion.execute(model)[0]
    dd = custom(dd_model, sampler_node(), sigmas, {**lat, "noise_mask": soft})
    plain_soft = custom(model, sampler_node(), sigmas, {**lat, "noise_mask": soft})
    assert torch.isfinite(dd).all() and not torch.equal(dd, plain_soft)


def test_progress_bar_previews_and_interrupts_pass_through(model):
    lat, sigmas = latent(), scheduler(model, 4)
    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        out, denoised = SamplerCustom().sample(model, False, 5, 2.0, POSITIVE, NEGATIVE, sampler_node(), sigmas, lat)
        assert seen == [(i, 4) for i in range(1, 5)]
        assert denoised is not out and denoised["samples"].shape == out["samples"].shape

        def interrupting(value, total, preview, node_id=None):
            comfy.model_management.interrupt_current_processing()
            comfy.model_management.throw_exception_if_processing_interrupted()
        comfy.utils.set_progress_bar_global_hook(interrupting)
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            custom(model, sampler_node(sampler="heun"), sigmas, lat)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        comfy.model_management.interrupt_current_processing(False)


def test_demofusion_model_tiles_every_denoiser_call(model):
    patched = node("IterMix DemoFusion Model").patch(model, 32, 1.0, 1.0, 0.8, 4, True, "uniform")[0]
    assert patched is not model and not model.wrappers
    lat, sigmas = latent(), scheduler(model, 3)
    net = model.model.diffusion_model
    start = net.calls
    plain = custom(model, sampler_node(), sigmas, lat)
    plain_calls, start = net.calls - start, net.calls
    tiled = custom(patched, sampler_node(), sigmas, lat)
    assert net.calls - start > plain_calls and torch.isfinite(tiled).all() and not torch.equal(tiled, plain)
    assert torch.equal(custom(patched, sampler_node(), sigmas, lat), tiled)  # jitter seeded per step
    small = latent(size=4)  # one window: the model as it is
    assert torch.equal(custom(patched, sampler_node(), sigmas, small), custom(model, sampler_node(), sigmas, small))


def test_upscale_node_upscales_mixes_and_cleans_up(model):
    up = node("IterMix Upscale")
    args = (model, POSITIVE, NEGATIVE, latent(size=4), 3, 4, 2.0, "euler", "karras", "bicubic", 2.0, 2.4,
            "cosine", "addition", "reference", "euler", 4, 0.3)
    cleaned, mixed = up.upscale(*args)
    assert cleaned["samples"].shape == mixed["samples"].shape == (1, 4, 8, 8)
    assert not torch.equal(cleaned["samples"], mixed["samples"])
    again, _ = up.upscale(*args)
    assert torch.equal(again["samples"], cleaned["samples"])


def test_deprecated_flow_and_plots(model):
    lat = latent(batch=2, size=4)
    batch = node("Batch Unsampler").unsampler(model, "euler", "karras", 4, 0, 10000, lat)[0]
    assert batch["samples"].shape == (10, 4, 4, 4) and batch["itermix_batch_size"] == 2
    torch.testing.assert_close(batch["samples"][:2], lat["samples"])  # sigma_n = 0: the clean latent
    mixed, noised, inter, plot = node("Iterative Mixing KSampler Advanced").sample(
        model, 1, 2.0, "euler", "karras", POSITIVE, NEGATIVE, batch)
    assert mixed["samples"].shape == noised["samples"].shape == inter["samples"].shape == (10, 4, 4, 4)
    torch.testing.assert_close(noised["samples"][:2], batch["samples"][-2:])  # noisiest first
    assert plot.ndim == 4 and plot.shape[-1] == 3
    simple = node("Iterative Mixing KSampler").sample(model, POSITIVE, NEGATIVE, lat, 1, 4, 2.0, "euler", "karras",
                                                      1.0, 2.4, "cosine", "addition", False)[0]["samples"]
    assert simple.shape == (2, 4, 4, 4) and torch.isfinite(simple).all()
    stats = node("Latent Batch Statistics Plot").statistics(batch)[0]
    compare = node("Latent Batch Comparison Plot").plot_latent_differences(mixed, noised)[0]
    for image in (stats, compare):
        assert image.shape[0] == 1 and image.shape[-1] == 3 and 0 <= image.min() and image.max() <= 1


def test_flow_models_noise_their_way_and_refuse_rewind():
    flow = ModelPatcher(BaseModel(SD3_SAMPLING, ModelType.FLOW), CPU, CPU)
    ms = flow.get_model_object("model_sampling")
    lat, sigmas = latent(size=4), scheduler(flow, 4, "simple")
    out = custom(flow, sampler_node(), sigmas, lat)
    assert torch.isfinite(out).all()
    x0 = lat["samples"]
    z = comfy_noised_latents(ms, x0, sigmas, noise="shared", generator=torch.Generator().manual_seed(0), lazy=False)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z[2], sigmas[2] * eps + (1 - sigmas[2]) * x0)
    with pytest.raises(ValueError, match="rewind"):
        custom(flow, sampler_node(rewind=True), sigmas, lat)


def test_bad_inputs_fail_at_the_node_naming_the_input(model):
    with pytest.raises(ValueError, match="rng"):
        sampler_node(rng="cuda")
    with pytest.raises(ValueError, match="blend_max"):
        sampler_node(blend_max=1.5)
    with pytest.raises(ValueError, match="sampler"):
        sampler_node(sampler="uni_pc")
    with pytest.raises(ValueError, match="clean latent"):
        sample_comfy(object(), torch.zeros(1, 4, 4, 4), torch.ones(3))


WIDGET_TYPES = ("INT", "FLOAT", "BOOLEAN", "STRING")


def test_shipped_workflows_ui_and_api_formats_agree():
    import json

    folder = EXTENSION / "workflows"
    uis = sorted(p for p in folder.glob("*.json") if not p.name.endswith("_api.json"))
    assert len(uis) >= 3
    for ui_path in uis:
        api = json.loads((folder / (ui_path.stem + "_api.json")).read_text())
        ui = json.loads(ui_path.read_text())
        nodes = {str(n["id"]): n for n in ui["nodes"]}
        links = {link[0]: link for link in ui["links"]}
        assert set(nodes) == set(api), ui_path.name
        for node_id, n in nodes.items():
            assert n["type"] == api[node_id]["class_type"]
            for socket in n["inputs"]:
                value = api[node_id]["inputs"].get(socket["name"])
                if socket["link"] is None:
                    assert value is None, (ui_path.name, node_id, socket["name"])
                else:
                    link = links[socket["link"]]
                    assert [str(link[1]), link[2]] == value and link[3] == int(node_id)
            if n["type"] not in NODES:
                continue
            types = NODES[n["type"]].INPUT_TYPES()
            items = list(types["required"].items()) + list(types.get("optional", {}).items())
            expected = []
            for key, spec in items:
                if isinstance(spec[0], list) or spec[0] in WIDGET_TYPES:
                    value = api[node_id]["inputs"][key]
                    options = spec[1] if len(spec) > 1 else {}
                    assert value in spec[0] if isinstance(spec[0], list) else \
                        options.get("min", value) <= value <= options.get("max", value), (n["type"], key)
                    expected += [value, "fixed"] if key in ("seed", "noise_seed") else [value]
            assert n["widgets_values"] == expected, (ui_path.name, n["type"])
