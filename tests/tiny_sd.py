"""Tiny random-weight SD 1.x / 2.x / SDXL models for the tests, each written ONE time per test
process as an original-layout single-file checkpoint beside a diffusers config folder.

The models keep the real block pattern (SD: four levels with cross-attention in the first
three; SDXL: three levels, attention in the last two with 1, 2 and 2 transformer layers; two
resnets per down block; a four-level VAE, x8) and the real text-encoder depths (CLIP-L 12
layers, SD 2.x OpenCLIP 24 in the file and 23 in the model, SDXL's bigG 32), at tiny widths.
SDXL's encoders have different widths (32 and 48), as the real ones do (768 and 1280). The
UNets normalise groups of 4 to 8 channels: at the 1x1 lowest level of an 8x8 latent, groups
of one channel would divide rounding noise by sqrt(eps) and make every comparison chaotic.
Every parameter is perturbed from its initialisation, so a swapped name cannot hide.
"""

from __future__ import annotations

import functools
import gzip
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

_ROOT = tempfile.TemporaryDirectory(prefix="tiny_sd_")

PREDICTION = {"sd1": "epsilon", "sd2": "v_prediction", "sdxl": "epsilon"}


@dataclass
class TinySD:
    family: str
    path: Path          # the single-file checkpoint
    config: Path        # its diffusers config folder
    models: Dict[str, torch.nn.Module]
    scheduler_config: dict
    extra: Dict[str, torch.Tensor]   # original-layout tensors the models do not hold


def _clip_config(width: int, layers: int, act: str, projected: bool = False):
    from transformers import CLIPTextConfig

    config = CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=2 * width,
                            num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=77,
                            hidden_act=act, projection_dim=width)
    config.architectures = ["CLIPTextModelWithProjection" if projected else "CLIPTextModel"]
    return config


def _unet(family: str):
    from diffusers import UNet2DConditionModel

    if family == "sdxl":
        return UNet2DConditionModel(
            sample_size=8, block_out_channels=(32, 64, 64), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 2), attention_head_dim=(2, 4, 4), cross_attention_dim=80,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 48, norm_num_groups=8)
    sd2 = family == "sd2"
    return UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 32, 64, 64), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_head_dim=(2, 2, 4, 4) if sd2 else 8, cross_attention_dim=32,
        use_linear_projection=sd2, upcast_attention=sd2, norm_num_groups=8)


def _vae(family: str):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(32, 32, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                         sample_size=64, scaling_factor=0.13025 if family == "sdxl" else 0.18215)


def _text_encoders(family: str) -> Dict[str, torch.nn.Module]:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if family == "sd1":
        return {"text_encoder": CLIPTextModel(_clip_config(32, 12, "quick_gelu"))}
    if family == "sd2":
        return {"text_encoder": CLIPTextModel(_clip_config(32, 23, "gelu"))}
    return {"text_encoder": CLIPTextModel(_clip_config(32, 12, "quick_gelu")),
            "text_encoder_2": CLIPTextModelWithProjection(_clip_config(48, 32, "gelu", projected=True))}


def scheduler_config(prediction_type: str, spacing: str = "leading") -> dict:
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type=prediction_type, timestep_spacing=spacing, steps_offset=1)


@torch.no_grad()
def perturb(model: torch.nn.Module, generator: torch.Generator) -> None:
    for p in model.parameters():
        p.add_(torch.randn(p.shape, generator=generator) * 0.05)


