"""``modules.devices``: the devices the webui puts tensors on (docs/webui-api.md, "Noise and
seeds"). The stand-in has only the CPU."""

import torch

cpu = torch.device("cpu")
device = cpu  # the webui's compute device
