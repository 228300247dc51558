"""Single-file SD checkpoints: the package's writer and `load_sd` round-trip every tensor of tiny
SD 1.x / 2.x / SDXL models; diffusers' own single-file loader reads the same tensors from the
written files (so the names are the original layout, not just our own inverse); refusals."""

import json
import shutil
import struct

import pytest
import torch

from tests.tiny_sd import first_difference, one_thread, tiny_checkpoint

FAMILIES = ("sd1", "sd2", "sdxl")


@pytest.fixture(scope="module", autouse=True)
def _threads():
    yield from one_thread()


def _state(model):
    return model.state_dict()


def _loaded_components(m):
    return {"unet": m.unet, "vae": m.vae, **m.text_encoders}


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_every_tensor(family):
    from itermix_kdiff.sd import checkpoint_family, load_sd
    from itermix_kdiff.sd.model import meta_tensors

    tiny = tiny_checkpoint(family)
    assert checkpoint_family(tiny.path) == family
    m = load_sd(tiny.path, config=tiny.config)
    assert m.family == family and m.prediction_type == tiny.scheduler_config["prediction_type"]
    loaded = _loaded_components(m)
    assert set(loaded) == set(tiny.models)
    for name, model in loaded.items():
        assert meta_tensors(model) == [], name
        assert first_difference(_state(tiny.models[name]), _state(model)) is None, name
        assert all(p.device.type == "cpu" for p in model.parameters())


def _unprefixed(state):
    # transformers 5 keeps CLIPTextModel's names without `text_model.`; the converters add it
    return {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in state.items()
            if not k.endswith("embeddings.position_ids")}


@pytest.mark.parametrize("family", FAMILIES)
def test_diffusers_converters_read_the_written_file(family):
    """diffusers' own converters (those behind its `from_single_file`) turn our file back into
    exactly the models' tensors: our names are the CompVis/SGM layout those converters were
    written for, not merely our own inverse. For SD 2.x they drop the 24th OpenCLIP layer."""
    from diffusers.loaders import single_file_utils as su
    from safetensors.torch import load_file

    tiny = tiny_checkpoint(family)
    f = load_file(str(tiny.path))
    got = {"unet": su.convert_ldm_unet_checkpoint(f, tiny.models["unet"].config),
           "vae": su.convert_ldm_vae_checkpoint(f, tiny.models["vae"].config)}
    if family == "sd1":
        got["text_encoder"] = su.convert_ldm_clip_checkpoint(f)
    elif family == "sd2":
        got["text_encoder"] = su.convert_open_clip_checkpoint(tiny.models["text_encoder"], f)
    else:
        got["text_encoder"] = su.convert_ldm_clip_checkpoint(f, remove_prefix="conditioner.embedders.0.transformer.")
        got["text_encoder_2"] = su.convert_open_clip_checkpoint(tiny.models["text_encoder_2"], f,
                                                                prefix="conditioner.embedders.1.model.")
    assert set(got) == set(tiny.models)
    for name, state in got.items():
        ours = _state(tiny.models[name])
        if name.startswith("text_encoder"):
            ours, state = _unprefixed(ours), _unprefixed(state)
        assert first_difference(ours, state) is None, name


def test_written_file_holds_the_original_names():
    from safetensors import safe_open

    tiny = tiny_checkpoint("sd2")
    with safe_open(str(tiny.path), framework="pt") as f:
        keys = set(f.keys())
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "model.diffusion_model.middle_block.1.proj_in.weight" in keys
    assert "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias" in keys
    assert "model.diffusion_model.input_blocks.3.0.op.weight" in keys        # level 0's downsampler
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in keys     # up level 0: no attention
    assert "model.diffusion_model.output_blocks.5.2.conv.weight" in keys     # up level 1: after attention
    assert "first_stage_model.decoder.up.3.block.0.conv1.weight" in keys
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in keys
    assert "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight" in keys
    # SD 2.x files hold 24 OpenCLIP layers; the model conditions on the penultimate (23 layers)
    assert tiny.models["text_encoder"].config.num_hidden_layers == 23
    with safe_open(str(tiny.path), framework="pt") as f:
        q = f.get_tensor("first_stage_model.encoder.mid.attn_1.q.weight")
        qkv = f.get_tensor("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight")
    assert q.shape[-2:] == (1, 1)      # attention linears as 1x1 convolutions, as the original VAE
    w = tiny.models["text_encoder"].state_dict()
    assert torch.equal(qkv, torch.cat([w[f"encoder.layers.0.self_attn.{p}_proj.weight"] for p in "qkv"]))


