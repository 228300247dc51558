"""The shipped config folders at real size, on the meta device (no memory, no weights): parameter
counts, the original-layout names the package writes and reads for them (checked against
diffusers' converters), and the FLOPs of one guided UNet step."""

import json

import pytest
import torch

from itermix_kdiff.sd import CONFIGS, layout, shipped_config

# millions of parameters: unet, vae, text encoders
COUNTS = {
    "sd15": (859.52, 83.65, (123.06,)),
    "sd21-v": (865.91, 83.65, (340.39,)),
    "sd21-base": (865.91, 83.65, (340.39,)),
    "sdxl-base": (2567.46, 83.65, (123.06, 694.66)),
}
FOLDERS = {"sd15": ("sd1", "epsilon"), "sd21-v": ("sd2", "v_prediction"), "sd21-base": ("sd2", "epsilon"),
           "sdxl-base": ("sdxl", "epsilon")}


def _millions(model):
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 2)


@pytest.fixture(scope="module")
def real_models():
    from itermix_kdiff.sd import empty_models

    return {name: empty_models(shipped_config(*key), key[0]) for name, key in FOLDERS.items()}


def test_shipped_folders_are_small_package_data():
    from pathlib import Path

    assert set(FOLDERS) == set(COUNTS) == set(CONFIGS.values())
    for name in FOLDERS:
        folder = shipped_config(*FOLDERS[name])
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        assert sum(p.stat().st_size for p in files) < 8000
        assert all(p.suffix == ".json" for p in files)
        assert json.loads((folder / "model_index.json").read_text())["_class_name"].startswith("StableDiffusion")
    assert Path(shipped_config("sd1")).name == "sd15"
    assert Path(shipped_config("sdxl", "v_prediction")).name == "sdxl-base"
    with pytest.raises(ValueError, match="no shipped config"):
        shipped_config("sd3")


def test_real_parameter_counts(real_models):
    for name, (unet, vae, texts) in COUNTS.items():
        models = real_models[name]
        assert all(p.is_meta for m in models.values() for p in m.parameters())
        got = (_millions(models["unet"]), _millions(models["vae"]),
               tuple(_millions(m) for k, m in models.items() if k.startswith("text_encoder")))
        assert got == (unet, vae, texts), name
    sd15_unet = sum(p.numel() for p in real_models["sd15"]["unet"].parameters())
    assert sd15_unet == 859_520_964


def test_native_sizes_and_prediction_types():
    for name, expected in (("sd15", (64, "epsilon")), ("sd21-v", (96, "v_prediction")),
                           ("sd21-base", (64, "epsilon")), ("sdxl-base", (128, "epsilon"))):
        folder = shipped_config(*FOLDERS[name])
        unet = json.loads((folder / "unet" / "config.json").read_text())
        sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        assert (unet["sample_size"], sched["prediction_type"]) == expected
        assert sched["timestep_spacing"] == "leading" and sched["beta_schedule"] == "scaled_linear"
    vae = json.loads((shipped_config("sdxl") / "vae" / "config.json").read_text())
    assert vae["scaling_factor"] == 0.13025


@pytest.mark.parametrize("name, unet_tensors", [("sd15", 686), ("sd21-v", 686), ("sdxl-base", 1680)])
def test_real_size_layout_matches_diffusers(real_models, name, unet_tensors):
    """Our original-layout names for the real-size models: diffusers' converters map them back to
    exactly the models' names and shapes, and so does our own reader."""
    from diffusers.loaders import single_file_utils as su

    family = FOLDERS[name][0]
    models = real_models[name]
    file, counts = {}, {}
    for component, model in models.items():
        state = model.state_dict()
        text_layout = layout.TEXT_LAYOUTS[family].get(component, "")
        plan = layout.plan_for(component, text_layout, list(state))
        original = layout.to_original(plan, state)
        counts[component] = len(original)
        file.update({layout.PREFIXES[family][component] + k: v for k, v in original.items()})
        back = layout.from_original(plan, original, {k: v.shape for k, v in state.items()}, component)
        assert set(back) == set(state) and all(back[k].shape == state[k].shape for k in state)
    assert (counts["unet"], counts["vae"]) == (unet_tensors, 248)
    for component, convert in (("unet", su.convert_ldm_unet_checkpoint), ("vae", su.convert_ldm_vae_checkpoint)):
        theirs = convert(file, models[component].config)
        state = models[component].state_dict()
        assert set(theirs) == set(state), component
        assert all(theirs[k].shape == state[k].shape for k in state), component


def test_flops_of_one_guided_step(real_models):
    """SD 1.5 at 512 px: one classifier-free-guided UNet call (batch 2) and one VAE decode."""
    from torch.utils.flop_counter import FlopCounterMode

    unet, vae = real_models["sd15"]["unet"], real_models["sd15"]["vae"]
    x = torch.zeros(2, 4, 64, 64, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        unet(x, torch.zeros(2, device="meta"), encoder_hidden_states=torch.zeros(2, 77, 768, device="meta"))
    assert round(counter.get_total_flops() / 1e12, 2) == 1.61
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        vae.decode(x[:1])
    assert round(counter.get_total_flops() / 1e12, 2) == 2.51


def test_importing_the_subpackage_imports_only_torch():
    import subprocess
    import sys

    code = ("import sys, itermix_kdiff, itermix_kdiff.sd; "
            "heavy = [m for m in ('diffusers', 'transformers', 'open_clip', 'accelerate', 'k_diffusion', "
            "'safetensors') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
