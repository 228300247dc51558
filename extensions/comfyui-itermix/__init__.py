"""ComfyUI custom nodes for iterative mixing of latents (itermix_kdiff).

Link this folder into ``ComfyUI/custom_nodes/`` and install the package into ComfyUI's Python
with ``python -m pip install --no-deps <path to itermix_kdiff>`` (``install.py`` does it for
ComfyUI-Manager). The nodes live in ``itermix_kdiff.comfy``.
"""

try:
    from itermix_kdiff.comfy import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
except ImportError as error:
    raise ImportError("comfyui-itermix needs the itermix_kdiff package in ComfyUI's Python: run "
                      "<ComfyUI python> -m pip install --no-deps <path to the itermix_kdiff repository>") from error

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
