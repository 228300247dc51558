"""Write the test suite's tiny random-weight SD checkpoints (tests/tiny_sd.py) to a folder, to
try the SD code paths (the CLI, ``python -m benchmarks --checkpoint``) without real weights.

    python scripts/make_tiny_sd.py --out /tmp/tiny_sd            # sd1, sd2 and sdxl
    python -m benchmarks --checkpoint /tmp/tiny_sd/sd1/tiny_sd1.safetensors \\
        --config /tmp/tiny_sd/sd1/config --prompts prompts.txt --quick

Each family's folder holds ``tiny_<family>.safetensors`` (one original-layout single file,
20-40 MB) and ``config/`` (its diffusers config folder, for ``--config``). The weights are
random: the pictures are noise-like, the figures exercise the code, not the method.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder to write <family>/ into")
    p.add_argument("--families", default="sd1,sd2,sdxl", help="comma-separated: sd1, sd2, sdxl (default all)")
    args = p.parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.tiny_sd import PREDICTION, write_tiny

    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        if family not in PREDICTION:
            raise SystemExit(f"unknown family {family!r}; accepted: {', '.join(PREDICTION)}")
        tiny = write_tiny(family, args.out / family)
        print(f"{family}: {tiny.path} (--config {tiny.config})")


if __name__ == "__main__":
    main()