def test_reduced_precision_is_kept(tmp_path):
    """An fp16 file loads as fp16 (its VAE, marked force_upcast, as float32); bf16 stays bf16;
    dtype= converts."""
    from itermix_kdiff.sd import load_sd, write_checkpoint

    tiny = tiny_checkpoint("sd1")
    path = tmp_path / "half.safetensors"
    write_checkpoint(path, "sd1", tiny.models, dtype=torch.float16)
    m = load_sd(path, config=tiny.config)
    assert m.dtype == torch.float16 and m.text_encoders["text_encoder"].dtype == torch.float16
    assert m.vae.dtype == torch.float32
    half = {k: v.half() for k, v in tiny.models["unet"].state_dict().items()}
    assert first_difference(half, m.unet.state_dict()) is None
    m = load_sd(path, config=tiny.config, dtype="bf16")
    assert {m.unet.dtype, m.vae.dtype, m.text_encoders["text_encoder"].dtype} == {torch.bfloat16}


@pytest.mark.parametrize("family", FAMILIES)
def test_diffusers_folder(tmp_path, family):
    """A diffusers folder (``save_pretrained`` of the family's pipeline) loads tensor for tensor;
    the family comes from ``model_index.json`` and the text encoder (SDXL: both encoders, the
    second a CLIPTextModelWithProjection), the prediction type from the scheduler config."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    from itermix_kdiff.sd import load_sd
    from tests.tiny_sd import clip_tokenizer

    tiny = tiny_checkpoint(family)
    scheduler = EulerDiscreteScheduler(**tiny.scheduler_config)
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline(**{k: tiny.models[k] for k in ("unet", "vae", "text_encoder",
                                                                          "text_encoder_2")},
                                         tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer("!"),
                                         scheduler=scheduler)
    else:
        pipe = StableDiffusionPipeline(**{k: tiny.models[k] for k in ("unet", "vae", "text_encoder")},
                                       tokenizer=clip_tokenizer(), scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "folder")
    for tokenizer in (tmp_path / "folder").glob("tokenizer*"):
        shutil.rmtree(tokenizer)   # never read: prompts use open_clip's vocabulary
    m = load_sd(tmp_path / "folder")
    assert m.family == family and m.prediction_type == tiny.scheduler_config["prediction_type"]
    loaded = _loaded_components(m)
    assert set(loaded) == set(tiny.models)
    for name, model in loaded.items():
        assert type(model) is type(tiny.models[name]), name
        assert first_difference(_state(tiny.models[name]), _state(model)) is None, name
    with pytest.raises(ValueError, match="config applies to single files"):
        load_sd(tmp_path / "folder", config=tiny.config)


# ---------------------------------------------------------------- refusals

def _write_header(path, tensors):
    from safetensors.torch import save_file

    save_file(tensors, str(path))
    return path


def test_refuses_pickles(tmp_path):
    from itermix_kdiff.sd import load_sd

    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="pickle"):
        load_sd(path)
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="pickle"):
        load_sd(legacy)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 10 ** 9) + b"{}")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_sd(junk)
    with pytest.raises(FileNotFoundError):
        load_sd(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("keys, match", [
    ({"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}, "unknown checkpoint layout"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}, "LoRA"),
    ({"down_blocks.0.resnets.0.conv1.weight": (4, 4, 3, 3)}, "diffusers-format"),
    ({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (3, 1)}, "SD3, Flux"),
    ({"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3),
      "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 8)}, "inpainting"),
    ({"model.diffusion_model.input_blocks.0.0.weight": (320, 8, 3, 3),
      "cond_stage_model.model.token_embedding.weight": (8, 8)}, "instruct-pix2pix"),
    ({"model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3),
      "conditioner.embedders.0.model.positional_embedding": (77, 8)}, "SDXL refiner"),
])
def test_refuses_what_it_cannot_run(tmp_path, keys, match):
    from itermix_kdiff.sd import checkpoint_family, load_sd

    path = _write_header(tmp_path / "x.safetensors", {k: torch.zeros(s) for k, s in keys.items()})
    with pytest.raises(ValueError, match=match):
        checkpoint_family(path)
    with pytest.raises(ValueError, match=match):
        load_sd(path)


def test_family_from_header_alone(tmp_path):
    """Detection reads key names only: files holding just the marker keys are told apart."""
    from itermix_kdiff.sd import checkpoint_family, guess_prediction_type

    unet_in = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3)}
    markers = {"sd1": "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
               "sd2": "cond_stage_model.model.token_embedding.weight",
               "sdxl": "conditioner.embedders.1.model.positional_embedding"}
    for family, key in markers.items():
        path = _write_header(tmp_path / f"{family}.safetensors", {**unet_in, key: torch.zeros(2, 2)})
        assert checkpoint_family(path) == family
    probe = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
    for std, expected in ((0.2, "v_prediction"), (0.01, "epsilon")):
        bias = torch.randn(320, generator=torch.Generator().manual_seed(0)) * std
        path = _write_header(tmp_path / f"sd2_{std}.safetensors", {**unet_in, markers["sd2"]: torch.zeros(2, 2),
                                                                    probe: bias})
        assert guess_prediction_type(path, "sd2") == expected
    path = _write_header(tmp_path / "xl_v.safetensors", {**unet_in, markers["sdxl"]: torch.zeros(2, 2),
                                                         "v_pred": torch.zeros(())})
    assert guess_prediction_type(path, "sdxl") == "v_prediction"


def _edited_config(tmp_path, tiny, component, **changes):
    folder = tmp_path / "config"
    shutil.copytree(tiny.config, folder)
    name = "config.json"
    data = json.loads((folder / component / name).read_text())
    data.update(changes)
    (folder / component / name).write_text(json.dumps(data))
    return folder


def test_mismatching_config_names_component_and_keys(tmp_path):
    from itermix_kdiff.sd import load_sd

    tiny = tiny_checkpoint("sd1")
    # one text layer too many: diffusers' own loader leaves it on meta without a word
    more = _edited_config(tmp_path / "a", tiny, "text_encoder", num_hidden_layers=13)
    with pytest.raises(ValueError, match=r"text_encoder .*missing: text_model\.encoder\.layers\.12\."):
        load_sd(tiny.path, config=more)
    # one too few: the file's last layer would be dropped silently
    fewer = _edited_config(tmp_path / "b", tiny, "text_encoder", num_hidden_layers=11)
    with pytest.raises(ValueError, match=r"text_encoder .*unexpected: text_model\.encoder\.layers\.11\."):
        load_sd(tiny.path, config=fewer)
    wider = _edited_config(tmp_path / "c", tiny, "unet", cross_attention_dim=48)
    with pytest.raises(ValueError, match=r"unet .*shape mismatch: .*attn2\.to_k\.weight"):
        load_sd(tiny.path, config=wider)
    with pytest.raises(ValueError, match="has the keys of sd1"):
        load_sd(tiny.path, family="sdxl", config=tiny.config)
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        load_sd(tiny.path, prediction_type="sample")


def test_missing_component_and_meta_check(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from itermix_kdiff.sd import load_sd
    from itermix_kdiff.sd.model import _check_loaded, empty_models

    tiny = tiny_checkpoint("sd1")
    with safe_open(str(tiny.path), framework="pt") as f:
        kept = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("first_stage_model.")}
    path = tmp_path / "novae.safetensors"
    save_file(kept, str(path))
    with pytest.raises(ValueError, match="the vae is missing"):
        load_sd(path, config=tiny.config)
    # the last guard: a model left with meta tensors is refused by name
    models = empty_models(tiny.config, "sd1")
    with pytest.raises(ValueError, match=r"the unet was not fully loaded: conv_in\.weight"):
        _check_loaded(models, path)
