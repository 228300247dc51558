"""The webui shim (itermix_kdiff.webui and extensions/sd-webui-itermix) against a stand-in
of the webui's ``modules`` package (tests/webui_standin, written from docs/webui-api.md) in two
flavours, A1111 1.10 and Forge, with real k-diffusion model wrappers and the webui's own
conditioning objects (prompt schedules, multi-prompt conditioning, CFG callbacks)."""

from __future__ import annotations

import configparser
import dataclasses
import importlib.metadata
import inspect
import logging
import re
import runpy
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import itermix_kdiff
import itermix_kdiff.webui as itermix_webui
from itermix_kdiff import blending_schedules, sampling
from itermix_kdiff.noised import noised_latents
from itermix_kdiff.webui import registry
from itermix_kdiff.webui.settings import FIELDS, ROWS, api_name, api_params, infotext_key, settings_from_args
from .kd_models import sd_alphas_cumprod

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "webui_standin"
EXTENSION = ROOT / "extensions" / "sd-webui-itermix"
SCRIPT = str(EXTENSION / "scripts" / "itermix.py")
EXTRA_ARGS_KEYS = {"cond", "image_cond", "uncond", "cond_scale", "s_min_uncond"}
PROMPT, NEGATIVE = "a red square", "blurry"
TOKENS, DIM, VECTOR = 3, 8, 6


