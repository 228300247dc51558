"""The loaded SD models drive k-diffusion exactly as diffusers' own pipelines run them.

Peer cross-check on the tiny models read back from their single files: k-diffusion's
`sample_euler` through `m.denoiser` against `StableDiffusionPipeline` /
`StableDiffusionImg2ImgPipeline` / `StableDiffusionXLPipeline` with `EulerDiscreteScheduler`,
from the same latents and prompt embeddings. Two alignments make them comparable: the
scheduler's own sigmas (after `set_timesteps`) and its `init_noise_sigma` for the start.
"""

import pytest
import torch

from tests.tiny_sd import clip_tokenizer, one_thread, scheduler_config, tiny_checkpoint

PROMPT, NEGATIVE = "a castle on a hill, highly detailed", "blurry, lowres"


@pytest.fixture(scope="module", autouse=True)
def _threads():
    yield from one_thread()


@pytest.fixture(scope="module")
def loaded():
    from itermix_kdiff.sd import load_sd

    cache = {}

    def get(family):
        if family not in cache:
            tiny = tiny_checkpoint(family)
            cache[family] = load_sd(tiny.path, config=tiny.config)
        return cache[family]
    return get


def _pipeline(family, spacing="leading", img2img=False):
    from diffusers import (EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline,
                           StableDiffusionXLPipeline)

    tiny = tiny_checkpoint(family)
    scheduler = EulerDiscreteScheduler(**scheduler_config(tiny.scheduler_config["prediction_type"], spacing))
    parts = {k: tiny.models[k] for k in tiny.models}
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline(**parts, tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer("!"),
                                         scheduler=scheduler)
    else:
        cls = StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline
        # the hub's SD 2.x tokenizer pads with "!" (id 0), OpenCLIP's padding
        tokenizer = clip_tokenizer("!" if family == "sd2" else "<|endoftext|>")
        pipe = cls(**parts, tokenizer=tokenizer, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _relative(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _embeddings(extra):
    kw = dict(prompt_embeds=extra["cond"], negative_prompt_embeds=extra["uncond"])
    if "pooled" in extra:
        kw.update(pooled_prompt_embeds=extra["pooled"], negative_pooled_prompt_embeds=extra["uncond_pooled"])
    return kw


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_prompt_embeddings_equal_encode_prompt(loaded, family):
    m = loaded(family)
    pipe = _pipeline(family)
    extra = m.conditioning(PROMPT, NEGATIVE, cfg_scale=7.5)
    with torch.no_grad():
        if family == "sdxl":
            theirs = pipe.encode_prompt(PROMPT, negative_prompt=NEGATIVE, do_classifier_free_guidance=True)
            ours = (extra["cond"], extra["uncond"], extra["pooled"], extra["uncond_pooled"])
        else:
            theirs = pipe.encode_prompt(PROMPT, "cpu", 1, True, negative_prompt=NEGATIVE)
            ours = (extra["cond"], extra["uncond"])
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and torch.equal(a, b)
    if family == "sd1":
        # clip skip 2 (AUTOMATIC1111's count) = an 11-layer CLIP-L with the same weights and final
        # layer norm (diffusers' clip_skip path fails on transformers 5's CLIPTextModel, which has
        # no `text_model` attribute, so the reference is built here)
        from transformers import CLIPTextModel

        full = tiny_checkpoint("sd1").models["text_encoder"]
        config = full.config.__class__(**{**full.config.to_dict(), "num_hidden_layers": 11})
        short = CLIPTextModel(config).eval()
        state = {k: v for k, v in full.state_dict().items() if not k.startswith("encoder.layers.11.")}
        short.load_state_dict(state)
        from itermix_kdiff.sd.tokenizer import tokenize

        skipped = m.conditioning(PROMPT, cfg_scale=1, clip_skip=2)["cond"]
        with torch.no_grad():
            theirs = short(tokenize(PROMPT)).last_hidden_state
        assert torch.allclose(skipped, theirs, rtol=0, atol=1e-6) and not torch.equal(skipped, extra["cond"])
    if family == "sdxl":
        assert extra["cond"].shape[-1] == 32 + 48 and extra["time_ids"].tolist() == [[64, 64, 0, 0, 64, 64]]


@pytest.mark.parametrize("family, spacing", [("sd1", "leading"), ("sd1", "trailing"), ("sd2", "leading"),
                                             ("sd2", "trailing"), ("sdxl", "leading"), ("sdxl", "trailing")])
def test_euler_matches_diffusers_pipeline(loaded, family, spacing):
    """eps (SD 1.x), v (SD 2.x) and SDXL, in two timestep spacings: within 1e-5 relative."""
    import k_diffusion as K
    from diffusers import EulerDiscreteScheduler

    m = loaded(family)
    extra = m.conditioning(PROMPT, NEGATIVE, cfg_scale=7.5)
    noise = torch.randn(m.latent_shape(), generator=torch.Generator().manual_seed(7))
    steps = 4
    theirs = _pipeline(family, spacing)(**_embeddings(extra), latents=noise, num_inference_steps=steps,
                                        guidance_scale=7.5, output_type="latent", height=64, width=64).images
    scheduler = EulerDiscreteScheduler(**scheduler_config(m.prediction_type, spacing))
    scheduler.set_timesteps(steps)
    ours = K.sampling.sample_euler(m.denoiser, noise * scheduler.init_noise_sigma, scheduler.sigmas,
                                   extra_args=extra, disable=True)
    assert _relative(ours, theirs) < 1e-5
    # the alignment matters: starting from sigma_max alone is measurably off for "leading"
    if spacing == "leading":
        off = K.sampling.sample_euler(m.denoiser, noise * scheduler.sigmas[0], scheduler.sigmas,
                                      extra_args=extra, disable=True)
        assert _relative(off, theirs) > 1e-4


def test_img2img_matches_diffusers_pipeline(loaded):
    """From pixels: the VAE's posterior sampled from the generator, then the noise from the same
    generator at sigma[t_start], then Euler over the remaining sigmas."""
    import k_diffusion as K
    from diffusers import EulerDiscreteScheduler

    m = loaded("sd1")
    extra = m.conditioning(PROMPT, NEGATIVE, cfg_scale=7.5)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    steps, strength = 5, 0.6
    theirs = _pipeline("sd1", img2img=True)(**_embeddings(extra), image=image, strength=strength,
                                             num_inference_steps=steps, guidance_scale=7.5, output_type="latent",
                                             generator=torch.Generator().manual_seed(11)).images
    scheduler = EulerDiscreteScheduler(**scheduler_config("epsilon"))
    scheduler.set_timesteps(steps)
    start = steps - int(steps * strength)
    g = torch.Generator().manual_seed(11)
    x0 = m.encode(image * 2 - 1, sample=True, generator=g)
    x = x0 + torch.randn(x0.shape, generator=g) * scheduler.sigmas[start]
    ours = K.sampling.sample_euler(m.denoiser, x, scheduler.sigmas[start:], extra_args=extra, disable=True)
    assert _relative(ours, theirs) < 1e-5


def test_decode_matches_pipeline_images(loaded):
    import k_diffusion as K
    from diffusers import EulerDiscreteScheduler

    m = loaded("sd1")
    extra = m.conditioning(PROMPT, cfg_scale=1)
    noise = torch.randn(m.latent_shape(), generator=torch.Generator().manual_seed(5))
    theirs = _pipeline("sd1")(prompt_embeds=extra["cond"], latents=noise, num_inference_steps=2, guidance_scale=1.0,
                              output_type="pt", height=64, width=64).images
    scheduler = EulerDiscreteScheduler(**scheduler_config("epsilon"))
    scheduler.set_timesteps(2)
    latents = K.sampling.sample_euler(m.denoiser, noise * scheduler.init_noise_sigma, scheduler.sigmas,
                                      extra_args=extra, disable=True)
    images = m.decode(latents)
    assert images.shape == (1, 3, 64, 64) and images.dtype == torch.float32
    assert (images / 2 + 0.5 - theirs).abs().max() < 1e-4


def test_guidance_is_one_batched_call(loaded):
    m = loaded("sdxl")
    calls = []
    hook = m.unet.register_forward_hook(lambda mod, args, kwargs_out: calls.append(args[0].shape[0]))
    try:
        x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        sigma = torch.full((2,), 3.0)
        guided = m.conditioning(PROMPT, NEGATIVE, cfg_scale=5.0)
        out = m.denoiser(x, sigma, **guided)
        plain = m.conditioning(PROMPT, cfg_scale=1.0)
        assert set(plain) == {"cond", "pooled", "time_ids"}
        cond_only = m.denoiser(x, sigma, **plain)
        uncond_only = m.denoiser(x, sigma, **{"cond": guided["uncond"], "pooled": guided["uncond_pooled"],
                                              "time_ids": guided["time_ids"]})
    finally:
        hook.remove()
    assert calls == [4, 2, 2]      # negative and positive rows in one call; a scale of 1 runs one
    assert torch.allclose(out, uncond_only + (cond_only - uncond_only) * 5.0, rtol=1e-4, atol=1e-4)


def test_batch_of_prompts_rows_match_single_prompts(loaded):
    m = loaded("sd1")
    both = m.conditioning([PROMPT, "a dog"], ["blurry", ""], cfg_scale=7.5)
    one = m.conditioning("a dog", "", cfg_scale=7.5)
    assert torch.equal(both["cond"][1:], one["cond"]) and torch.equal(both["uncond"][1:], one["uncond"])
    with pytest.raises(ValueError, match="one per prompt"):
        m.conditioning([PROMPT, "a dog"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="clip_skip applies to SD 1.x"):
        loaded("sd2").conditioning(PROMPT, clip_skip=2)
    with pytest.raises(ValueError, match="multiple of 8"):
        m.conditioning(PROMPT, width=100)
    with pytest.raises(ValueError, match="cfg_scale"):
        m.conditioning(PROMPT, cfg_scale=float("nan"))


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_every_itermix_sampler_and_demofusion_run_unchanged(loaded, family):
    from itermix_kdiff import SAMPLERS
    from itermix_kdiff.demofusion import DemoFusionDenoiser
    from itermix_kdiff.sigmas import get_sigmas

    m = loaded(family)
    sigmas = m.get_sigmas("karras", 2)
    assert torch.equal(sigmas, get_sigmas(m.denoiser, "karras", 2))
    assert torch.allclose(m.get_sigmas("normal", 3)[:-1], m.denoiser.get_sigmas(3)[:-1])
    extra = m.conditioning(PROMPT, NEGATIVE, cfg_scale=7.5)
    x0 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    names = sorted(SAMPLERS) if family == "sd1" else ["euler"]
    for name in names:
        out = SAMPLERS[name](m.denoiser, x0, sigmas, extra_args=extra, disable=True,
                             generator=torch.Generator().manual_seed(2))
        assert out.shape == x0.shape and torch.isfinite(out).all(), name
        again = SAMPLERS[name](m.denoiser, x0, sigmas, extra_args=extra, disable=True,
                               generator=torch.Generator().manual_seed(2))
        assert torch.equal(out, again), name
    fused = DemoFusionDenoiser(m.denoiser, window=8, stride=4, factor=2, sigmas=sigmas)
    out = SAMPLERS["euler"](fused, x0, sigmas, extra_args=extra, disable=True,
                            generator=torch.Generator().manual_seed(2))
    assert out.shape == x0.shape and torch.isfinite(out).all()


def test_vae_encode_decode(loaded):
    m = loaded("sdxl")
    images = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(4)) * 2 - 1
    z = m.encode(images)
    assert z.shape == (2, 4, 8, 6) and z.dtype == torch.float32
    assert torch.equal(z, m.encode(images))       # the mode: deterministic
    posterior = m.vae.encode(images).latent_dist
    assert torch.allclose(z, posterior.mode() * 0.13025)
    drawn = m.encode(images, sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn, m.encode(images, sample=True, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(drawn, z)
    whole = m.decode(z)
    assert whole.shape == images.shape and whole.abs().max() <= 1
    assert torch.equal(m.decode(z, tile_size=64), whole)             # one tile covers it all
    wide = torch.cat([z, z], dim=-1)
    tiled = m.decode(wide, tile_size=32, tile_overlap=16)
    assert tiled.shape == (2, 3, 64, 96) and torch.isfinite(tiled).all()
    # without overlap every pixel comes from one tile: the tiles decoded alone, side by side
    apart = m.decode(wide, tile_size=32, tile_overlap=0)
    assert torch.allclose(apart[..., 32:, 64:], m.decode(wide[..., 4:, 8:]), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        m.encode(images * 127.5 + 127.5)
    with pytest.raises(ValueError, match="multiples of 8"):
        m.encode(images[..., :44])
    with pytest.raises(ValueError, match="finite"):
        m.decode(z * float("nan"))
    with pytest.raises(ValueError, match="tile_size"):
        m.decode(z, tile_size=30)


def test_reduced_precision_runs(tmp_path):
    from itermix_kdiff.sd import load_sd

    tiny = tiny_checkpoint("sd1")
    full = load_sd(tiny.path, config=tiny.config)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sigma = torch.full((1,), 2.0)
    reference = full.denoiser(x, sigma, **full.conditioning(PROMPT, cfg_scale=3.0))
    for dtype, tol in ((torch.bfloat16, 0.1), (torch.float16, 0.02)):
        m = load_sd(tiny.path, config=tiny.config, dtype=dtype)
        out = m.denoiser(x, sigma, **m.conditioning(PROMPT, cfg_scale=3.0))
        assert out.dtype == torch.float32 and m.unet.dtype == dtype
        assert _relative(out, reference) < tol
        assert torch.isfinite(m.decode(out)).all()
