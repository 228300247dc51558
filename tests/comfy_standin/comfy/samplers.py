"""comfy.samplers (ComfyUI 0.8.0's names, signatures and call order).

A SamplerCustom run: :func:`sample` -> ``CFGGuider.sample`` -> (OUTER_SAMPLE wrappers)
``outer_sample`` -> ``inner_sample`` -> (SAMPLER_SAMPLE wrappers) ``KSAMPLER.sample``, which
wraps the guider in :class:`KSamplerX0Inpaint`, noises the latent to ``sigmas[0]`` and calls
its sampler function. Every model call of that function then goes ``KSamplerX0Inpaint``
(inpainting) -> ``CFGGuider.__call__`` -> (PREDICT_NOISE wrappers) ``predict_noise`` ->
:func:`sampling_function` (guidance) -> :func:`calc_cond_batch` -> ``BaseModel.apply_model``.
``KSampler`` (the KSampler node's path) builds its schedule and calls :func:`sample`.

Simplified where the nodes do not reach: a prompt is a CONDITIONING ``[[tensor, {...}], ...]``
of which the first tensor is used (no areas, masks, hooks, ControlNet or extra model
conditions), models stay where they are, no ``sampler_cfg_function`` patches.

Schedules: :func:`calculate_sigmas` computes ComfyUI's schedulers with
``itermix_kdiff.sigmas.get_sigmas`` rather than again here. Against ComfyUI 0.8.0's own
``calculate_sigmas`` that function was measured equal on 756 cases (SD's discrete table and
the flow table, every scheduler, 1 to 40, 50 and 100 steps) but two, ``kl_optimal`` at one
step, where ComfyUI's result is NaN; it also refuses a schedule with repeated sigmas, which
ComfyUI returns. So tests/test_comfy.py checks here how the nodes choose and cut schedules,
and tests/test_comfy_integration.py checks the numbers in a real ComfyUI.
"""

import math

import torch

import comfy.model_patcher
import comfy.patcher_extension
import comfy.sampler_helpers
import comfy.utils
from comfy.k_diffusion import sampling as k_diffusion_sampling
from comfy.patcher_extension import WrappersMP

#: ComfyUI's sampler names that the stand-in's ``comfy.k_diffusion.sampling`` offers, in ComfyUI's
#: order. As in ComfyUI the list holds names that are not itermix samplers (lms, dpm_fast,
#: dpm_adaptive, dpmpp_3m_sde, ddim), and two whose functions take no ``sigmas``
#: (dpm_fast, dpm_adaptive: :func:`ksampler` gives them one). ComfyUI 0.8.0 has 44 names; the
#: stand-in leaves out those whose samplers k-diffusion lacks (the cfg_pp ones, UniPC, ...).
KSAMPLER_NAMES = ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive",
                  "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde"]
SAMPLER_NAMES = KSAMPLER_NAMES + ["ddim"]

#: ComfyUI's scheduler names, in its order (the first is the fallback for an unknown name)
SCHEDULER_NAMES = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                   "linear_quadratic", "kl_optimal"]


def _chain(wrapper_type, method, owner, model_options):
    """``method`` of ``owner`` behind the wrappers of ``wrapper_type`` found in ``model_options``."""
    wrappers = comfy.patcher_extension.get_all_wrappers(wrapper_type, model_options, is_model_options=True)
    return comfy.patcher_extension.WrapperExecutor.new_class_executor(method, owner, wrappers)


def calc_cond_batch(model, conds, x_in, timestep, model_options):
    """The denoised prediction of ``x_in`` for each prompt in ``conds``; a prompt given as None
    (the negative one, when guidance does not need it) gives None."""
    transformer_options = model_options.get("transformer_options", {})

    def predict(cond):
        context = comfy.utils.repeat_to_batch_size(cond[0][0], x_in.shape[0]).to(x_in.device)
        return model.apply_model(x_in, timestep, c_crossattn=context, transformer_options=transformer_options)

    return [None if cond is None else predict(cond) for cond in conds]


def sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options={}, seed=None):
    """Classifier-free guidance on denoised predictions: ``uncond + cond_scale (cond - uncond)``.
    At a scale of 1 that is the positive prediction, and the negative prompt is not run."""
    if math.isclose(cond_scale, 1.0):
        return calc_cond_batch(model, [cond], x, timestep, model_options)[0]
    positive, negative = calc_cond_batch(model, [cond, uncond], x, timestep, model_options)
    return negative + (positive - negative) * cond_scale


class KSamplerX0Inpaint:
    """The model a sampler function is given: the guider ``model`` (``inner_model``), with
    inpainting. KSAMPLER sets ``latent_image`` (the clean latent) and ``noise`` (the run's
    noise). Where ``denoise_mask`` is 0 the model sees the clean latent noised to the step's
    sigma and the output is the clean latent; the model's ``denoise_mask_function`` (set by
    DifferentialDiffusion) may change the mask at each step."""

    def __init__(self, model, sigmas):
        self.inner_model = model
        self.sigmas = sigmas

    def __call__(self, x, sigma, denoise_mask, model_options={}, seed=None):
        if denoise_mask is None:
            return self.inner_model(x, sigma, model_options=model_options, seed=seed)
        mask_function = model_options.get("denoise_mask_function")
        if mask_function is not None:
            denoise_mask = mask_function(sigma, denoise_mask,
                                         extra_options={"model": self.inner_model, "sigmas": self.sigmas})
        keep = 1.0 - denoise_mask
        known = self.inner_model.inner_model.scale_latent_inpaint(x=x, sigma=sigma, noise=self.noise,
                                                                  latent_image=self.latent_image)
        denoised = self.inner_model(x * denoise_mask + known * keep, sigma, model_options=model_options, seed=seed)
        return denoised * denoise_mask + self.latent_image * keep


class Sampler:
    def max_denoise(self, model_wrap, sigmas):
        """Whether the run starts at (or above) the top of the model's table."""
        top, first = float(model_wrap.inner_model.model_sampling.sigma_max), float(sigmas[0])
        return first > top or math.isclose(first, top, rel_tol=1e-05)


class KSAMPLER(Sampler):
    """The SAMPLER type: a function ``fn(model, x, sigmas, extra_args=..., callback=...,
    disable=..., **extra_options)`` in k-diffusion's form, ``x`` the noised latent.
    ``inpaint_options={"random": True}`` (ComfyUI's ddim) gives the inpainting wrapper noise of
    its own: drawn after seeding the global RNG with ``extra_args["seed"] + 1``."""

    def __init__(self, sampler_function, extra_options={}, inpaint_options={}):
        if set(inpaint_options) - {"random"}:
            raise NotImplementedError("the stand-in's KSAMPLER knows only the inpaint option 'random'")
        self.sampler_function = sampler_function
        self.extra_options = extra_options
        self.inpaint_options = inpaint_options

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        """Run the function with the guider ``model_wrap`` on ``noise`` added to ``latent_image``
        (both in the model's latent space); ``callback(step, x0, x, total_steps)``."""
        extra_args["denoise_mask"] = denoise_mask
        inpainting = KSamplerX0Inpaint(model_wrap, sigmas)
        inpainting.latent_image = latent_image
        inpainting.noise = noise
        if self.inpaint_options.get("random", False):
            own = torch.manual_seed(extra_args.get("seed", 41) + 1)
            inpainting.noise = torch.randn(noise.shape, generator=own, device="cpu").to(noise.dtype).to(noise.device)
        scaling = model_wrap.inner_model.model_sampling
        x = scaling.noise_scaling(sigmas[0], noise, latent_image, self.max_denoise(model_wrap, sigmas))
        steps = len(sigmas) - 1

        def k_callback(info):
            callback(info["i"], info["denoised"], info["x"], steps)

        samples = self.sampler_function(inpainting, x, sigmas, extra_args=extra_args,
                                        callback=None if callback is None else k_callback, disable=disable_pbar,
                                        **self.extra_options)
        return scaling.inverse_noise_scaling(sigmas[-1], samples)


def _range_of(sigmas):
    """The ``(sigma_min, sigma_max)`` that DPM-Solver's samplers run between for a schedule:
    its first sigma down to its last, or its last but one when the last is 0."""
    low = sigmas[-1] if sigmas[-1] > 0 else sigmas[-2]
    return low, sigmas[0]