def _unused_open_clip_tensors(family: str, models, generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """What real files hold beside the weights the models use: ``logit_scale``; for SD 2.x
    also the 24th resblock and ``text_projection``."""
    def rand(*shape):
        return torch.randn(shape, generator=generator) * 0.05

    if family == "sdxl":
        return {"conditioner.embedders.1.model.logit_scale": torch.tensor(4.6052)}
    if family != "sd2":
        return {}
    w = models["text_encoder"].config.hidden_size
    inner = models["text_encoder"].config.intermediate_size
    block = "cond_stage_model.model.transformer.resblocks.23."
    shapes = {"ln_1.weight": (w,), "ln_1.bias": (w,), "attn.in_proj_weight": (3 * w, w), "attn.in_proj_bias": (3 * w,),
              "attn.out_proj.weight": (w, w), "attn.out_proj.bias": (w,), "ln_2.weight": (w,), "ln_2.bias": (w,),
              "mlp.c_fc.weight": (inner, w), "mlp.c_fc.bias": (inner,), "mlp.c_proj.weight": (w, inner),
              "mlp.c_proj.bias": (w,)}
    extra = {block + k: rand(*s) for k, s in shapes.items()}
    extra["cond_stage_model.model.text_projection"] = rand(w, w)
    extra["cond_stage_model.model.logit_scale"] = torch.tensor(4.6052)
    return extra


def write_config(folder: Path, family: str, models, sched: dict) -> None:
    """A diffusers config folder for ``models`` (what ``load_sd(config=...)`` and diffusers'
    ``from_single_file(config=...)`` read)."""
    models["unet"].save_config(folder / "unet")
    models["vae"].save_config(folder / "vae")
    index = {"_class_name": "StableDiffusionXLPipeline" if family == "sdxl" else "StableDiffusionPipeline",
             "scheduler": ["diffusers", "EulerDiscreteScheduler"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    for name in [k for k in models if k.startswith("text_encoder")]:
        models[name].config.save_pretrained(folder / name)
        index[name] = ["transformers", type(models[name]).__name__]
        index[name.replace("text_encoder", "tokenizer")] = ["transformers", "CLIPTokenizer"]
    if family == "sdxl":
        index["force_zeros_for_empty_prompt"] = True
    else:
        index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "EulerDiscreteScheduler", **sched}, indent=2))
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


@functools.lru_cache(maxsize=None)
def tiny_checkpoint(family: str) -> TinySD:
    """The tiny ``family`` model (seeded, perturbed), written once per process."""
    return write_tiny(family, Path(_ROOT.name) / family)


def write_tiny(family: str, folder: Path) -> TinySD:
    """Build the tiny ``family`` model (seeded, perturbed: the same tensors every time) and write
    ``folder/tiny_<family>.safetensors`` and its config folder ``folder/config``."""
    from itermix_kdiff.sd import write_checkpoint

    folder = Path(folder)
    seed = {"sd1": 1, "sd2": 2, "sdxl": 3}[family]
    torch.manual_seed(seed)    # the models' own initialisation draws from the global RNG
    generator = torch.Generator().manual_seed(100 + seed)
    models = {"unet": _unet(family), "vae": _vae(family), **_text_encoders(family)}
    for model in models.values():
        perturb(model, generator)
        model.eval()
    extra = _unused_open_clip_tensors(family, models, generator)
    sched = scheduler_config(PREDICTION[family])
    write_config(folder / "config", family, models, sched)
    path = folder / f"tiny_{family}.safetensors"
    write_checkpoint(path, family, models, extra=extra)
    return TinySD(family, path, folder / "config", models, sched, extra)


@functools.lru_cache(maxsize=None)
def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """A transformers ``CLIPTokenizer`` built in memory from open_clip's BPE file, for the
    diffusers pipelines used as the reference. ``pad_token="!"`` pads with id 0, as the hub's
    SD 2.x / SDXL second tokenizers do (which also makes a ``!`` in a prompt a pad token)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={v: i for i, v in enumerate(vocab)}, merges=merges, model_max_length=77,
                         pad_token=pad_token)


def one_thread():
    """A generator for module-scoped fixtures: one torch thread (faster for these tiny models
    on a shared 2-core machine), the caller's count restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def first_difference(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> Optional[str]:
    """The first name whose tensors differ (or that only one side has), or None."""
    if set(a) != set(b):
        return sorted(set(a) ^ set(b))[0]
    return next((k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])), None)