class TinySD(nn.Module):
    """A CompVis-style model: ``get_learned_conditioning(texts)`` gives each text a fixed
    ``(TOKENS, DIM)`` embedding (SDXL, ``kind="sdxl"``: a dict with ``crossattn`` and
    ``vector``); ``apply_model(x, t, cond)`` reads the webui's condition dict and predicts
    eps (or, with ``parameterization="flow"``, the velocity, with ``t = 1000 sigma``). An
    edit model (``kind="edit"``, instruct-pix2pix) also reads the image conditioning
    ``c_concat`` as extra input channels. Fixed weights."""

    def __init__(self, parameterization: str = "eps", kind: str = "sd"):
        super().__init__()
        self.parameterization = parameterization
        self.kind = kind
        self.cond_stage_key = "edit" if kind == "edit" else "txt"
        self.conv = nn.Conv2d(8 if kind == "edit" else 4, 4, 3, padding=1)
        self.proj = nn.Linear(DIM, 4)
        self.vector = nn.Linear(VECTOR, 4)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=g) * 0.1)
        self.register_buffer("alphas_cumprod", sd_alphas_cumprod())
        self.batch_sizes = []

    def get_learned_conditioning(self, texts):
        rows = [torch.randn(TOKENS, DIM + VECTOR, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
                for t in texts]
        stacked = torch.stack(rows)
        if self.kind == "sdxl":
            return {"crossattn": stacked[..., :DIM], "vector": stacked[:, 0, DIM:]}
        return stacked[..., :DIM]

    def apply_model(self, x, t, cond):
        self.batch_sizes.append(x.shape[0])
        text = cond["crossattn"] if self.kind == "sdxl" else cond["c_crossattn"][0]
        h = torch.cat([x, cond["c_concat"][0]], 1) if self.kind == "edit" else x
        out = self.conv(h) * torch.sigmoid(t.float() / 500 - 1).view(-1, 1, 1, 1)
        out = out + self.proj(text.mean(1))[:, :, None, None]
        if self.kind == "sdxl":
            out = out + self.vector(cond["vector"])[:, :, None, None]
        return out


def forget_webui_modules():
    for name in list(sys.modules):
        if name.split(".")[0] in ("modules", "gradio", "launch"):
            del sys.modules[name]


def open_webui(flavour, monkeypatch):
    """Import the stand-in of ``flavour`` as ``modules`` (with gradio and launch); undone
    by the caller through :func:`close_webui`."""
    import k_diffusion.sampling

    forget_webui_modules()
    torch.set_num_threads(1)  # tiny tensors: a second thread only waits (restored by close_webui)
    monkeypatch.syspath_prepend(str(STANDIN / "common"))
    monkeypatch.syspath_prepend(str(STANDIN / flavour))
    from modules import (infotext_utils, processing, prompt_parser, rng, script_callbacks, scripts, sd_samplers,
                         sd_samplers_common, sd_samplers_kdiffusion, shared)

    return SimpleNamespace(flavour=flavour, infotext_utils=infotext_utils, processing=processing,
                           prompt_parser=prompt_parser, rng=rng, callbacks=script_callbacks, scripts=scripts,
                           sd_samplers=sd_samplers, common=sd_samplers_common, kdiffusion=sd_samplers_kdiffusion,
                           shared=shared, saved_torch=k_diffusion.sampling.torch, saved_rng=torch.get_rng_state(),
                           saved_threads=torch.get_num_threads())


def close_webui(w):
    import k_diffusion.sampling

    k_diffusion.sampling.torch = w.saved_torch  # the stand-in's initialize() hijacks it, as the webui's does
    torch.set_rng_state(w.saved_rng)  # and its ImageRNG seeds the global RNG, as the webui's does
    torch.set_num_threads(w.saved_threads)
    forget_webui_modules()


@pytest.fixture(params=["a1111", "forge"])
def webui(request, monkeypatch):
    w = open_webui(request.param, monkeypatch)
    yield w
    close_webui(w)


@pytest.fixture
def forge(monkeypatch):
    w = open_webui("forge", monkeypatch)
    yield w
    close_webui(w)


@pytest.fixture
def a1111(monkeypatch):
    w = open_webui("a1111", monkeypatch)
    yield w
    close_webui(w)


@pytest.fixture
def spy(monkeypatch):
    """Record every call of a core itermix sampler (then run it)."""
    calls = []

    def recorder(name, real):
        def recording(model, x, sigmas, **kwargs):
            calls.append(SimpleNamespace(name=name, model=model, x=x, sigmas=sigmas, kwargs=kwargs,
                                         extra_keys=set(kwargs["extra_args"])))
            return real(model, x, sigmas, **kwargs)
        recording.__signature__ = inspect.signature(real)
        return recording

    for name in ("euler", "euler_perlin", "dpmpp_2m", "dpmpp_sde", "euler_ancestral", "dpmpp_2m_sde"):
        monkeypatch.setitem(itermix_kdiff.SAMPLERS, name, recorder(name, itermix_kdiff.SAMPLERS[name]))
    return calls


def start(w, is_img2img):
    """Load the extension and build the UI: returns the ScriptRunner."""
    w.scripts.load_scripts([SCRIPT])
    runner = w.scripts.ScriptRunner()
    runner.initialize_scripts(is_img2img)
    runner.setup_ui()
    return runner


def set_values(runner, **values):
    by_label = {field.label: field.component for field in runner.infotext_fields}
    for name, value in values.items():
        by_label[f"Itermix {name}"].value = value


def clean_latent(batch=1, seed=7, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 4, size, size, generator=g).repeat(batch, 1, 1, 1)


def job_args(runner, kwargs):
    return dict(prompt=kwargs.pop("prompt", PROMPT), negative_prompt=kwargs.pop("negative_prompt", NEGATIVE),
                scripts=runner, script_args=runner.script_args(), **kwargs)


def txt2img(w, runner, sd_model, **kwargs):
    p = w.processing.StableDiffusionProcessingTxt2Img(sd_model=sd_model, **job_args(runner, kwargs))
    return p, w.processing.process_images(p)


def img2img(w, runner, sd_model, init_latent, **kwargs):
    kwargs.setdefault("batch_size", init_latent.shape[0])
    p = w.processing.StableDiffusionProcessingImg2Img(sd_model=sd_model, init_latent=init_latent,
                                                      **job_args(runner, kwargs))
    return p, w.processing.process_images(p)


def seeded_stack(x0, sigmas, seed):
    """The core's seeded noised latents (A1 with a generator), the numbers the shim uses for k >= 1."""
    return noised_latents(x0, sigmas, generator=torch.Generator().manual_seed(seed))


def family_row(w, label):
    """The stand-in's built-in row ``(label, function, aliases, options)`` of ``label``'s family."""
    family = registry.WEBUI_SAMPLERS[label].family
    return next(row for row in w.kdiffusion.samplers_k_diffusion if row[0] == family)


def test_script_registers_each_sampler_once(webui):
    w = webui
    first = w.sd_samplers.all_samplers[0].name  # what an unknown name gives
    assert w.sd_samplers.get_sampler_and_scheduler("Euler IterMix", "Karras") == (first, "Karras")
    start(w, False)
    registered = dict(w.sd_samplers.all_samplers_map)
    start(w, False)  # "Reload UI": the script file runs again as a fresh module
    assert len(w.scripts.scripts_data) == 1
    assert w.scripts.scripts_data[0].script_class.__name__ == "IterativeMixingScript"

    names = [s.name for s in w.sd_samplers.all_samplers]
    builtins = [row[0] for row in w.kdiffusion.samplers_k_diffusion]
    labels = list(itermix_webui.available_samplers())
    assert labels[:3] == ["Euler IterMix", "Euler Perlin IterMix", "DPM++ 2M IterMix"]
    assert names[:len(builtins)] == builtins and len(names) == len(builtins) + len(labels)
    for label in labels:
        assert names.count(label) == 1
        data = w.sd_samplers.all_samplers_map[label]
        assert data is w.sd_samplers.all_samplers[names.index(label)] and data is not registered[label]
        assert label in w.sd_samplers.visible_sampler_names()
        assert w.sd_samplers.samplers_map[label.lower()] == label
        assert w.sd_samplers.get_sampler_and_scheduler(label, "Karras") == (label, "Karras")
        family_options = family_row(w, label)[3]
        assert isinstance(data.options, dict) and data.options == family_options  # every option inherited
        assert data.total_steps(10) == (20 if family_options.get("second_order") else 10)
        sampler = w.sd_samplers.create_sampler(label, TinySD())
        params = inspect.signature(sampler.func).parameters
        assert {"sigmas", "extra_args", "callback", "disable", "noise_sampler"} <= set(params)
        assert not {"n", "eta", "sigma_min", "sigma_max", "sigma_sched"} & set(params)
    assert hasattr(w.sd_samplers, "add_sampler") == (w.flavour == "forge")


def test_register_offers_what_the_core_has(webui, monkeypatch, caplog):
    """A sampler listed in SAMPLERS appears only when its function exists; in txt2img
    each falls back to its own plain sampler (DPM++ 2M, Euler a here)."""
    w = webui
    monkeypatch.setitem(registry.WEBUI_SAMPLERS, "Future IterMix", itermix_webui.WebuiSampler("future", "Euler a"))
    monkeypatch.setitem(registry.WEBUI_SAMPLERS, "Unknown IterMix", itermix_webui.WebuiSampler("euler", "Unknown"))
    with caplog.at_level(logging.WARNING, logger="itermix_kdiff.webui"):
        start(w, False)
    assert "Future IterMix" not in w.sd_samplers.all_samplers_map
    assert "Unknown IterMix" not in w.sd_samplers.all_samplers_map and "no Unknown sampler" in caplog.text
    monkeypatch.setitem(itermix_kdiff.SAMPLERS, "future", itermix_kdiff.SAMPLERS["euler"])
    runner = start(w, False)
    assert [s.name for s in w.sd_samplers.all_samplers].count("Future IterMix") == 1
    for builtin in ("DPM++ 2M", "Euler a"):
        _, plain = txt2img(w, runner, TinySD(), sampler_name=builtin, seed=5)
        with caplog.at_level(logging.WARNING, logger="itermix_kdiff.webui"):
            _, mixed = txt2img(w, runner, TinySD(), sampler_name=f"{builtin} IterMix", seed=5)
        assert torch.equal(mixed.samples, plain.samples)
    assert "as DPM++ 2M;" in caplog.text and "as Euler a;" in caplog.text


@pytest.mark.filterwarnings("ignore:Should have t:UserWarning")  # torchsde on k-diffusion's float32 sigma bounds
@pytest.mark.parametrize("label", list(itermix_webui.available_samplers()))
def test_every_sampler_reproduces_its_seed(webui, label):
    """img2img: the same seed twice gives the same latent, another seed another one (txt2img
    is the family's built-in, test_txt2img_and_schedule_equal_the_family_builtin)."""
    w = webui
    runner = start(w, True)
    x0 = clean_latent()
    runs = [img2img(w, runner, TinySD(), x0, sampler_name=label, denoising_strength=0.7, steps=5, seed=s)[1]
            for s in (8, 8, 9)]
    assert torch.isfinite(runs[0].samples).all() and torch.equal(runs[0].samples, runs[1].samples)
    assert not torch.allclose(runs[0].samples, runs[2].samples, atol=1e-3)


def test_register_rejects_a_scheduler_suffix(webui, monkeypatch):
    w = webui
    entry = registry.WEBUI_SAMPLERS["Euler IterMix"]
    monkeypatch.setitem(registry.WEBUI_SAMPLERS, "Euler IterMix Karras", entry)
    with pytest.raises(ValueError, match="Karras"):
        itermix_webui.register(w.sd_samplers, w.common, w.kdiffusion)
    assert "Euler IterMix Karras" not in w.sd_samplers.all_samplers_map


def test_txt2img_is_plain_euler(webui, spy, caplog):
    w = webui
    runner = start(w, False)
    _, plain = txt2img(w, runner, TinySD(), sampler_name="Euler", seed=11)
    with caplog.at_level(logging.WARNING, logger="itermix_kdiff.webui"):
        _, mixed = txt2img(w, runner, TinySD(), sampler_name="Euler IterMix", seed=11)
    assert torch.equal(mixed.samples, plain.samples)
    assert spy == []
    records = [r for r in caplog.records if r.name.startswith("itermix_kdiff.webui")]
    assert len(records) == 1 and "txt2img" in records[0].getMessage()
    assert "Itermix" not in plain.infotext and "Itermix alpha_1: 2.4" in mixed.infotext


def check_itermix_call(call, sampler, x0):
    """The core sampler ran on the clean latent, the webui's sigma_sched, its untouched
    extra_args, and noised latents starting at the webui's xi."""
    assert call.x is x0
    assert call.sigmas is sampler.last_sigma_sched
    assert call.kwargs["extra_args"] is sampler.sampler_extra_args
    assert call.extra_keys == set(sampler.sampler_extra_args) == EXTRA_ARGS_KEYS
    assert call.model is sampler.model_wrap_cfg
    z = call.kwargs["noised_latents"]
    assert z.shape == (len(call.sigmas), *x0.shape)
    assert torch.equal(z[0], sampler.last_xi)
    assert sampler.steps_reported == list(range(len(call.sigmas) - 1))


def test_img2img_runs_itermix_on_sigma_sched(webui, spy):
    w = webui
    runner = start(w, True)
    x0 = clean_latent()
    p, result = img2img(w, runner, TinySD(), x0, sampler_name="Euler IterMix", denoising_strength=0.6,
                        steps=8, seed=21)
    (call,) = spy
    sampler = p.sampler
    check_itermix_call(call, sampler, x0)
    full = sampler.model_wrap.get_sigmas(8)
    assert torch.equal(call.sigmas, full[8 - int(0.6 * 8) - 1:]) and len(call.sigmas) == 6
    xi = x0 + w.rng.ImageRNG(x0.shape[1:], [21]).next() * call.sigmas[0]
    torch.testing.assert_close(sampler.last_xi, xi, rtol=0, atol=1e-6)
    z = call.kwargs["noised_latents"]
    torch.testing.assert_close(z[1:], seeded_stack(x0, call.sigmas, 21)[1:], rtol=0, atol=1e-6)
    assert call.kwargs["noise"] == "independent" and call.kwargs["rewind"] is False

    expected = sampling.sample_itermix_euler(sampler.model_wrap_cfg, x0, call.sigmas,
                                             extra_args=sampler.sampler_extra_args, noised_latents=z)
    assert torch.equal(result.samples, expected)
    _, plain = img2img(w, runner, TinySD(), x0, sampler_name="Euler", denoising_strength=0.6, steps=8, seed=21)
    assert not torch.allclose(result.samples, plain.samples, atol=1e-3)


def test_hires_fix_runs_itermix_on_sigma_sched(webui, spy):
    w = webui
    runner = start(w, False)
    p, result = txt2img(w, runner, TinySD(), sampler_name="Euler", enable_hr=True, hr_scale=2.0,
                        hr_sampler_name="Euler IterMix", hr_second_pass_steps=6, denoising_strength=1.0,
                        steps=6, seed=31)
    (call,) = spy
    sampler = p.sampler
    assert call.x.shape == (1, 4, 16, 16) and result.samples.shape == (1, 4, 16, 16)
    check_itermix_call(call, sampler, sampler.model_wrap_cfg.init_latent)
    assert torch.equal(call.sigmas, sampler.model_wrap.get_sigmas(6))  # denoising 1.0: the whole schedule
    assert "Hires sampler: Euler IterMix" in result.infotext and "Itermix alpha_1: 2.4" in result.infotext


def test_same_seed_same_picture(webui, spy):
    w = webui
    runner = start(w, True)
    x0 = clean_latent()
    runs = [img2img(w, runner, TinySD(), x0, sampler_name="Euler IterMix", denoising_strength=0.6, seed=s)[1]
            for s in (41, 41, 42)]
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert not torch.allclose(runs[0].samples, runs[2].samples, atol=1e-3)
    assert torch.equal(spy[0].kwargs["noised_latents"], spy[1].kwargs["noised_latents"])
    assert not torch.allclose(spy[0].kwargs["noised_latents"][1:-1], spy[2].kwargs["noised_latents"][1:-1])


def test_each_image_of_a_batch_follows_its_seed(webui):
    w = webui
    runner = start(w, True)
    _, batch = img2img(w, runner, TinySD(), clean_latent(batch=2), sampler_name="Euler IterMix",
                       denoising_strength=0.6, seed=50, batch_size=2)
    _, single = img2img(w, runner, TinySD(), clean_latent(batch=1), sampler_name="Euler IterMix",
                        denoising_strength=0.6, seed=51)
    torch.testing.assert_close(batch.samples[1:], single.samples, rtol=0, atol=1e-5)
    assert not torch.allclose(batch.samples[0], batch.samples[1], atol=1e-3)


def test_settings_reach_sampler_and_infotext(webui, spy):
    w = webui
    runner = start(w, True)
    accordion = runner.infotext_fields[0].component.parent.parent
    assert accordion.label == "Iterative Mixing" and accordion.open is False
    assert len(accordion.children) == len(ROWS)
    chosen = dict(alpha_1=3.5, blending_schedule="linear", blending_function="slerp", start_blending_at_pct=0.1,
                  stop_blending_at_pct=0.9, clamp_blending_at_pct=0.8, blend_min=0.05, blend_max=0.95,
                  rewind=True, perlin_strength=0.5)
    set_values(runner, **chosen)
    p, result = img2img(w, runner, TinySD(), clean_latent(), sampler_name="Euler IterMix",
                        denoising_strength=0.75, steps=10, seed=61)
    (call,) = spy
    for name, value in chosen.items():
        assert p.itermix[name] == value
        if name != "perlin_strength":
            assert call.kwargs[name] == value
    assert not {"perlin_mode", "perlin_strength", "perlin_scale", "seed", "preset"} & set(call.kwargs)

    params = w.infotext_utils.parse_generation_parameters(result.infotext)
    assert params["Itermix alpha_1"] == "3.5" and params["Itermix blending_function"] == "slerp"
    assert params["Itermix rewind"] == "True" and "Itermix perlin_strength" not in params

    pasted = start(w, True)  # "send to img2img": a fresh UI restored from the infotext
    w.infotext_utils.paste(params, pasted.infotext_fields)
    restored = settings_from_args(pasted.script_args()[1:])
    assert restored == {**p.itermix, "perlin_strength": 0.75}  # not recorded for a non-Perlin sampler


def test_perlin_settings_reach_the_perlin_sampler(webui, spy):
    w = webui
    runner = start(w, True)
    set_values(runner, perlin_mode="latents", perlin_strength=0.5, perlin_scale=5.0, alpha_1=1.0)
    x0 = clean_latent()
    p, result = img2img(w, runner, TinySD(), x0, sampler_name="Euler Perlin IterMix", denoising_strength=0.6,
                        seed=66)
    (call,) = spy
    assert call.name == "euler_perlin"
    check_itermix_call(call, p.sampler, x0)
    assert (call.kwargs["perlin_mode"], call.kwargs["perlin_strength"], call.kwargs["perlin_scale"],
            call.kwargs["seed"], call.kwargs["alpha_1"]) == ("latents", 0.5, 5.0, [66], 1.0)  # a seed per image
    assert "Itermix perlin_mode: latents" in result.infotext and "Itermix perlin_scale: 5.0" in result.infotext
    assert torch.isfinite(result.samples).all()


def test_demofusion_preset_mixes_the_webui_noise(webui, spy):
    w = webui
    runner = start(w, True)
    set_values(runner, preset="demofusion")
    x0 = clean_latent()
    _, result = img2img(w, runner, TinySD(), x0, sampler_name="Euler IterMix", denoising_strength=0.8, seed=71)
    (call,) = spy
    assert (call.kwargs["noise"], call.kwargs["mix"], call.kwargs["blending_schedule"]) == \
        ("shared", "before_step", "demofusion")
    noise = w.rng.ImageRNG(x0.shape[1:], [71]).next()
    expected = torch.stack([x0 + noise * s for s in call.sigmas])
    torch.testing.assert_close(call.kwargs["noised_latents"], expected, rtol=0, atol=1e-5)
    assert "Itermix preset: demofusion" in result.infotext


def test_api_names_round_trip(webui):
    w = webui
    runner = start(w, False)
    fields = runner.infotext_fields
    assert [f.api for f in fields] == [api_name(f) for f in FIELDS] == [f"itermix_{f.name}" for f in FIELDS]
    assert [f.label for f in fields] == [infotext_key(f) for f in FIELDS]
    assert len({f.api for f in fields}) == len(FIELDS)
    assert sorted(name for row in ROWS for name in row) == sorted(f.name for f in FIELDS)

    settings = dict(settings_from_args(()), alpha_1=1.5, blending_schedule="logistic", rewind=True,
                    perlin_mode="latents", perlin_scale=20.0)
    assert settings_from_args([api_params(settings)]) == settings
    assert settings_from_args([{"itermix_alpha_1": "3"}])["alpha_1"] == 3.0
    assert settings_from_args([{"itermix_rewind": "False"}])["rewind"] is False
    assert settings_from_args([{"itermix_rewind": "true"}])["rewind"] is True
    with pytest.raises(TypeError, match="itermix_rewind"):
        settings_from_args([{"itermix_rewind": "yes"}])
    with pytest.raises(ValueError, match="itermix_alpha"):
        settings_from_args([{"itermix_alpha": 3.0}])
    with pytest.raises(ValueError, match="itermix_blending_schedule"):
        settings_from_args([{"itermix_blending_schedule": "karras"}])

    p = w.processing.StableDiffusionProcessingImg2Img(
        sd_model=TinySD(), init_latent=clean_latent(), sampler_name="Euler IterMix",
        scripts=runner, script_args=(None, api_params(settings), *runner.script_args()[2:]))
    runner.process(p)
    assert p.itermix == settings
    bad = w.processing.StableDiffusionProcessingImg2Img(
        sd_model=TinySD(), init_latent=clean_latent(), sampler_name="Euler IterMix",
        scripts=runner, script_args=(None, {"itermix_blend_min": 1.5}))
    with pytest.raises(ValueError, match="blend_min"):
        runner.process(bad)
    for field, value in (("perlin_strength", 1.5), ("perlin_scale", 0.0), ("perlin_mode", "clouds")):
        bad = w.processing.StableDiffusionProcessingImg2Img(
            sd_model=TinySD(), init_latent=clean_latent(), sampler_name="Euler Perlin IterMix",
            scripts=runner, script_args=(None, {f"itermix_{field}": value}))
        with pytest.raises(ValueError, match=field):
            runner.process(bad)


def test_interrupt_passes_through(webui):
    w = webui
    assert not issubclass(w.common.InterruptedException, Exception)
    runner = start(w, True)
    x0 = clean_latent()
    p = w.processing.StableDiffusionProcessingImg2Img(sd_model=TinySD(), init_latent=x0, sampler_name="Euler IterMix",
                                                      denoising_strength=0.6, seed=81, **job_args(runner, {}))
    p.all_seeds = p.seeds = [81]
    p.rng = w.rng.ImageRNG(x0.shape[1:], p.seeds)
    runner.process(p)
    p.init()
    p.setup_conds()
    sampler = p.sampler
    sampler.initialize(p)
    sigmas = sampler.get_sigmas(p, 8)[3:]
    sampler.sampler_extra_args = sampler.extra_args(p, p.c, p.uc, p.image_conditioning(x0))
    w.shared.state.interrupted = True
    for init_latent in (x0, None):  # the itermix path and the txt2img fallback
        sampler.model_wrap_cfg.init_latent = init_latent
        with pytest.raises(w.common.InterruptedException):
            sampler.func(sampler.model_wrap_cfg, x0 + sigmas[0], sigmas=sigmas,
                         extra_args=sampler.sampler_extra_args, callback=sampler.callback_state, disable=True)
    # Through the webui: its launch_sampling catches it and returns the last preview.
    _, result = img2img(w, runner, TinySD(), x0, sampler_name="Euler IterMix", denoising_strength=0.6, seed=81)
    assert torch.equal(result.samples, x0)  # step 0 is skipped (c1 = 0) and reports x0; step 1 is interrupted


def test_forge_flow_model_noised_latents(forge, spy):
    w = forge
    runner = start(w, True)
    x0 = clean_latent()
    p, _ = img2img(w, runner, TinySD("flow"), x0, sampler_name="Euler IterMix", denoising_strength=0.6,
                   steps=8, seed=91)
    (call,) = spy
    sigmas = call.sigmas
    noise = w.rng.ImageRNG(x0.shape[1:], [91]).next()
    torch.testing.assert_close(p.sampler.last_xi, sigmas[0] * noise + (1 - sigmas[0]) * x0)
    check_itermix_call(call, p.sampler, x0)
    g = torch.Generator().manual_seed(91)
    eps = noised_latents(x0, sigmas, generator=g, lazy=True)
    expected = torch.stack([s * eps.noise(k) + (1 - s) * x0 for k, s in enumerate(sigmas)])
    z = call.kwargs["noised_latents"]
    torch.testing.assert_close(z[1:], expected[1:], rtol=0, atol=1e-6)
    assert torch.equal(z[-1], x0)

    set_values(runner, rewind=True)
    with pytest.raises(ValueError, match="rewind"):
        img2img(w, runner, TinySD("flow"), x0, sampler_name="Euler IterMix", denoising_strength=0.6, seed=91)
    set_values(runner, rewind=False, preset="demofusion")
    img2img(w, runner, TinySD("flow"), x0, sampler_name="Euler IterMix", denoising_strength=0.6, seed=91)
    shared = torch.stack([s * noise + (1 - s) * x0 for s in spy[-1].sigmas])
    torch.testing.assert_close(spy[-1].kwargs["noised_latents"], shared, rtol=0, atol=1e-5)


def test_half_precision_noised_latents():
    x0 = clean_latent(batch=2).half()
    sigmas = torch.tensor([3.0, 1.5, 0.5, 0.0])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)).half()
    xi = x0 + noise * sigmas[0]
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    z = itermix_webui.webui_noised_latents(None, x0, xi, sigmas, gens, "independent")
    assert z.dtype == torch.float16 and torch.equal(z[0], xi) and torch.equal(z[-1], x0)
    single = seeded_stack(x0[1:].float(), sigmas, 6)
    torch.testing.assert_close(z[1:, 1:].float(), single[1:], rtol=0, atol=5e-3)
    shared = itermix_webui.webui_noised_latents(None, x0, xi, sigmas, gens, "shared")
    torch.testing.assert_close(shared[2].float(), (x0 + noise * 0.5).float(), rtol=0, atol=5e-3)


