"""``nnunet-diet`` command line: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..core.errors import DietError
from . import audit, meddel, medmnist, nnunet, normdel, pipeline, report, scores, select

COMMANDS = (pipeline, scores, select, nnunet, normdel, meddel, report, audit, medmnist)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet-diet",
        description="Training-dynamics data pruning for medical imaging (DAD, EVA, MedDEL/NormDEL).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DietError as exc:
        print(f"nnunet-diet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
