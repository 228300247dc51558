"""The ComfyUI node pack (itermix_kdiff.comfy, extensions/comfyui-itermix) against a stand-in of
ComfyUI 0.8.0 (tests/comfy_standin, mirroring its API) whose diffusion model is a real
k-diffusion DiscreteEpsDDPMDenoiser. Flows run through the stand-in's SamplerCustom, KSAMPLER,
CFGGuider and KSamplerX0Inpaint as ComfyUI runs them."""

from __future__ import annotations

import importlib.util
import inspect
import os
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

from comfy_extras.nodes_custom_sampler import (CFGGuider, DisableNoise, RandomNoise,  # noqa: E402
                                               SamplerCustomAdvanced)

from itermix_kdiff import (SAMPLERS, ItermixOptions, make_options, sample_itermix_euler,  # noqa: E402
                           sample_itermix_euler_perlin)
from itermix_kdiff.comfy import NODE_CLASS_MAPPINGS as NODES, comfy_noised_latents, ksampler_sigmas  # noqa: E402
from itermix_kdiff.comfy.nodes import mix_batch, unsample_latent  # noqa: E402
from itermix_kdiff.comfy.sampler import (comfy_function, is_brownian, resolve_options, sample_comfy,  # noqa: E402
                                         sampler_function)
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
            assert our_options == ref_options, (name, key)  # the whole dict: no extra min, max or step
        function = inspect.signature(getattr(NODES[name], NODES[name].FUNCTION)).parameters
        for key, spec in ours.get("optional", {}).items():  # new inputs: optional, after, with defaults
            assert key not in ours["required"]
            if len(spec) > 1:
                assert isinstance(spec[0], list) is False or spec[1]["default"] in spec[0]
                # ComfyUI's frontend sends the declared default, an API prompt saved with the
                # reference omits the input: both must run the same
                assert function[key].default == spec[1]["default"], (name, key)
            else:
                assert function[key].default is None, (name, key)
        assert NODES[name].RETURN_TYPES == REFERENCE_OUTPUTS[name]
        assert callable(getattr(NODES[name], NODES[name].FUNCTION)) and isinstance(NODES[name].CATEGORY, str)
    assert set(NODES["IterativeMixingSampler"].INPUT_TYPES()["required"]["sampler"][0]) == set(SAMPLERS)


def test_new_inputs_default_to_the_references_mixing():
    """The sampler's new inputs at their defaults mix as the reference does (after the step, a new
    noise per step, every latent held); only ``rng`` departs, on purpose: seeded noise, with
    ``rng="global"`` the reference's (test_global_rng_equals_the_core_and_the_reference_loop)."""
    optional = NODES["IterativeMixingSampler"].INPUT_TYPES()["optional"]
    assert optional["mixing_masks"] == ("MASK",)  # no mask: mix everywhere, as the reference
    defaults = {key: spec[1]["default"] for key, spec in optional.items() if len(spec) > 1}
    assert defaults.pop("rng") == "seed"
    preset = defaults.pop("preset")
    assert make_options(**resolve_options(preset, defaults)) == ItermixOptions()
    assert ItermixOptions().mix == "after_step" and ItermixOptions().noise == "independent"


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


def test_sampler_custom_advanced_seeds_from_its_noise_node(model):
    """SamplerCustomAdvanced gives the sampler its NOISE's seed: DisableNoise's is always 0, so
    with it the default rng always draws seed 0's noise; RandomNoise(s) (whose noise the
    sampler ignores: it noises the clean latent itself) gives seed s, as SamplerCustom does."""
    lat, sigmas = latent(), scheduler(model, 4)
    guider = CFGGuider.execute(model, POSITIVE, NEGATIVE, 2.0)[0]

    def advanced(noise):
        return SamplerCustomAdvanced.execute(noise, guider, sampler_node(), sigmas, lat)[0]["samples"]

    disabled = advanced(DisableNoise.execute()[0])
    assert torch.equal(disabled, custom(model, sampler_node(), sigmas, lat, seed=0))
    random5 = advanced(RandomNoise.execute(5)[0])
    assert torch.equal(random5, custom(model, sampler_node(), sigmas, lat, seed=5))
    assert torch.equal(random5, custom(model, sampler_node(), sigmas, lat, seed=5, add_noise=True))
    assert not torch.equal(random5, disabled) and not torch.equal(advanced(RandomNoise.execute(6)[0]), random5)


