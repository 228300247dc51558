"""``modules.sd_samplers_cfg_denoiser``: the classifier-free-guidance denoiser every
k-diffusion sampler function receives as ``model`` (docs/webui-api.md, "The CFG denoiser").

``forward(x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)`` takes the webui's
conditioning objects (``modules.prompt_parser``) and rebuilds the tensors for its own step
counter ``self.step``, which it advances by one per call. The order of the work is the
webui's, A1111 and Forge each their own (``FLAVOUR``); left out are the refiner, the
instruct-pix2pix-free "crossattn-adm" (unCLIP) models, cond/uncond padding and previews.
The model is called through ``self.inner_model`` with A1111's condition dict
``{"c_crossattn": [...], "c_concat": [image_cond]}`` (SDXL: the conditioning's own keys plus
``c_concat``) in both flavours; Forge's backend builds other objects below that line."""

import math

import torch

from modules import FLAVOUR, prompt_parser, sd_samplers_common, shared
from modules.script_callbacks import (AfterCFGCallbackParams, CFGDenoisedParams, CFGDenoiserParams,
                                      cfg_after_cfg_callback, cfg_denoised_callback, cfg_denoiser_callback)


def catenate_conds(conds):
    if not isinstance(conds[0], dict):
        return torch.cat(conds)
    return {key: torch.cat([c[key] for c in conds]) for key in conds[0]}


def subscript_cond(cond, a, b):
    if not isinstance(cond, dict):
        return cond[a:b]
    return {key: value[a:b] for key, value in cond.items()}


def condition_dict(c_crossattn, c_concat):
    if isinstance(c_crossattn, dict):
        return {**c_crossattn, "c_concat": [c_concat]}
    return {"c_crossattn": [c_crossattn], "c_concat": [c_concat]}