def ksampler(sampler_name, extra_options={}, inpaint_options={}):
    """The KSAMPLER of ``comfy.k_diffusion.sampling.sample_<sampler_name>``. dpm_fast and
    dpm_adaptive, which take a sigma range instead of ``sigmas``, get a function of ``sigmas``
    that runs them over :func:`_range_of` (dpm_fast with one model step per interval)."""
    if sampler_name == "dpm_fast":
        def dpm_fast_function(model, noise, sigmas, extra_args, callback, disable):
            if len(sigmas) < 2:
                return noise
            low, high = _range_of(sigmas)
            return k_diffusion_sampling.sample_dpm_fast(model, noise, low, high, len(sigmas) - 1,
                                                        extra_args=extra_args, callback=callback, disable=disable)
        function = dpm_fast_function
    elif sampler_name == "dpm_adaptive":
        def dpm_adaptive_function(model, noise, sigmas, extra_args, callback, disable, **extra_options):
            if len(sigmas) < 2:
                return noise
            low, high = _range_of(sigmas)
            return k_diffusion_sampling.sample_dpm_adaptive(model, noise, low, high, extra_args=extra_args,
                                                            callback=callback, disable=disable, **extra_options)
        function = dpm_adaptive_function
    else:
        function = getattr(k_diffusion_sampling, "sample_" + sampler_name)
    return KSAMPLER(function, extra_options, inpaint_options)


def sampler_object(name):
    """The SAMPLER a KSampler runs for the name ``name``: ddim is Euler whose inpainting draws
    noise of its own (ComfyUI's UniPC names are not offered by the stand-in)."""
    if name == "ddim":
        return ksampler("euler", inpaint_options={"random": True})
    return ksampler(name)


class CFGGuider:
    """The GUIDER type: a MODEL with its prompts and CFG scale. During a run ``inner_model`` is
    the diffusion model, ``conds`` the prompts and ``model_options`` a copy of the MODEL's
    options holding its wrappers; calling the guider is one guided model call."""

    def __init__(self, model_patcher):
        self.model_patcher = model_patcher
        self.model_options = model_patcher.model_options
        self.original_conds = {}
        self.cfg = 1.0

    def set_conds(self, positive, negative):
        self.inner_set_conds({"positive": positive, "negative": negative})

    def set_cfg(self, cfg):
        self.cfg = cfg

    def inner_set_conds(self, conds):
        self.original_conds.update(conds)

    def __call__(self, *args, **kwargs):
        return self.outer_predict_noise(*args, **kwargs)

    def outer_predict_noise(self, x, timestep, model_options={}, seed=None):
        chain = _chain(WrappersMP.PREDICT_NOISE, self.predict_noise, self, self.model_options)
        return chain.execute(x, timestep, model_options, seed)

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        return sampling_function(self.inner_model, x, timestep, self.conds.get("negative"), self.conds.get("positive"),
                                 self.cfg, model_options=model_options, seed=seed)

    def inner_sample(self, noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
                     latent_shapes=None):
        # an all-zero latent (a new, empty one) is not scaled into the model's space
        if latent_image is not None and torch.count_nonzero(latent_image) > 0:
            latent_image = self.inner_model.process_latent_in(latent_image)
        run_options = comfy.model_patcher.create_model_options_clone(self.model_options)
        run_options.setdefault("transformer_options", {})["sample_sigmas"] = sigmas
        extra_args = {"model_options": run_options, "seed": seed}
        chain = _chain(WrappersMP.SAMPLER_SAMPLE, sampler.sample, sampler, run_options)
        samples = chain.execute(self, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
        return self.inner_model.process_latent_out(samples.to(torch.float32))

    def outer_sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
                     seed=None, latent_shapes=None):
        # ComfyUI loads the models onto the device here; the stand-in's stay on the CPU
        self.inner_model = self.model_patcher.model
        device = self.model_patcher.load_device
        try:
            return self.inner_sample(noise.to(device), latent_image.to(device), device, sampler, sigmas.to(device),
                                     denoise_mask, callback, disable_pbar, seed, latent_shapes=latent_shapes)
        finally:
            del self.inner_model

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        if len(sigmas) == 0:
            return latent_image
        if denoise_mask is not None:
            denoise_mask = comfy.sampler_helpers.prepare_mask(denoise_mask, latent_image.shape,
                                                             self.model_patcher.load_device)
        self.conds = {kind: list(cond) for kind, cond in self.original_conds.items()}
        saved_options = self.model_options
        self.model_options = comfy.model_patcher.create_model_options_clone(saved_options)
        try:
            comfy.sampler_helpers.prepare_model_patcher(self.model_patcher, self.conds, self.model_options)
            chain = _chain(WrappersMP.OUTER_SAMPLE, self.outer_sample, self, self.model_options)
            return chain.execute(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
                                 latent_shapes=[latent_image.shape])
        finally:
            self.model_options = saved_options
            del self.conds