def test_install_py(webui, monkeypatch):
    import launch

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    runpy.run_path(str(EXTENSION / "install.py"))
    ((command, _),) = launch.pip_calls
    assert command == f'install --no-deps "{ROOT}"'
    assert "k-diffusion" not in command and "k_diffusion" not in command

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    monkeypatch.setattr(importlib.metadata, "version", lambda name: config["metadata"]["version"])
    runpy.run_path(str(EXTENSION / "install.py"))
    assert len(launch.pip_calls) == 1  # up to date: nothing installed

    metadata = configparser.ConfigParser()
    metadata.read(EXTENSION / "metadata.ini")
    assert metadata["Extension"]["Name"] == "sd-webui-itermix"


@pytest.fixture
def cfg_calls(webui, monkeypatch):
    return record_cfg_calls(webui, monkeypatch)


def record_cfg_calls(w, monkeypatch):
    """Record ``(x shape, cond, uncond, step counter, image_cond)`` of every call of the webui's CFG denoiser."""
    calls = []
    real = w.kdiffusion.CFGDenoiserKDiffusion.forward

    def recording(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        calls.append(SimpleNamespace(shape=tuple(x.shape), cond=cond, uncond=uncond, step=self.step,
                                     image_cond=image_cond))
        return real(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)

    monkeypatch.setattr(w.kdiffusion.CFGDenoiserKDiffusion, "forward", recording)
    return calls


def check_webui_conditioning(w, cond, uncond, batch):
    """The CFG denoiser got the webui's own objects: a multi-prompt conditioning and, per image,
    a list of scheduled negative conditionings (namedtuples)."""
    assert isinstance(cond, w.prompt_parser.MulticondLearnedConditioning) and len(cond.batch) == batch
    assert all(isinstance(c, w.prompt_parser.ComposableScheduledPromptConditioning) for c in cond.batch[0])
    assert isinstance(uncond, list) and len(uncond) == batch
    assert all(type(s) is w.prompt_parser.ScheduledPromptConditioning for s in uncond[0])


class WithPrompts:
    """The CFG denoiser with the webui's prompt conditioning passed to every call; ``inner_model``
    keeps the wrapper chain, where the samplers find A1111's discrete schedule."""

    def __init__(self, cfg, extra_args):
        self.inner_model = cfg
        self.extra_args = extra_args

    def __call__(self, x, sigma, **tensors):
        return self.inner_model(x, sigma, cond=self.extra_args["cond"], uncond=self.extra_args["uncond"], **tensors)


def hand_demofusion(cfg, extra_args, window, stride, factor, seed, sigmas):
    """The library's DemoFusionDenoiser around :class:`WithPrompts`: the tensors left to DemoFusion."""
    from itermix_kdiff.demofusion import DemoFusionDenoiser, sigma_progress

    return DemoFusionDenoiser(WithPrompts(cfg, extra_args), window, stride, factor, view_batch_size=1, seed=seed,
                              progress_fn=sigma_progress(cfg, sigmas))


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_demofusion_sampler_tiles_the_cfg_denoiser(webui, spy, cfg_calls, kind):
    """A 16x16 latent with 64-pixel tiles (8 latent pixels): DemoFusion's denoiser at factor
    2 around the webui's CFG denoiser, one 8x8 view of the whole batch per call with the
    webui's conditioning objects (SDXL's: dicts of tensors), the step counter held per step;
    the same numbers as the library's pieces put together by hand."""
    from itermix_kdiff.demofusion import match_statistics

    w = webui
    runner = start(w, True)
    set_values(runner, demofusion_tile=64)
    x0 = clean_latent(batch=2, size=16)
    p, result = img2img(w, runner, TinySD(kind=kind), x0, sampler_name="DemoFusion IterMix", denoising_strength=0.8,
                        steps=6, seed=101)
    (call,) = spy
    sampler = p.sampler
    assert call.name == "euler" and call.x is x0 and call.model is not sampler.model_wrap_cfg
    assert (call.kwargs["noise"], call.kwargs["mix"], call.kwargs["blending_schedule"]) == \
        ("shared", "before_step", "demofusion")
    # DemoFusion cuts the tensors; the prompt conditioning goes around it, to the CFG denoiser.
    assert call.extra_keys == EXTRA_ARGS_KEYS - set(itermix_webui.PROMPT_CONDITIONING)
    assert sampler.steps_reported == list(range(len(call.sigmas) - 1))
    # DemoFusion's curve reads A1111's timesteps through the whole wrapper stack.
    assert (blending_schedules.timestep_progress(call.model, call.sigmas) is not None) == (w.flavour == "a1111")

    assert {c.shape for c in cfg_calls} == {(2, 4, 8, 8)}
    for c in cfg_calls:
        assert c.cond is sampler.sampler_extra_args["cond"] and c.uncond is sampler.sampler_extra_args["uncond"]
        assert c.image_cond.shape == (2, 5, 1, 1)
    check_webui_conditioning(w, cfg_calls[0].cond, cfg_calls[0].uncond, 2)
    steps = [c.step for c in cfg_calls]
    assert steps == sorted(steps) and len(cfg_calls) > 4 * len(set(steps))  # several views per step
    assert sampler.model_wrap_cfg.step == len(set(steps)) == steps[-1] + 1

    fused = hand_demofusion(sampler.model_wrap_cfg, sampler.sampler_extra_args, 8, 4, 2, 101, call.sigmas)
    expected = match_statistics(sampling.sample_itermix_euler(fused, x0, call.sigmas,
                                                              **{**call.kwargs, "callback": None}), x0)
    torch.testing.assert_close(result.samples, expected, rtol=0, atol=1e-6)
    assert "Itermix demofusion_tile: 64" in result.infotext

    set_values(runner, preset="demofusion")  # the same skip residual on the plain CFG denoiser
    _, plain = img2img(w, runner, TinySD(kind=kind), x0, sampler_name="Euler IterMix", denoising_strength=0.8,
                       steps=6, seed=101)
    assert not torch.allclose(result.samples, plain.samples, atol=1e-3)
    assert "demofusion_tile" not in plain.infotext


def test_demofusion_sampler_in_hires_fix(webui, spy, cfg_calls):
    w = webui
    runner = start(w, False)
    set_values(runner, demofusion_tile=64)
    p, result = txt2img(w, runner, TinySD(), sampler_name="Euler", enable_hr=True, hr_scale=2.0,
                        hr_sampler_name="DemoFusion IterMix", denoising_strength=0.6, steps=6, seed=111)
    (call,) = spy
    assert call.x.shape == result.samples.shape == (1, 4, 16, 16) and torch.isfinite(result.samples).all()
    assert (1, 4, 8, 8) in {c.shape for c in cfg_calls}  # the tiles of the second pass
    assert "Hires sampler: DemoFusion IterMix" in result.infotext


def test_demofusion_sampler_inpaints_as_euler_itermix(webui, spy, caplog):
    w = webui
    runner = start(w, True)
    set_values(runner, demofusion_tile=64)
    x0 = clean_latent(size=16)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8, :] = 1
    with caplog.at_level(logging.WARNING, logger="itermix_kdiff.webui"):
        p, result = img2img(w, runner, TinySD(), x0, sampler_name="DemoFusion IterMix", mask=mask, seed=121)
    assert "inpaint" in caplog.text
    assert spy[0].model is p.sampler.model_wrap_cfg and spy[0].kwargs["noise"] == "independent"
    _, euler = img2img(w, runner, TinySD(), x0, sampler_name="Euler IterMix", mask=mask, seed=121)
    assert torch.equal(result.samples, euler.samples)


