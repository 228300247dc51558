"""Iterative mixing samplers for AUTOMATIC1111's stable-diffusion-webui and Forge.

Adds "Euler IterMix" (and the other itermix samplers) to the sampler lists and an
"Iterative Mixing" accordion; the work is done in ``itermix_kdiff.webui``.
"""

import itermix_kdiff.webui as itermix_webui
from modules import infotext_utils, scripts, sd_samplers, sd_samplers_common, sd_samplers_kdiffusion

# At import, before the UI (its sampler dropdowns are built once); "Reload UI" runs this
# file again and register() replaces the entries by name.
itermix_webui.register(sd_samplers, sd_samplers_common, sd_samplers_kdiffusion)


# Subclass through the module: every Script subclass in this namespace becomes a script.
class IterativeMixingScript(scripts.Script):
    def title(self):
        return itermix_webui.TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        import gradio as gr

        components = itermix_webui.build_ui(gr, is_img2img)
        self.infotext_fields = itermix_webui.infotext_fields(infotext_utils.PasteField, components)
        return components

    def process(self, p, *args):
        itermix_webui.process(p, args)
