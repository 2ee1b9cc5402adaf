"""``nnunet-diet scores``: a saved dynamics store -> per-sample score table (CSV)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.atomic import check_output
from ..core.errors import DietError, check_window
from ..core.scores import ScoreConfig
from ..core.store import DynamicsStore
from ..report.tables import write_score_table

EVA_CONVENTIONS = {
    "paper": dict(eva_ddof=0, eva_normalize=False, eva_weights=(1.0, 1.0)),  # Eq. 4-6
    "code": dict(eva_ddof=1, eva_normalize=True, eva_weights=(0.5, 0.5)),    # the EVA repository
}
DAD_SERIES = ("dice", "dice_exact")
# DAD settings a store of nnUNetTrainerDAD records in metadata["dad"]: its defaults here, so that re-scoring
# a fold ranks its cases as the trainer did (option -> ScoreConfig field)
TRAINER_SETTINGS = ("window", "ignore_zeros", "absolute", "threshold", "patience", "rate")


def add_score_options(p: argparse.ArgumentParser) -> None:
    """Options of :class:`ScoreConfig` for ``nnunet-diet scores``; a store written by nnUNetTrainerDAD gives
    the defaults of the DAD options (its own settings), else the papers' values below."""
    d = ScoreConfig()
    g = p.add_argument_group("score options (defaults: the trainer's settings recorded in the store, else "
                             "the papers')")
    g.add_argument("--dad-series", choices=DAD_SERIES, default=None,
                   help="series DAD is computed from (default: the one the trainer scored with, dice_exact in "
                        "exact mode, else dice)")
    g.add_argument("--window", type=int, default=None, help=f"DAD window Delta t in epochs (default {d.window})")
    g.add_argument("--ignore-zeros", action="store_true", default=None,
                   help="DAD code's convention: average only non-zero Dice values in a window")
    g.add_argument("--absolute", action="store_true", default=None,
                   help="moving distance as sum |dDAD| + |dsigma| instead of the paper's signed sum")
    g.add_argument("--threshold", type=float, default=None,
                   help=f"stop rule: L <= threshold * L_max (default {d.threshold})")
    g.add_argument("--patience", type=int, default=None,
                   help=f"stop rule must hold in this many consecutive windows (default {d.patience}, the paper)")
    g.add_argument("--rate", type=float, default=None,
                   help=f"pruning rate that defines easy/ambiguous/hard regions (default {d.rate})")
    add_window_options(g)


def add_window_options(g: argparse._ArgumentGroup) -> None:
    """The EL2N and EVA windows and the EVA convention (scores of a classification-style store)."""
    g.add_argument("--el2n-window", type=int, nargs=2, default=None, metavar=("START", "STOP"),
                   help="EL2N epochs [START, STOP), 0-based (default 0 10)")
    g.add_argument("--eva-early", type=int, nargs=2, default=None, metavar=("START", "STOP"),
                   help="EVA early window [START, STOP), 0-based epochs (default 0 10, the paper's)")
    g.add_argument("--eva-late", type=int, nargs=2, default=None, metavar=("START", "STOP"),
                   help="EVA late window (default [E/2, E/2 + early length): 100-110 of 200 as in the EVA README)")
    g.add_argument("--eva-convention", choices=sorted(EVA_CONVENTIONS), default="paper",
                   help="paper: population variance, V_e + V_l (Eq. 4-6); code: unbiased, L1-normalised, 0.5/0.5")


def window_settings(args: argparse.Namespace) -> dict:
    """The EL2N / EVA fields of :class:`ScoreConfig` from the options (unset: the paper's defaults)."""
    d = ScoreConfig()
    return dict(el2n_window=tuple(args.el2n_window or d.el2n_window), eva_early=tuple(args.eva_early or d.eva_early),
                eva_late=tuple(args.eva_late) if args.eva_late else None, **EVA_CONVENTIONS[args.eva_convention])


def _trainer_settings(store: DynamicsStore) -> dict:
    """The DAD settings nnUNetTrainerDAD recorded (``metadata["dad"]``), including the series it scored."""
    recorded = store.metadata.get("dad") if isinstance(store.metadata.get("dad"), dict) else {}
    out = {k: recorded[k] for k in TRAINER_SETTINGS if k in recorded}
    if recorded:
        out["dad_series"] = "dice_exact" if recorded.get("exact_every") else "dice"
    return out


def config_from_args(args: argparse.Namespace, store: DynamicsStore) -> tuple[ScoreConfig, dict]:
    """The score settings: options given > the trainer's recorded settings > the papers' defaults. Returns the
    config and the settings taken from the store."""
    recorded = _trainer_settings(store)
    given = {k: getattr(args, k) for k in (*TRAINER_SETTINGS, "dad_series") if getattr(args, k) is not None}
    taken = {k: v for k, v in recorded.items() if k not in given}
    config = ScoreConfig(**{**taken, **given}, **window_settings(args))
    if config.dad_series not in store and (args.dad_series or "dad_series" in recorded):
        raise DietError(f"{args.store}: no series {config.dad_series!r} for DAD (it has: {', '.join(store.names)})")
    return config, taken


def check_given_windows(args: argparse.Namespace, path: Path, n_epochs: int) -> list[str]:
    """Windows given as options must lie within the recorded epochs; the default EL2N / EVA early window
    [0, 10) is clipped to a shorter store, and the returned notes say so."""
    d, notes = ScoreConfig(), []
    for option, given, default in (("--el2n-window", args.el2n_window, d.el2n_window),
                                   ("--eva-early", args.eva_early, d.eva_early), ("--eva-late", args.eva_late, None)):
        if given is not None:
            try:
                check_window(tuple(given), n_epochs, option)
            except DietError as exc:
                raise DietError(f"{path}: {exc}") from None
        elif default is not None and default[1] > n_epochs:
            notes.append(f"note: {option} default [{default[0]}, {default[1]}) clipped to [{default[0]}, "
                         f"{n_epochs}): the store has {n_epochs} epochs")
    return notes


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scores", help="per-sample scores (DAD, EVA, EL2N, AUM, ...) from a dynamics store",
                       description="Compute every score the store's series allow and write one CSV row per sample "
                                   "(and <csv>.summary.json).")
    p.add_argument("store", type=Path, help="dynamics file (.npz) written by a DAD/EVA trainer")
    p.add_argument("-o", "--output", type=Path, default=None, help="CSV to write (default: <store>.scores.csv)")
    add_score_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.output or args.store.with_suffix(".scores.csv")
    check_output(out, inputs=[args.store])
    check_output(out.with_suffix(".summary.json"), inputs=[args.store], option=f"summary of {out}")
    store = DynamicsStore.load(args.store)
    notes = check_given_windows(args, args.store, store.n_epochs)
    config, taken = config_from_args(args, store)
    try:
        _, summary = write_score_table(store, config, out)
    except DietError as exc:
        raise DietError(f"{args.store}: {exc}") from None
    print(f"{store}")
    if taken:
        print("settings recorded by the trainer: " + ", ".join(f"{k}={v}" for k, v in taken.items())
              + " (options override them)")
    if config.dad_series in store:
        print(f"DAD from series {config.dad_series!r}" + ("" if args.dad_series else " (--dad-series to choose)"))
    print("\n".join(notes), end="\n" if notes else "")
    print(f"wrote {out}")
    print(json.dumps({k: v for k, v in summary.items() if k != "moving_distance"}, indent=2))
    return 0
