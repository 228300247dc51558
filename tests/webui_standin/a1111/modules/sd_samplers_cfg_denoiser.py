"""``modules.sd_samplers_cfg_denoiser``: the classifier-free-guidance denoiser that every
sampler function gets as its ``model`` (docs/webui-api.md, "The CFG denoiser").

``forward(x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)`` takes the
webui's conditioning objects (``modules.prompt_parser``) and picks their conditioning for
its own call counter ``step``, one more after every call. Each flavour keeps its webui's
order of work (``FLAVOUR``). Not modelled: the refiner, unCLIP models, padding prompts of
different lengths, live previews. Both flavours call the model through ``inner_model``
with A1111's condition dict (``c_crossattn`` and ``c_concat``; SDXL: the conditioning's own
keys and ``c_concat``); Forge's backend builds other objects at that point.
"""

import math

import torch

from modules import FLAVOUR, prompt_parser, sd_samplers_common, shared
from modules.script_callbacks import (AfterCFGCallbackParams, CFGDenoisedParams, CFGDenoiserParams,
                                      cfg_after_cfg_callback, cfg_denoised_callback, cfg_denoiser_callback)


def _joined(conds):
    """Stacked conditionings (tensors, or SDXL's dicts of tensors) one after the other."""
    if not isinstance(conds[0], dict):
        return torch.cat(conds)
    keys = list(conds[0])
    columns = zip(*[[cond[key] for key in keys] for cond in conds])  # per key, every conditioning's tensor
    return dict(zip(keys, map(torch.cat, columns)))


def _rows(cond, rows):
    """Some rows of a stacked conditioning, keeping its kind."""
    if isinstance(cond, torch.Tensor):
        return cond[rows]
    return prompt_parser.DictWithShape({key: value[rows] for key, value in cond.items()})


def _model_conditioning(text, image):
    if isinstance(text, dict):
        return {**text, "c_concat": [image]}
    return {"c_crossattn": [text], "c_concat": [image]}


def _repeated(tensor, times):
    """``times`` copies of the batch, one after the other."""
    return tensor.repeat(times, *[1] * (tensor.ndim - 1))