def test_demofusion_tile_must_be_a_multiple_of_8(webui):
    w = webui
    runner = start(w, True)
    p = w.processing.StableDiffusionProcessingImg2Img(
        sd_model=TinySD(), init_latent=clean_latent(), sampler_name="DemoFusion IterMix",
        scripts=runner, script_args=(None, {"itermix_demofusion_tile": 100}))
    with pytest.raises(ValueError, match="itermix_demofusion_tile"):
        runner.process(p)


def test_demofusion_sampler_on_a_forge_flow_model(forge, spy):
    """Forge's flow wrapper has no discrete schedule: DemoFusion's progress is the index in
    sigma_sched; the shared noise is Forge's own, recovered through its noise scaling."""
    w = forge
    runner = start(w, True)
    set_values(runner, demofusion_tile=64)
    x0 = clean_latent(size=16)
    _, result = img2img(w, runner, TinySD("flow"), x0, sampler_name="DemoFusion IterMix", denoising_strength=0.6,
                        steps=8, seed=131)
    (call,) = spy
    sigmas = call.sigmas
    noise = w.rng.ImageRNG(x0.shape[1:], [131]).next()
    shared = torch.stack([s * noise + (1 - s) * x0 for s in sigmas])
    torch.testing.assert_close(call.kwargs["noised_latents"], shared, rtol=0, atol=1e-5)
    assert blending_schedules.timestep_progress(call.model, sigmas) is None
    assert result.samples.shape == x0.shape and torch.isfinite(result.samples).all()
    torch.testing.assert_close(result.samples.mean(), x0.mean(), rtol=0, atol=1e-5)  # statistics matched to x0