def test_standin_model_sampling_and_kdiffusion_helpers(model):
    """The stand-in's percent_to_sigma, to_d and default_noise_sampler behave as ComfyUI 0.8.0's."""
    import comfy.k_diffusion.sampling as kds
    from comfy.model_sampling import ModelSamplingDiscreteFlow, time_snr_shift

    ms = model.get_model_object("model_sampling")
    assert ms.percent_to_sigma(0.0) == 999999999.9 and ms.percent_to_sigma(1.0) == 0.0
    assert ms.percent_to_sigma(0.5) == float(ms.sigma(torch.tensor(499.5)))
    assert float(ms.sigmas[-2]) < ms.percent_to_sigma(0.0005) < float(ms.sigma_max)  # timestep 998.5
    assert isinstance(ms.percent_to_sigma(0.3), float) and ms.percent_to_sigma(0.3) > ms.percent_to_sigma(0.6)
    flow = ModelSamplingDiscreteFlow(SD3_SAMPLING)
    assert flow.percent_to_sigma(0.0) == 1.0 and flow.percent_to_sigma(1.0) == 0.0
    assert flow.percent_to_sigma(0.25) == time_snr_shift(3.0, 0.75)
    x, denoised = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([2.0, 4.0])
    torch.testing.assert_close(kds.to_d(x, sigma, denoised), (x - denoised) / sigma[:, None, None, None])
    torch.manual_seed(9)
    unseeded = kds.default_noise_sampler(x)(None, None)
    torch.manual_seed(9)
    assert torch.equal(unseeded, torch.randn(x.shape))  # the global RNG
    seeded = kds.default_noise_sampler(x, seed=7)
    first = seeded(None, None)
    assert torch.equal(first, torch.randn(x.shape, generator=torch.Generator().manual_seed(8)))  # seed + 1 on CPU
    assert not torch.equal(seeded(None, None), first)


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
    # the generator's "random" masks are standard normal, as the reference's: for viewing only
    normal = node("MixingMaskGenerator").get_masks("random", 10.0, 3, 64, 64, 5)[0]
    assert normal.shape == (5, 8, 8) and normal.min() < 0
    with pytest.raises(ValueError, match=r"\[0, 1\].*'random' masks are standard normal.*for viewing.*perlin"):
        custom(model, sampler_node(mixing_masks=normal), sigmas, lat)


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
    import json

    up = node("IterMix Upscale")
    recipe = json.loads((EXTENSION / "workflows" / "itermix_upscale_recipe_api.json").read_text())
    method = next(n["inputs"]["upscale_method"] for n in recipe.values() if n["class_type"] == "LatentUpscaleBy")
    assert up.INPUT_TYPES()["required"]["upscale_method"][1]["default"] == method == "bislerp"
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


def test_deprecated_nodes_take_every_comfyui_sampler_name(model):
    """ComfyUI's sampler list holds names that are not itermix samplers (lms, ddim, dpm_fast, ...;
    44 in ComfyUI 0.8.0): the deprecated nodes run each one step at a time, as the reference ran
    ComfyUI's KSampler one step at a time, and the one-node version is Batch Unsampler + Iterative
    Mixing KSampler Advanced on one schedule, seeded by its seed."""
    names = comfy.samplers.KSampler.SAMPLERS
    outside = [name for name in names if name not in SAMPLERS]
    assert {"lms", "ddim", "dpm_fast", "dpm_adaptive", "dpmpp_3m_sde"} <= set(outside)
    lat = latent(size=4)
    one = node("Iterative Mixing KSampler")
    outs = {}
    for name in names:
        args = (model, POSITIVE, NEGATIVE, lat, 3, 3, 2.0, name, "karras", 1.0, 2.4, "cosine", "addition", False)
        outs[name] = one.sample(*args)[0]["samples"]
        assert outs[name].shape == lat["samples"].shape and torch.isfinite(outs[name]).all(), name
        assert torch.equal(one.sample(*args)[0]["samples"], outs[name]), name  # seeded: repeats
    assert torch.equal(outs["ddim"], outs["euler"])  # ComfyUI's ddim is its Euler
    assert len({tuple(o.flatten()[:4].tolist()) for o in outs.values()}) > len(names) // 2
    # the same path as the two nodes: batch_unsample, then itermix_ksampler over ComfyUI's sampler
    for name in ("euler", "lms", "dpm_fast"):
        sigmas = ksampler_sigmas(model, name, "karras", 3)
        batch = unsample_latent(model, sigmas, lat, generator=torch.Generator().manual_seed(3))
        advanced = node("Iterative Mixing KSampler Advanced").sample(model, 3, 2.0, name, "karras", POSITIVE,
                                                                     NEGATIVE, batch)[0]["samples"]
        assert torch.equal(advanced[-1:], outs[name]), name
        options = dict(alpha_1=2.4, blending_schedule="cosine", stop_blending_at_pct=1.0, clamp_blending_at_pct=1.0,
                       blending_function="addition")
        direct = mix_batch(model, POSITIVE, NEGATIVE, batch, 3, 2.0, comfy_function(name), sigmas, True, options)
        assert torch.equal(direct["mixed"], advanced), name
    with pytest.raises(ValueError, match="sampler_name .*euler, euler_ancestral"):
        one.sample(model, POSITIVE, NEGATIVE, lat, 3, 3, 2.0, "uni_pc", "karras", 1.0, 2.4, "cosine", "addition",
                   False)