def sample(model, noise, positive, negative, cfg, device, sampler, sigmas, model_options={}, latent_image=None,
           denoise_mask=None, callback=None, disable_pbar=False, seed=None):
    guider = CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider.sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)


class _KDiffusionTable:
    """A ``model_sampling`` as ``itermix_kdiff.sigmas`` reads a discrete k-diffusion schedule."""

    def __init__(self, model_sampling):
        self.sigmas = model_sampling.sigmas
        self.sigma_to_t = model_sampling.timestep
        self.t_to_sigma = model_sampling.sigma


def calculate_sigmas(model_sampling, scheduler_name, steps):
    """The ``steps``-step schedule ``scheduler_name`` on the table of ``model_sampling`` (see
    the module docstring for how it is computed)."""
    from itermix_kdiff.sigmas import get_sigmas

    if scheduler_name not in SCHEDULER_NAMES:
        raise ValueError(f"unknown scheduler {scheduler_name!r}; ComfyUI's are {', '.join(SCHEDULER_NAMES)}")
    return get_sigmas(_KDiffusionTable(model_sampling), scheduler_name, steps)


class KSampler:
    SCHEDULERS = SCHEDULER_NAMES
    SAMPLERS = SAMPLER_NAMES
    #: samplers that make two model calls per step: ComfyUI computes one step more and drops
    #: the last sigma but one
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS = {"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"}

    def __init__(self, model, steps, device, sampler=None, scheduler=None, denoise=None, model_options={}):
        self.model = model
        self.device = device
        self.scheduler = scheduler if scheduler in self.SCHEDULERS else self.SCHEDULERS[0]
        self.sampler = sampler if sampler in self.SAMPLERS else self.SAMPLERS[0]
        self.set_steps(steps, denoise)
        self.denoise = denoise
        self.model_options = model_options

    def calculate_sigmas(self, steps):
        table = self.model.get_model_object("model_sampling")
        if self.sampler not in self.DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
            return calculate_sigmas(table, self.scheduler, steps)
        longer = calculate_sigmas(table, self.scheduler, steps + 1)
        kept = torch.ones(len(longer), dtype=torch.bool)
        kept[-2] = False
        return longer[kept]

    def set_steps(self, steps, denoise=None):
        """``sigmas``: the whole ``steps``-step schedule; with ``denoise`` < 1 the last
        ``steps + 1`` sigmas of the ``int(steps / denoise)``-step one; none for ``denoise`` 0."""
        self.steps = steps
        full = denoise is None or denoise > 0.9999
        if not full and denoise <= 0.0:
            self.sigmas = torch.zeros(0)
            return
        total = steps if full else int(steps / denoise)
        sigmas = self.calculate_sigmas(total).to(self.device)
        self.sigmas = sigmas if full else sigmas[-(steps + 1):]

    def sample(self, noise, positive, negative, cfg, latent_image=None, start_step=None, last_step=None,
               force_full_denoise=False, denoise_mask=None, sigmas=None, callback=None, disable_pbar=False,
               seed=None):
        if start_step is not None or last_step is not None:
            raise NotImplementedError("the stand-in's KSampler runs whole schedules (no start_step/last_step)")
        sigmas = self.sigmas if sigmas is None else sigmas
        return sample(self.model, noise, positive, negative, cfg, self.device, sampler_object(self.sampler), sigmas,
                      self.model_options, latent_image=latent_image, denoise_mask=denoise_mask, callback=callback,
                      disable_pbar=disable_pbar, seed=seed)