def test_standin_prompt_schedules_follow_the_webui(a1111):
    """The stand-in's prompt_parser: prompt editing by fraction and by step, counted on in the
    hires pass; AND with weights; the objects' types."""
    pp = a1111.prompt_parser
    assert pp.get_learned_conditioning_prompt_schedules(["a [b:c:0.5] d", "e [f:3]"], 10) == \
        [[[5, "a b d"], [10, "a c d"]], [[3, "e "], [10, "e f"]]]
    assert pp.get_learned_conditioning_prompt_schedules(["a [b:c:0.5] d", "a [b:c:1.5] d"], 10, 10) == \
        [[[10, "a c d"]], [[5, "a b d"], [10, "a c d"]]]
    assert pp.get_multicond_prompt_list(["x AND y:0.5", "x"])[0] == [[(0, 1.0), (1, 0.5)], [(0, 1.0)]]
    model = TinySD()
    uncond = pp.get_learned_conditioning(model, ["n", "n"], 4)
    assert type(uncond[0][0]) is pp.ScheduledPromptConditioning and uncond[0][0].cond.shape == (TOKENS, DIM)
    cond = pp.get_multicond_learned_conditioning(model, ["a [b:c:2]", "x AND y:0.5"], 4)
    conds_list, stacked = pp.reconstruct_multicond_batch(cond, 3)
    assert conds_list == [[(0, 1.0)], [(1, 1.0), (2, 0.5)]] and stacked.shape == (3, TOKENS, DIM)
    torch.testing.assert_close(stacked[0], model.get_learned_conditioning(["a c"])[0])
    assert pp.reconstruct_cond_batch(uncond, 0).shape == (2, TOKENS, DIM)