def test_comfy_sampler_functions_are_built_once_and_brownian_by_family():
    assert sampler_function("heun") is sampler_function("heun")
    assert sampler_function("euler") is SAMPLERS["euler"]
    for name in ("sample_dpmpp_sde", "sample_dpmpp_sde_gpu", "sample_dpmpp_2m_sde_heun_gpu", "sample_dpmpp_3m_sde",
                 "sample_itermix_dpmpp_2m_sde"):
        assert is_brownian(name), name
    for name in ("sample_euler_ancestral", "sample_dpmpp_2m", "sample_lcm", "sample_itermix_heun"):
        assert not is_brownian(name), name


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


SEED_PACK = os.environ.get("ITERMIX_SEED_PACK")


@pytest.fixture(scope="module")
def seed_pack():
    """The ComfyUI-Iterative-Mixer pack at ``ITERMIX_SEED_PACK``, imported into the stand-in."""
    spec = importlib.util.spec_from_file_location("itermix_seed_pack", Path(SEED_PACK) / "__init__.py",
                                                  submodule_search_locations=[SEED_PACK])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module.NODE_CLASS_MAPPINGS
    finally:
        for name in [n for n in sys.modules if n == spec.name or n.startswith(spec.name + ".")]:
            del sys.modules[name]


@pytest.mark.skipif(not SEED_PACK, reason="set ITERMIX_SEED_PACK=/path/to/ComfyUI-Iterative-Mixer to compare with it")
def test_reference_pack_in_the_standin_equals_rng_global(model, seed_pack):
    """The reference pack's own nodes, run in the stand-in, against ours with ``rng="global"``
    from the same global RNG state: its sampler for every sampler and option family, and its two
    schedulers, bit for bit."""
    def reference_sampler(**kw):
        inputs = {name: spec[1]["default"] for name, spec in REFERENCE_INPUTS["IterativeMixingSampler"][1:]}
        return seed_pack["IterativeMixingSampler"]().get_sampler(None, **{**inputs, **kw})[0]

    for name in comfy.samplers.SCHEDULER_NAMES:
        for args in ((7, 1.0), (6, 0.6)):
            theirs = seed_pack["IterativeMixingScheduler"]().get_sigmas(model, name, *args)[0]
            assert torch.equal(node("IterativeMixingScheduler").get_sigmas(model, name, *args)[0], theirs), name
        for args in ((7, 2, 5, 1.0), (8, 0, 5, 1.0), (6, 1, 10000, 0.6)):
            theirs = seed_pack["IterativeMixingSchedulerAdvanced"]().get_sigmas(model, name, *args)[0]
            assert torch.equal(node("IterativeMixingSchedulerAdvanced").get_sigmas(model, name, *args)[0],
                               theirs), (name, args)
    lat = latent()
    full = scheduler(model, 6)
    part = node("IterativeMixingSchedulerAdvanced").get_sigmas(model, "karras", 8, 0, 5, 1.0)[0]
    cases = [({}, full), ({"blending_function": "slerp"}, full), ({"rewind": True}, full),
             ({"sampler": "lcm"}, full), ({"sampler": "dpmpp_2m"}, full), ({}, part),
             ({"blending_schedule": "logistic", "blend_min": 0.2, "clamp_blending_at_pct": 0.7}, full)]
    cases += [({"sampler": "euler_perlin", "perlin_mode": m}, full) for m in ("masks", "latents", "matched_noise")]
    for kw, sigmas in cases:
        outs = []
        for sampler in (reference_sampler(**kw), sampler_node(rng="global", **kw)):
            torch.manual_seed(11)
            outs.append(custom(model, sampler, sigmas, lat))
        assert torch.equal(outs[0], outs[1]), (kw, float((outs[0] - outs[1]).abs().max()))
