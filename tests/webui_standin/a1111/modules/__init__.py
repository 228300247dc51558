"""Stand-in for AUTOMATIC1111 stable-diffusion-webui 1.10.1's ``modules`` package
(docs/webui-api.md, "Versions").

Written from docs/webui-api.md and a reading of the webuis' code (they are AGPL: none of
it is copied). It mirrors the names, types, signatures and call order that document
lists, runs real k-diffusion model wrappers, and leaves out everything else. The Forge
flavour (../../forge/modules) is this package with ``FLAVOUR = "forge"``; the places where
Forge differs test ``FLAVOUR``. Importable as ``modules`` only inside the tests.
"""

FLAVOUR = "a1111"