def cfg_steps_and_prompts(calls):
    """step counter -> the prompt rows the CFG denoiser used at it (one value per step)."""
    seen = {}
    for c in calls:
        seen.setdefault(c.step, set()).add(round(float(c.text_cond.sum()), 5))
    return seen


@pytest.fixture
def denoiser_params(webui):
    """Every ``CFGDenoiserParams`` the webui's ``cfg_denoiser_callback`` hands out (as ControlNet
    receives them), with the CFG denoiser's step counter at that call."""
    calls = []

    def record(params):
        calls.append(SimpleNamespace(step=params.denoiser.step, x=params.x.shape, text_cond=params.text_cond,
                                     text_uncond=params.text_uncond))

    webui.callbacks.on_cfg_denoiser(record, name="test")
    yield calls
    webui.callbacks.clear_callbacks()


def test_demofusion_sampler_follows_prompt_editing(webui, denoiser_params):
    """``[red:blue:2]``: every view of a step sees the step's prompt, and the prompt switches at
    the same step as with Euler IterMix (one CFG call per step)."""
    w = webui
    runner = start(w, True)
    set_values(runner, demofusion_tile=64, preset="demofusion")
    x0 = clean_latent(size=16)
    img2img(w, runner, TinySD(), x0, sampler_name="DemoFusion IterMix", prompt="a [red:blue:2] square",
            denoising_strength=0.8, steps=6, seed=141)
    tiled = cfg_steps_and_prompts(denoiser_params)
    assert len(denoiser_params) > 4 * len(tiled)
    denoiser_params.clear()
    img2img(w, runner, TinySD(), x0, sampler_name="Euler IterMix", prompt="a [red:blue:2] square",
            denoising_strength=0.8, steps=6, seed=141)
    plain = cfg_steps_and_prompts(denoiser_params)
    assert len(denoiser_params) == len(plain)
    assert tiled == plain and all(len(v) == 1 for v in tiled.values())
    assert len(set.union(*tiled.values())) == 2  # red, then blue


