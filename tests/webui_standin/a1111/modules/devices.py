"""``modules.devices``: where the webui puts tensors (docs/webui-api.md, "Noise and seeds");
the stand-in runs on the CPU."""

import torch

cpu = torch.device("cpu")
device = cpu
