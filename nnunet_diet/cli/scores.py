"""``nnunet-diet scores``: a saved dynamics store -> per-sample score table (CSV)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.scores import ScoreConfig
from ..core.store import DynamicsStore
from ..report.tables import write_score_table

EVA_CONVENTIONS = {
    "paper": dict(eva_ddof=0, eva_normalize=False, eva_weights=(1.0, 1.0)),  # Eq. 4-6
    "code": dict(eva_ddof=1, eva_normalize=True, eva_weights=(0.5, 0.5)),    # the EVA repository
}


def add_score_options(p: argparse.ArgumentParser) -> None:
    """Options of :class:`ScoreConfig`, shared by every command that scores a store."""
    g = p.add_argument_group("score options (defaults follow the papers)")
    g.add_argument("--window", type=int, default=10, help="DAD window Delta t in epochs (default 10)")
    g.add_argument("--ignore-zeros", action="store_true",
                   help="DAD code's convention: average only non-zero Dice values in a window")
    g.add_argument("--absolute", action="store_true",
                   help="moving distance as sum |dDAD| + |dsigma| instead of the paper's signed sum")
    g.add_argument("--threshold", type=float, default=0.01, help="stop rule: L <= threshold * L_max (default 0.01)")
    g.add_argument("--patience", type=int, default=1,
                   help="stop rule must hold in this many consecutive windows (default 1, the paper)")
    g.add_argument("--rate", type=float, default=0.4, help="pruning rate that defines easy/ambiguous/hard regions")
    add_window_options(g)


def add_window_options(g: argparse._ArgumentGroup) -> None:
    """The EL2N and EVA windows and the EVA convention (scores of a classification-style store)."""
    g.add_argument("--el2n-window", type=int, nargs=2, default=(0, 10), metavar=("START", "STOP"),
                   help="EL2N epochs [START, STOP), 0-based (default 0 10)")
    g.add_argument("--eva-early", type=int, nargs=2, default=(0, 10), metavar=("START", "STOP"),
                   help="EVA early window [START, STOP), 0-based epochs (default 0 10, the paper's)")
    g.add_argument("--eva-late", type=int, nargs=2, default=None, metavar=("START", "STOP"),
                   help="EVA late window (default [E/2, E/2 + early length): 100-110 of 200 as in the EVA README)")
    g.add_argument("--eva-convention", choices=sorted(EVA_CONVENTIONS), default="paper",
                   help="paper: population variance, V_e + V_l (Eq. 4-6); code: unbiased, L1-normalised, 0.5/0.5")


def config_from_args(args: argparse.Namespace) -> ScoreConfig:
    return ScoreConfig(
        window=args.window, ignore_zeros=args.ignore_zeros, absolute=args.absolute, threshold=args.threshold,
        patience=args.patience, rate=args.rate, el2n_window=tuple(args.el2n_window), eva_early=tuple(args.eva_early),
        eva_late=tuple(args.eva_late) if args.eva_late else None, **EVA_CONVENTIONS[args.eva_convention],
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scores", help="per-sample scores (DAD, EVA, EL2N, AUM, ...) from a dynamics store",
                       description="Compute every score the store's series allow and write one CSV row per sample.")
    p.add_argument("store", type=Path, help="dynamics file (.npz) written by a DAD/EVA trainer")
    p.add_argument("-o", "--output", type=Path, default=None, help="CSV to write (default: <store>.scores.csv)")
    add_score_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = DynamicsStore.load(args.store)
    out = args.output or args.store.with_suffix(".scores.csv")
    _, summary = write_score_table(store, config_from_args(args), out)
    print(f"{store}")
    print(f"wrote {out}")
    print(json.dumps({k: v for k, v in summary.items() if k != "moving_distance"}, indent=2))
    return 0