def test_demofusion_sampler_with_and_and_negative_guidance_skipping(webui, denoiser_params):
    """``AND`` with weights (two sub-prompts per image) and ``s_min_uncond`` (the negative
    prompt skipped on odd steps): each view of a step gets the same model batch, the webui's
    own per-step alternation."""
    w = webui
    runner = start(w, True)
    set_values(runner, demofusion_tile=64)
    model = TinySD()
    _, result = img2img(w, runner, model, clean_latent(batch=2, size=16), sampler_name="DemoFusion IterMix",
                        prompt="a red square AND a blue circle:0.5", s_min_uncond=100.0,
                        denoising_strength=0.8, steps=6, seed=151)
    assert torch.isfinite(result.samples).all()
    assert len(model.batch_sizes) == len(denoiser_params)
    by_step = {}
    for params, rows in zip(denoiser_params, model.batch_sizes):
        assert params.text_cond.shape == (4, TOKENS, DIM) and params.text_uncond.shape == (2, TOKENS, DIM)
        by_step.setdefault(params.step, set()).add(rows)
    # two images: 2 x 2 prompt rows, plus 2 negative rows on even steps
    assert by_step == {step: {4 if step % 2 else 6} for step in by_step} and len(by_step) > 2


def test_demofusion_sampler_and_edit_models(a1111, spy, monkeypatch, caplog):
    """An instruct-pix2pix model (A1111): at image CFG 1 its image conditioning is cut into
    the views with the latent; at another image CFG the CFG denoiser adds a full-size tensor
    of its own, so DemoFusion IterMix runs as Euler IterMix and says so."""
    w = a1111
    cfg_calls = record_cfg_calls(w, monkeypatch)
    runner = start(w, True)
    set_values(runner, demofusion_tile=64)
    x0 = clean_latent(size=16)
    _, tiled = img2img(w, runner, TinySD(kind="edit"), x0, sampler_name="DemoFusion IterMix", image_cfg_scale=1.0,
                       seed=161)
    assert torch.isfinite(tiled.samples).all()
    assert {c.image_cond.shape for c in cfg_calls} == {(1, 4, 8, 8)}  # the views of the image conditioning
    cfg_calls.clear()
    with caplog.at_level(logging.WARNING, logger="itermix_kdiff.webui"):
        p, result = img2img(w, runner, TinySD(kind="edit"), x0, sampler_name="DemoFusion IterMix",
                            image_cfg_scale=1.5, seed=161)
    assert "image CFG" in caplog.text and spy[-1].model is p.sampler.model_wrap_cfg
    assert {c.image_cond.shape for c in cfg_calls} == {(1, 4, 16, 16)}
    _, euler = img2img(w, runner, TinySD(kind="edit"), x0, sampler_name="Euler IterMix", image_cfg_scale=1.5,
                       seed=161)
    assert torch.equal(result.samples, euler.samples)


