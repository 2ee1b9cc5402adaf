"""``nnunet-diet`` command line: one sub-command per module in this package.

Bad input ends with exactly one line on stderr, ``nnunet-diet COMMAND: error: ...`` naming the file or
option and the problem, and exit code 2: argparse's usage errors, :class:`DietError` and the operating
system's refusals (a read-only folder, a file where a folder is needed) alike.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..core.errors import DietError
from . import audit, meddel, medmnist, nnunet, normdel, pipeline, report, scores, select

COMMANDS = (pipeline, scores, select, nnunet, normdel, meddel, report, audit, medmnist)


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser with usage errors as one line (its default prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: str) -> str:
    """A message's non-empty lines joined with '; ' (nothing of a multi-line message is dropped)."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="nnunet-diet",
        description="Training-dynamics data pruning for medical imaging (DAD, EVA, MedDEL/NormDEL).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")  # sub-parsers: OneLineParser
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DietError as exc:
        message = one_line(str(exc))
    except OSError as exc:  # the system refused a read or write our checks did not foresee
        name = exc.filename if exc.filename is not None else "file"
        message = f"{name}: {exc.strerror or exc}"
    print(f"nnunet-diet {args.command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