class CFGDenoiser(torch.nn.Module):
    """The subclass provides ``inner_model``, the model wrapper it guides."""

    def __init__(self, sampler):
        super().__init__()
        self.sampler = sampler
        self.p = None
        self.mask = None  # 1 where the init latent is kept (inpainting), and nmask = 1 - mask
        self.nmask = None
        self.init_latent = None  # the clean latent in img2img, None in txt2img
        self.steps = None  # the steps asked for ...
        self.total_steps = None  # ... and the model calls they take (launch_sampling sets both)
        self.step = 0
        self.image_cfg_scale = None

    def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
        """Per image, its negative result plus each sub-prompt's difference from it, times
        the sub-prompt's weight and ``cond_scale``; the negative results are the last rows."""
        negatives = x_out[len(x_out) - uncond.shape[0]:]
        guided = []
        for image, parts in enumerate(conds_list):
            result = negatives[image]
            for row, weight in parts:
                result = result + (x_out[row] - negatives[image]) * (weight * cond_scale)
            guided.append(result)
        return torch.stack(guided)

    def combine_denoised_for_edit_model(self, x_out, cond_scale):
        """instruct-pix2pix's two scales: ``x_out`` is (prompt and image, image only, neither)."""
        both, image_only, neither = x_out.chunk(3)
        return neither + (both - image_only) * cond_scale + (image_only - neither) * self.image_cfg_scale

    def _masked(self, latent, kept):
        """``kept`` where the mask is 1, ``latent`` elsewhere."""
        return kept * self.mask + latent * self.nmask

    def _negative_skipped(self, sigma, s_min_uncond, ngms=True):
        """Whether this call does without the negative prompt (and the infotext says so):
        during the first ``opts.skip_early_cond`` of the calls, or (NGMS) below sigma
        ``s_min_uncond`` on odd calls, every call with ``opts.s_min_uncond_all``."""
        opts = shared.opts
        if opts.skip_early_cond > 0 and self.step / self.total_steps <= opts.skip_early_cond:
            self.p.extra_generation_params["Skip Early CFG"] = opts.skip_early_cond
            return True
        if ngms and (opts.s_min_uncond_all or self.step % 2 == 1) and 0 < s_min_uncond and sigma[0] < s_min_uncond:
            self.p.extra_generation_params["NGMS"] = s_min_uncond
            return True
        return False

    def forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        if shared.state.interrupted or shared.state.skipped:
            raise sd_samplers_common.InterruptedException
        guided = self._forge_forward if FLAVOUR == "forge" else self._a1111_forward
        denoised = guided(x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond)
        after = AfterCFGCallbackParams(denoised, shared.state.sampling_step, shared.state.sampling_steps)
        cfg_after_cfg_callback(after)
        self.step += 1
        return after.x

    def _two_scale_guidance(self):
        """Whether instruct-pix2pix's guidance applies: an edit model (``cond_stage_key``
        "edit") with an image CFG scale that is set and not 1; otherwise even an edit
        model is guided like any other, sub-prompts and all."""
        return shared.sd_model.cond_stage_key == "edit" and self.image_cfg_scale not in (None, 1.0)

    def _a1111_forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        is_edit_model = self._two_scale_guidance()
        conds_list, tensor = prompt_parser.reconstruct_multicond_batch(cond, self.step)
        uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step)
        assert not is_edit_model or all(len(parts) == 1 for parts in conds_list), \
            "instruct-pix2pix guidance takes a single sub-prompt per image"

        # Model rows: each image once per sub-prompt, the batch for the negative prompt,
        # and for an edit model the batch again without its image.
        by_subprompt = torch.tensor([image for image, parts in enumerate(conds_list) for _ in parts],
                                    dtype=torch.long, device=x.device)
        extra = 2 if is_edit_model else 1
        x_in = torch.cat([x[by_subprompt], _repeated(x, extra)])
        sigma_in = torch.cat([sigma[by_subprompt], _repeated(sigma, extra)])
        image_rows = [image_cond[by_subprompt], image_cond]
        if is_edit_model:
            image_rows.append(torch.zeros_like(self.init_latent))
        image_cond_in = torch.cat(image_rows)

        params = CFGDenoiserParams(x_in, image_cond_in, sigma_in, shared.state.sampling_step,
                                   shared.state.sampling_steps, tensor, uncond, self)
        cfg_denoiser_callback(params)  # a callback may have replaced any of these
        x_in, image_cond_in, sigma_in = params.x, params.image_cond, params.sigma
        tensor, uncond = params.text_cond, params.text_uncond

        batch = len(conds_list)
        skip_negative = self._negative_skipped(sigma, s_min_uncond, ngms=not is_edit_model)
        if skip_negative:
            x_in, sigma_in = x_in[:-batch], sigma_in[:-batch]
        if is_edit_model:
            text_in = _joined([tensor, uncond, uncond])
        elif skip_negative:
            text_in = tensor
        else:
            if tensor.shape[1] != uncond.shape[1]:
                raise ValueError("the stand-in does not pad prompts of different token counts")
            text_in = _joined([tensor, uncond])
        x_out = self.inner_model(x_in, sigma_in, cond=_model_conditioning(text_in, image_cond_in))

        first_subprompt = [parts[0][0] for parts in conds_list]
        if skip_negative:  # each image's first sub-prompt takes the place of its negative
            x_out = torch.cat([x_out, x_out[first_subprompt]])
        cfg_denoised_callback(CFGDenoisedParams(x_out, shared.state.sampling_step, shared.state.sampling_steps,
                                                self.inner_model))
        if is_edit_model:
            denoised = self.combine_denoised_for_edit_model(x_out, cond_scale)
        else:
            denoised = self.combine_denoised(x_out, conds_list, uncond, 1.0 if skip_negative else cond_scale)
        if self.mask is not None:
            denoised = self._masked(denoised, self.init_latent)
        self.sampler.last_latent = x_out[first_subprompt]
        sd_samplers_common.store_latent(self.sampler.last_latent)
        return denoised

    def _forge_forward(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):
        conds_list, tensor = prompt_parser.reconstruct_multicond_batch(cond, self.step)
        if uncond is not None:  # None: Forge leaves the negative prompt out at CFG scale 1
            uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step)
        if self.mask is not None:
            # Forge also puts a freshly noised init latent (torch's global RNG) into the kept part.
            predictor = self.sampler.model_wrap.predictor
            noised = predictor.noise_scaling(sigma, torch.randn_like(self.init_latent), self.init_latent,
                                             max_denoise=False)
            x = self._masked(x, noised)

        params = CFGDenoiserParams(x, image_cond, sigma, shared.state.sampling_step, shared.state.sampling_steps,
                                   tensor, uncond, self)
        cfg_denoiser_callback(params)
        if self.p.is_hr_pass:
            cond_scale = self.p.hr_cfg
        if self._negative_skipped(sigma, s_min_uncond):
            cond_scale = 1.0
        denoised = self._forge_guidance(params, cond_scale, conds_list)
        if self.mask is not None:
            denoised = self._masked(denoised, self.init_latent)
        self.sampler.last_latent = denoised
        sd_samplers_common.store_latent(denoised)
        return denoised

    def _forge_guidance(self, params, cond_scale, conds_list):
        """Forge's backend on these conditionings, in one model call: the sub-prompts in
        the same ``AND`` position of every image form one conditioning, weighted by the last
        image's weight; the weighted mean of their results is the prompt's result; the
        negative prompt is left out at scale 1 (its result then counts as 0); the result is
        ``uncond + (cond - uncond) * scale``, the scale times the sum of the weights when
        that sum is not 1."""
        positions = list(zip(*conds_list))
        weights = [position[-1][1] for position in positions]
        texts = [_rows(params.text_cond, [row for row, _ in position]) for position in positions]
        with_negative = params.text_uncond is not None and not math.isclose(cond_scale, 1.0)
        if with_negative:
            texts.append(params.text_uncond)

        n = len(texts)
        model_out = self.inner_model(_repeated(params.x, n), _repeated(params.sigma, n),
                                     cond=_model_conditioning(_joined(texts), _repeated(params.image_cond, n)))
        results = model_out.chunk(n)
        weighted = torch.zeros_like(params.x)
        for result, weight in zip(results, weights):
            weighted = weighted + result * weight
        positive = weighted / sum(weights)
        negative = results[-1] if with_negative else torch.zeros_like(params.x)
        strength = sum(weights)
        scale = cond_scale if math.isclose(strength, 1.0) else cond_scale * strength
        return negative + (positive - negative) * scale
