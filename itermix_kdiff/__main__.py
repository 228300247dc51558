"""``python -m itermix_kdiff``: the ``itermix-upscale`` command (:mod:`itermix_kdiff.cli`)."""

import sys

from .cli import main

sys.exit(main())
