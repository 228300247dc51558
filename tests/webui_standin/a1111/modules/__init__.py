"""Stand-in for AUTOMATIC1111 stable-diffusion-webui 1.10.1's ``modules`` package.

Written only from docs/webui-api.md (the webuis are AGPL: none of their code is
used). It mirrors the names, signatures and call sequences that document lists, runs
real k-diffusion model wrappers, and leaves out everything else. The Forge flavour
(../../forge/modules) is this package with ``FLAVOUR = "forge"``; the few places where
Forge differs test ``FLAVOUR``. Importable as ``modules`` only inside the tests.
"""

FLAVOUR = "a1111"