class CFGDenoiser(torch.nn.Module):
    def __init__(self, sampler):
        super().__init__()
        self.model_wrap = None
        self.mask = None
        self.nmask = None
        self.init_latent = None
        self.steps = None        # the steps the user asked for (set by launch_sampling)
        self.total_steps = None  # the expected number of calls: steps, doubled for second-order samplers
        self.step = 0
        self.image_cfg_scale = None
        self.sampler = sampler
        self.p = None
        self.mask_before_denoising = False

    @property
    def inner_model(self):
        raise NotImplementedError()

    def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
        denoised_uncond = x_out[-uncond.shape[0]:]
        denoised = torch.clone(denoised_uncond)
        for i, conds in enumerate(conds_list):
            for cond_index, weight in conds:
                denoised[i] += (x_out[cond_index] - denoised_uncond[i]) * (weight * cond_scale)
        return denoised

    def combine_denoised_for_edit_model(self, x_out, cond_scale):
        out_cond, out_img_cond, out_uncond = x_out.chunk(3)
        return out_uncond + cond_scale * (out_cond - out_img_cond) + self.image_cfg_scale * (out_img_cond - out_uncond)

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        if shared.state.interrupted or shared.state.skipped:
            raise sd_samplers_common.InterruptedException
        if sd_samplers_common.apply_refiner(self, sigma):
            cond = self.sampler.sampler_extra_args["cond"]
            uncond = self.sampler.sampler_extra_args["uncond"]
        if FLAVOUR == "forge":
            denoised = self.forward_forge(x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)
        else:
            denoised = self.forward_a1111(x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)
        params = AfterCFGCallbackParams(denoised, shared.state.sampling_step, shared.state.sampling_steps)
        cfg_after_cfg_callback(params)
        self.step += 1
        return params.x

    def forward_a1111(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        # At image_cfg_scale 1 an edit model samples as a plain one (and then allows AND).
        is_edit_model = (shared.sd_model.cond_stage_key == "edit" and self.image_cfg_scale is not None
                         and self.image_cfg_scale != 1.0)
        conds_list, tensor = prompt_parser.reconstruct_multicond_batch(cond, self.step)
        uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step)
        assert not is_edit_model or all(len(conds) == 1 for conds in conds_list), "AND is not supported for edit models"

        batch_size = len(conds_list)
        repeats = [len(conds) for conds in conds_list]

        def per_prompt(t):  # each image's row once per sub-prompt
            return [torch.stack([t[i]] * n) for i, n in enumerate(repeats)]

        x_in = torch.cat(per_prompt(x) + [x] + ([x] if is_edit_model else []))
        sigma_in = torch.cat(per_prompt(sigma) + [sigma] + ([sigma] if is_edit_model else []))
        image_cond_in = torch.cat(per_prompt(image_cond) + [image_cond]
                                  + ([torch.zeros_like(self.init_latent)] if is_edit_model else []))

        params = CFGDenoiserParams(x_in, image_cond_in, sigma_in, shared.state.sampling_step,
                                   shared.state.sampling_steps, tensor, uncond, self)
        cfg_denoiser_callback(params)
        x_in, image_cond_in, sigma_in = params.x, params.image_cond, params.sigma
        tensor, uncond = params.text_cond, params.text_uncond

        skip_uncond = False
        if shared.opts.skip_early_cond > 0 and self.step / self.total_steps <= shared.opts.skip_early_cond:
            skip_uncond = True
        elif ((self.step % 2 or shared.opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond
              and not is_edit_model):
            skip_uncond = True
        if skip_uncond:
            x_in, sigma_in = x_in[:-batch_size], sigma_in[:-batch_size]

        assert tensor.shape[1] == uncond.shape[1], "prompts of different lengths are left out of the stand-in"
        if is_edit_model:
            cond_in = catenate_conds([tensor, uncond, uncond])
        elif skip_uncond:
            cond_in = tensor
        else:
            cond_in = catenate_conds([tensor, uncond])
        x_out = self.inner_model(x_in, sigma_in, cond=condition_dict(cond_in, image_cond_in))

        first_rows = [conds[0][0] for conds in conds_list]
        if skip_uncond:  # the prompt's result stands in for the skipped negative one
            x_out = torch.cat([x_out, torch.cat([x_out[i:i + 1] for i in first_rows])])

        cfg_denoised_callback(CFGDenoisedParams(x_out, shared.state.sampling_step, shared.state.sampling_steps,
                                                self.inner_model))
        if is_edit_model:
            denoised = self.combine_denoised_for_edit_model(x_out, cond_scale)
        else:
            denoised = self.combine_denoised(x_out, conds_list, uncond, 1.0 if skip_uncond else cond_scale)
        if self.mask is not None:
            denoised = denoised * self.nmask + self.init_latent * self.mask
        self.sampler.last_latent = torch.cat([x_out[i:i + 1] for i in first_rows])
        sd_samplers_common.store_latent(self.sampler.last_latent)
        return denoised

    def forward_forge(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        cond_composition, cond = prompt_parser.reconstruct_multicond_batch(cond, self.step)
        uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step) if uncond is not None else None

        if self.mask is not None:
            # Forge blends a freshly noised init latent in before the model call too (global RNG).
            predictor = self.sampler.model_wrap.predictor
            noised = predictor.noise_scaling(sigma[:, None, None, None], torch.randn_like(self.init_latent),
                                             self.init_latent, max_denoise=False)
            x = x * self.nmask + noised * self.mask

        params = CFGDenoiserParams(x, image_cond, sigma, shared.state.sampling_step, shared.state.sampling_steps,
                                   cond, uncond, self)
        cfg_denoiser_callback(params)

        if self.p.is_hr_pass:
            cond_scale = self.p.hr_cfg
        if shared.opts.skip_early_cond > 0 and self.step / self.total_steps <= shared.opts.skip_early_cond:
            cond_scale = 1.0
            self.p.extra_generation_params["Skip Early CFG"] = shared.opts.skip_early_cond
        elif (self.step % 2 or shared.opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond:
            cond_scale = 1.0
            self.p.extra_generation_params["NGMS"] = s_min_uncond

        denoised = self.sampling_function(params, cond_scale, cond_composition)
        if self.mask is not None:
            denoised = denoised * self.nmask + self.init_latent * self.mask
        self.sampler.last_latent = denoised
        sd_samplers_common.store_latent(denoised)
        return denoised

    def sampling_function(self, params, cond_scale, cond_composition):
        """Forge's guidance: the sub-prompts at each ``AND`` position (one row per image, the
        last image's weight) averaged by weight, the negative prompt left out at scale 1,
        ``uncond + (cond - uncond) * scale * (sum of weights)``; one model call."""
        x, sigma, text_cond, text_uncond = params.x, params.sigma, params.text_cond, params.text_uncond
        positions = list(zip(*cond_composition))
        weights = [position[-1][1] for position in positions]
        rows = [[index for index, _ in position] for position in positions]
        picked = [text_cond.advanced_indexing(r) if hasattr(text_cond, "advanced_indexing") else text_cond[r]
                  for r in rows]
        use_uncond = text_uncond is not None and not math.isclose(cond_scale, 1.0)
        conds = picked + ([text_uncond] if use_uncond else [])
        count = len(conds)
        image_cond = params.image_cond
        out = self.inner_model(torch.cat([x] * count), torch.cat([sigma] * count),
                               cond=condition_dict(catenate_conds(conds), torch.cat([image_cond] * count)))
        outs = out.chunk(count)
        cond_pred = sum(w * o for w, o in zip(weights, outs)) / sum(weights)
        uncond_pred = outs[-1] if use_uncond else torch.zeros_like(x)
        strength = sum(weights)
        scale = cond_scale * (1.0 if math.isclose(strength, 1.0) else strength)
        return uncond_pred + (cond_pred - uncond_pred) * scale
