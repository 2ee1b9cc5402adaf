"""``nnunet-diet normdel``: the NormDEL score of one (metric, retained fraction) pair."""

from __future__ import annotations

import argparse

from ..core.normdel import normdel


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("normdel", help="NormDEL of a metric at a retained data fraction (paper 002, Eq. 4-5)",
                       description="Print 100 * sigmoid(metric * exp(-alpha * retained)), the paper's Table 3 scale.")
    p.add_argument("--metric", type=float, required=True, help="downstream accuracy in [0, 1], e.g. mIoU 0.7938")
    p.add_argument("--retained", type=float, required=True, help="retained data fraction in (0, 1], e.g. 0.05")
    p.add_argument("--alpha", type=float, default=1.0, help="compactness weight (default 1, reproduces Table 3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"{100 * float(normdel(args.metric, args.retained, args.alpha)):.2f}")
    return 0