@pytest.mark.filterwarnings("ignore:Should have t:UserWarning")  # torchsde on k-diffusion's float32 sigma bounds
@pytest.mark.parametrize("label", list(itermix_webui.available_samplers()))
def test_txt2img_and_schedule_equal_the_family_builtin(webui, label):
    """With the "Automatic" scheduler an itermix sampler has its family's schedule (Karras,
    exponential, the dropped next-to-last sigma), step count and ENSD record: txt2img gives
    the built-in's picture and infotext, img2img runs on the built-in's sigma_sched."""
    w = webui
    w.shared.opts.eta_noise_seed_delta = 31337
    family = registry.WEBUI_SAMPLERS[label].family
    runner = start(w, False)
    runs = [txt2img(w, runner, TinySD(), sampler_name=name, steps=5, seed=171) for name in (label, family)]
    (mixed_p, mixed), (plain_p, plain) = runs
    assert torch.equal(mixed_p.sampler.last_sigma_sched, plain_p.sampler.last_sigma_sched)
    assert torch.equal(mixed.samples, plain.samples)
    assert mixed_p.extra_generation_params.get("Schedule type") == plain_p.extra_generation_params.get("Schedule type")
    assert ("ENSD: 31337" in mixed.infotext) == ("ENSD: 31337" in plain.infotext) == \
        family_row(w, label)[3].get("uses_ensd", False)
    assert (w.sd_samplers.all_samplers_map[label].total_steps(5) ==
            w.sd_samplers.all_samplers_map[family].total_steps(5))

    runner = start(w, True)
    x0 = clean_latent()
    sched = [img2img(w, runner, TinySD(), x0, sampler_name=name, steps=5, seed=171)[0].sampler.last_sigma_sched
             for name in (label, family)]
    assert torch.equal(*sched)


@pytest.mark.filterwarnings("ignore:Should have t:UserWarning")  # torchsde on k-diffusion's float32 sigma bounds
def test_sde_sampler_takes_the_webui_brownian_noise(webui, spy):
    """"DPM++ SDE" has ``brownian_noise``: the webui hands its own Brownian noise (one tree per
    image seed) to the itermix sampler too, which uses it unless Rewind is on (each rewind
    pass seeds a tree of its own); so each image of a batch follows its own seed."""
    w = webui
    runner = start(w, True)
    _, batch = img2img(w, runner, TinySD(), clean_latent(batch=2), sampler_name="DPM++ SDE IterMix",
                       denoising_strength=0.6, steps=5, seed=180)
    _, single = img2img(w, runner, TinySD(), clean_latent(), sampler_name="DPM++ SDE IterMix",
                        denoising_strength=0.6, steps=5, seed=181)
    given = spy[0].kwargs["noise_sampler"]
    assert isinstance(given, sys.modules["k_diffusion.sampling"].BrownianTreeNoiseSampler)
    assert len(given.tree.trees) == 2  # one tree per image
    torch.testing.assert_close(batch.samples[1:], single.samples, rtol=0, atol=1e-5)
    set_values(runner, rewind=True)
    img2img(w, runner, TinySD(), clean_latent(), sampler_name="DPM++ SDE IterMix", denoising_strength=0.6,
            steps=5, seed=181)
    assert "noise_sampler" not in spy[-1].kwargs


def test_webui_registry_names_core_samplers():
    """Each webui sampler names a core registry entry and a built-in family; the Perlin
    settings go to the sampler whose signature takes them."""
    for label, entry in registry.WEBUI_SAMPLERS.items():
        assert entry.function is itermix_kdiff.SAMPLERS[entry.sampler]
        assert entry.perlin == (entry.sampler == "euler_perlin")
        assert label.startswith(entry.family + " ") or entry.family == "Euler"
    assert itermix_webui.available_samplers() == registry.WEBUI_SAMPLERS


def test_settings_defaults_are_the_samplers_own():
    """A field's default is read from ItermixOptions or the Perlin sampler's signature, not
    written again: equal values, and no literal in the fields' table."""
    import ast

    from itermix_kdiff.webui import settings

    options = {f.name: f.default for f in dataclasses.fields(itermix_kdiff.ItermixOptions)}
    perlin = inspect.signature(itermix_kdiff.SAMPLERS["euler_perlin"]).parameters
    read = {f.name for f in FIELDS if f.name in options or f.name in perlin}
    assert read == {f.name for f in FIELDS} - {"preset", "demofusion_tile"}
    for f in FIELDS:
        if f.name in read:
            assert f.default == (options[f.name] if f.name in options else perlin[f.name].default)
    tree = ast.parse(inspect.getsource(settings))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Field"]
    written = {call.args[0].value for call in calls if isinstance(call.args[3], ast.Constant)}
    assert written == {"preset", "demofusion_tile"}


def test_standin_docstrings_cite_the_api_document():
    """Every stand-in module cites docs/webui-api.md, and every section it names is a heading there."""
    doc = (ROOT / "docs" / "webui-api.md").read_text()
    headings = set(re.findall(r"^#+ (.+)$", doc, re.M))
    files = sorted(p for p in STANDIN.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        docstring = ast_docstring(path)
        assert "docs/webui-api.md" in docstring, path
        for cited in re.findall(r'"([^"]+)"', docstring.split("docs/webui-api.md", 1)[1].split(")")[0]):
            assert " ".join(cited.split()) in headings, (path, cited)


def ast_docstring(path):
    import ast

    return ast.get_docstring(ast.parse(path.read_text())) or ""


@pytest.mark.filterwarnings("ignore:Should have t:UserWarning")  # torchsde on k-diffusion's float32 sigma bounds
@pytest.mark.parametrize("label, values", [
    ("Euler Perlin IterMix", {}),
    ("Euler a IterMix", {"rewind": True}),
    ("DPM++ 2M SDE IterMix", {"rewind": True}),
    ("DPM++ 2M IterMix", {"rewind": True}),
    ("Euler IterMix", {"rewind": True}),
])
def test_each_image_of_a_batch_follows_its_seed_in_every_sampler(webui, spy, label, values):
    """Image 1 of a batch seeded 180 (seeds 180, 181) equals that image alone with seed 181: the
    Perlin masks, the ancestral noise, the rewind passes' noised latents and Brownian trees all
    follow each image's seed."""
    w = webui
    runner = start(w, True)
    set_values(runner, **values)
    _, batch = img2img(w, runner, TinySD(), clean_latent(batch=2), sampler_name=label, denoising_strength=0.6,
                       steps=6, seed=180)
    _, single = img2img(w, runner, TinySD(), clean_latent(), sampler_name=label, denoising_strength=0.6,
                        steps=6, seed=181)
    torch.testing.assert_close(batch.samples[1:], single.samples, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(batch.samples[0], batch.samples[1], atol=1e-3)
    generators = spy[-1].kwargs["generator"]
    assert isinstance(generators, list) and len(generators) == 1
