"""Loading k-diffusion models from config JSON + safetensors, and the guided class-conditional denoiser."""

import json
import pickle

import pytest
import torch
import k_diffusion as K

from itermix_kdiff import models
from itermix_kdiff.demo import train


def tiny_config(augment_wrapper=True, num_classes=3):
    return {
        "model": {
            "type": "image_v1", "input_channels": 3, "input_size": [16, 16], "patch_size": 1,
            "mapping_out": 32, "mapping_cond_dim": num_classes, "depths": [1, 1], "channels": [16, 32],
            "self_attn_depths": [False, True], "augment_wrapper": augment_wrapper,
            "sigma_data": 0.5, "sigma_min": 0.02, "sigma_max": 20.0,
            "sigma_sample_density": {"type": "lognormal", "mean": -1.2, "std": 1.2},
        },
        "dataset": {"type": "imagefolder", "num_classes": num_classes},
    }


def random_denoiser(config, seed=0):
    """A k-diffusion Denoiser with every weight random (k-diffusion zero-inits the output layers)."""
    full = K.config.load_config(config)
    inner = K.config.make_model(full)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in inner.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return K.config.make_denoiser_wrapper(full)(inner).eval()


def inputs(batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 16, 16, generator=g)
    sigma = torch.tensor([0.5, 3.0])[:batch]
    cond = torch.nn.functional.one_hot(torch.tensor([0, 2])[:batch], 3).float()
    return x, sigma, cond


@pytest.mark.parametrize("augment_wrapper", [True, False])
def test_round_trip_through_safetensors(tmp_path, augment_wrapper):
    config = tiny_config(augment_wrapper)
    model = random_denoiser(config)
    json_path, st_path = train.export_inference(model.inner_model.state_dict(), config, tmp_path / "m",
                                                dtype=torch.float32)
    assert json.loads(json_path.read_text()) == config
    x, sigma, cond = inputs()
    expected = model(x, sigma, mapping_cond=cond)
    for cfg in (json_path, str(json_path), config, None):  # None: config from the safetensors metadata
        loaded = models.load_kdiffusion_model(cfg, st_path)
        assert isinstance(loaded, K.layers.Denoiser)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        torch.testing.assert_close(loaded(x, sigma, mapping_cond=cond), expected)
    # fp16 weights (the shipped format) load into an fp32 model and stay close.
    _, st16 = train.export_inference(model.inner_model.state_dict(), config, tmp_path / "h")
    half = models.load_kdiffusion_model(config, st16)
    assert (half(x, sigma, mapping_cond=cond) - expected).abs().max() < 0.05
    assert models.read_safetensors_config(st16) == config


def test_wrong_state_dict_is_rejected(tmp_path):
    config = tiny_config()
    _, st_path = train.export_inference(random_denoiser(config).inner_model.state_dict(), config,
                                        tmp_path / "m")
    other = tiny_config()
    other["model"]["channels"] = [16, 48]
    with pytest.raises(RuntimeError):
        models.load_kdiffusion_model(other, st_path)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["model.ckpt", "model.pt", "model.safetensors"])
def test_pickles_are_refused_and_never_unpickled(tmp_path, name):
    config = tiny_config()
    marker = tmp_path / "pwned"
    path = tmp_path / name
    with open(path, "wb") as f:
        pickle.dump({"state": _Payload(str(marker))}, f)
    with pytest.raises(ValueError, match="safetensors"):
        models.load_kdiffusion_model(config, path)
    assert not marker.exists()
    # torch.save's zip format is refused as well.
    torch.save(random_denoiser(config).inner_model.state_dict(), tmp_path / "zip.safetensors")
    with pytest.raises(ValueError, match="safetensors"):
        models.load_kdiffusion_model(config, tmp_path / "zip.safetensors")
    with pytest.raises(FileNotFoundError):
        models.load_kdiffusion_model(config, tmp_path / "missing.safetensors")


def test_missing_config_and_bad_config_type(tmp_path):
    import safetensors.torch

    config = tiny_config()
    safetensors.torch.save_file(random_denoiser(config).inner_model.state_dict(), str(tmp_path / "bare.safetensors"))
    with pytest.raises(ValueError, match="config"):
        models.load_kdiffusion_model(None, tmp_path / "bare.safetensors")
    with pytest.raises(TypeError, match="config"):
        models.load_kdiffusion_model(42, tmp_path / "bare.safetensors")
    # The bare file loads once the config is given.
    models.load_kdiffusion_model(config, tmp_path / "bare.safetensors")


@pytest.mark.parametrize("augment_wrapper", [True, False])
def test_class_conditional_denoiser_guidance(augment_wrapper):
    model = random_denoiser(tiny_config(augment_wrapper))
    den = models.class_conditional_denoiser(model, 3)
    x, sigma, cond = inputs()
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        c = model(x, sigma, mapping_cond=cond)
        u = model(x, sigma, mapping_cond=torch.zeros_like(cond))
        torch.testing.assert_close(den(x, sigma, class_labels=labels), c)
        torch.testing.assert_close(den(x, sigma), u)
        torch.testing.assert_close(den(x, sigma, class_labels=labels, cond_scale=3.0), u + 3.0 * (c - u),
                                   atol=1e-5, rtol=1e-5)
        assert not torch.allclose(c, u)
    x_before = x.clone()
    # It is a k-diffusion denoiser: a real sampler drives it through extra_args.
    sigmas = K.sampling.get_sigmas_karras(4, 0.02, 20.0)
    out = K.sampling.sample_euler(den, x * 20, sigmas, extra_args={"class_labels": labels, "cond_scale": 2.0},
                                  disable=True)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(x, x_before)
    with pytest.raises(ValueError, match="class_labels"):
        den(x, sigma, class_labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="num_classes"):
        models.class_conditional_denoiser(model, 0)


def test_training_is_deterministic_and_resumes_exactly(tmp_path):
    config = train.demo_config(channels=(8, 16), depths=(1, 1), mapping_out=16, batch_size=4, size=16,
                               patch_size=2, warmup_steps=2)

    def run(steps, start_state=None, start=0):
        model, ema, opt = train.build(config, seed=3)
        g = torch.Generator().manual_seed(3)
        if start_state is not None:
            model.inner_model.load_state_dict(start_state["model"])
            ema.inner_model.load_state_dict(start_state["model_ema"])
            opt.load_state_dict(start_state["opt"])
            g.set_state(start_state["generator"])
        losses = [train.train_step(model, ema, opt, config, s, 3, g, "cpu") for s in range(start, start + steps)]
        return model, ema, opt, g, losses

    model, ema, opt, g, losses = run(4)
    again = run(4)
    assert losses == again[4]
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), again[1].parameters()))
    # EMA lags the model.
    assert not all(torch.equal(a, b) for a, b in zip(ema.parameters(), model.parameters()))

    m2, e2, o2, g2, first = run(2)
    train.save_checkpoint(tmp_path / "ck.pt", m2, e2, o2, config, 2, 3, g2, 1.0, first[-1])
    state = train.load_checkpoint(tmp_path / "ck.pt")
    assert state["step"] == 2 and state["config"] == config
    _, e3, _, _, rest = run(2, state, start=2)
    assert first + rest == losses
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), e3.parameters()))
    # The EMA exports to the inference format and loads back through the generic loader.
    _, st_path = train.export_inference(e3.inner_model.state_dict(), config, tmp_path / "demo", dtype=torch.float32)
    loaded = models.load_kdiffusion_model(None, st_path)
    x, sigma, cond = inputs()
    cond = torch.nn.functional.one_hot(torch.tensor([1, 4]), 5).float()
    torch.testing.assert_close(loaded(x, sigma, mapping_cond=cond), e3(x, sigma, mapping_cond=cond))


def test_train_script_resumes_and_forks(tmp_path, capsys):
    """scripts/train_demo_model.py: a run continues where it stopped; --init-from starts a new
    run at the other's step with another sigma density; an architecture change is refused."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_demo_model.py"
    spec = importlib.util.spec_from_file_location("train_demo_model", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    tiny = ["--channels", "8", "16", "--depths", "1", "1", "--self-attn", "0", "0", "--mapping-out", "16",
            "--batch-size", "2", "--snapshot-every", "2"]
    first, fork = tmp_path / "first", tmp_path / "fork"
    script.main(tiny + ["--run-dir", str(first), "--steps", "2"])
    script.main(tiny + ["--run-dir", str(first), "--steps", "3"])
    assert "resumed from" in capsys.readouterr().out and train.load_checkpoint(first / "checkpoint.pt")["step"] == 3
    # --time-limit: an invocation out of time stops with a checkpoint and a snapshot of where it is.
    script.main(tiny + ["--run-dir", str(first), "--steps", "10", "--time-limit", "0"])
    assert "time limit of 0 s reached at step 3" in capsys.readouterr().out
    assert train.load_checkpoint(first / "checkpoint.pt")["step"] == 3 and (first / "ema_000003.safetensors").exists()

    script.main(tiny + ["--run-dir", str(fork), "--steps", "4", "--init-from", str(first / "checkpoint.pt"),
                        "--density-mean", "-0.6", "--density-std", "1.4"])
    state = train.load_checkpoint(fork / "checkpoint.pt")
    assert state["step"] == 4 and state["config"]["model"]["sigma_sample_density"]["mean"] == -0.6
    assert (fork / "ema_000004.safetensors").exists() and not (fork / "ema_000002.safetensors").exists()
    with pytest.raises(SystemExit, match="resume it without --init-from"):
        script.main(tiny + ["--run-dir", str(fork), "--steps", "5", "--init-from", str(first / "checkpoint.pt")])
    with pytest.raises(SystemExit, match="another model"):
        script.main(["--channels", "12", "16"] + tiny[3:] + ["--run-dir", str(first), "--steps", "4"])


def test_demo_config_self_attention_per_level():
    config = train.demo_config(channels=(8, 16), depths=(1, 1), mapping_out=16, size=16, self_attn=(0, 1))
    assert config["model"]["self_attn_depths"] == [False, True]
    model, _, _ = train.build(config, seed=0)
    assert sum(isinstance(m, K.layers.SelfAttention2d) for m in model.modules()) == 2  # down and up block
    with pytest.raises(ValueError, match="self_attn needs one entry per level"):
        train.demo_config(channels=(8, 16), depths=(1, 1), self_attn=(1,))
