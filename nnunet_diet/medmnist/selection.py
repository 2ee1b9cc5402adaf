"""Score a recorded run with the core library and pick coresets: EVA and the EVA paper's baselines.

Scores (one per training sample, from :mod:`nnunet_diet.core`): ``eva`` (Eq. 4-6 over an early and a
late window of ``error_norm``), ``el2n`` (mean ``error_norm`` over an early window), ``forgetting``
(from ``correct``), ``aum`` (mean ``margin``), ``entropy`` (of ``train_probs.npy``, the final model's
eval pass). Coresets keep ``ceil(rate N)`` samples: the highest EVA, EL2N, forgetting and entropy, the
lowest AUM (the directions of the EVA paper's Appendix A), CCS over AUM, or a random draw.

Class-shift remedies (options; the default is the paper's unbalanced selection): ``class_balance``
``on`` keeps each class at its proportional share (not for CCS, which stratifies by score). The
``floor`` settings change only a class-shifted coreset (an unshifted one stays exactly the paper's;
CCS is left as it is): ``floor`` keeps the method's ranking but floors every class at half its share,
the line below which :func:`~nnunet_diet.core.class_shift.class_shift` warns
(:func:`~nnunet_diet.core.class_shift.floor_select`); ``floor-prune`` first moves each class's
``hard_prune`` share of highest-ranked samples to the end of the ranking (CCS's hard pruning, per
class); ``floor-strata`` keeps ``floor``'s class counts and draws each class by CCS over the score
(:func:`~nnunet_diet.core.class_shift.floor_strata_select`). ``auto`` is the floor setting that
docs/medmnist.md recommends (:data:`~nnunet_diet.medmnist.config.AUTO_BALANCE`). ``class_norm``
normalises the score within each class before ranking
(:func:`~nnunet_diet.core.classification.class_normalise`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.class_shift import ClassShift, class_shift, floor_select, floor_strata_select
from ..core.classification import class_normalise, entropy
from ..core.errors import DietError, check_fraction, check_window
from ..core.scores import SCORE_DIRECTIONS, ScoreConfig, score_table
from ..core.selection import ccs, select
from ..core.store import DynamicsStore
from .config import AUTO_BALANCE, BALANCE, METHODS
from .trainer import DYNAMICS, PROBS

__all__ = ["METHODS", "DIRECTIONS", "BALANCE", "FLOORS", "score_run", "select_coreset", "balance_setting",
           "resolve_floor", "coreset_shift"]

FLOORS = ("floor", "floor-prune", "floor-strata", "auto")  # settings that change only a class-shifted coreset

DIRECTIONS = {**SCORE_DIRECTIONS, "entropy": "top"}  # highest entropy = most uncertain first


def _check_windows(path: Path, store: DynamicsStore, config: ScoreConfig) -> None:
    windows = {"EVA early window": config.eva_early, "EL2N window": config.el2n_window}
    if config.eva_late is not None:
        windows["EVA late window"] = config.eva_late
    try:
        for name, window in windows.items():
            check_window(window, store.n_epochs, name)
    except DietError as exc:
        raise DietError(f"{path}: {exc}") from None


def score_run(run: str | Path, config: ScoreConfig = ScoreConfig()) -> pd.DataFrame:
    """Per-sample table of a run folder: ``id`` (train row), ``group`` (class label) and every score.

    Windows beyond the recorded epochs are an error (the core would otherwise clip early windows).
    """
    path = Path(run) / DYNAMICS
    store = DynamicsStore.load(path)
    _check_windows(path, store, config)
    try:
        cols, _ = score_table(store, config)
    except DietError as exc:
        raise DietError(f"{path}: {exc}") from None
    frame = pd.DataFrame(cols)
    probs_path = Path(run) / PROBS
    if not probs_path.is_file():
        raise DietError(f"{probs_path}: missing (the final model's probabilities, written when training ends)")
    probs = np.load(probs_path)
    if probs.shape[0] != len(frame):
        raise DietError(f"{probs_path}: {probs.shape[0]} rows for {len(frame)} samples in {path}")
    frame["entropy"] = entropy(probs)
    return frame


def balance_setting(class_balance: bool | str) -> str:
    """One of :data:`BALANCE` (True / False stand for on / off)."""
    if isinstance(class_balance, bool):
        return "on" if class_balance else "off"
    if class_balance not in BALANCE:
        raise DietError(f"class balance must be one of {', '.join(BALANCE)}, got {class_balance!r}")
    return class_balance


def select_coreset(frame: pd.DataFrame, method: str, rate: float, *, class_balance: bool | str = False,
                   class_norm: str | None = None, hard_prune: float = 0.1, seed: int = 0) -> np.ndarray:
    """Sorted ids (train rows) of the ``ceil(rate N)`` samples that ``method`` keeps.

    ``class_balance``: False / ``off`` (the paper), True / ``on``, ``floor``, ``floor-prune``,
    ``floor-strata`` or ``auto`` (see the module docstring; for ``random`` every floor setting is ``floor``).
    ``class_norm``: ``mean`` or ``zscore`` normalisation of the score within each class (not for
    random and CCS). ``hard_prune``: CCS's share of lowest-AUM samples dropped before stratifying
    (relative to N); for ``floor-prune`` and ``floor-strata`` the share of each class's highest-ranked
    samples set aside. ``seed``: for ``random`` and the draws inside CCS strata.
    """
    rate = check_fraction(rate, "rate")
    method = method.lower()
    if method not in METHODS:
        raise DietError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    balance = balance_setting(class_balance)
    balance = AUTO_BALANCE if balance == "auto" else balance
    if class_norm is not None and method in ("random", "ccs"):
        raise DietError(f"class normalisation applies to a ranking score, not to {method}")
    labels = frame["group"].to_numpy()
    if method == "ccs":
        if balance == "on":
            raise DietError("CCS stratifies by score, not by class: drop class balance for ccs")
        rows = ccs(frame["aum"].to_numpy(float), rate, hard_prune=hard_prune, seed=seed)
        return np.sort(frame["id"].to_numpy(np.int64)[rows])
    if method == "random" and balance in ("floor-prune", "floor-strata"):
        balance = "floor"  # no score to prune or stratify by: the floor over a uniform order
    scores, mode = (None, "random") if method == "random" else (frame[method].to_numpy(float), DIRECTIONS[method])
    if class_norm is not None:
        scores = class_normalise(scores, labels, class_norm)
    if balance == "floor-strata":
        rows = floor_strata_select(scores, rate, labels, mode=mode, hard_prune=hard_prune, seed=seed)
    elif balance in ("floor", "floor-prune"):
        rows = floor_select(scores, rate, labels, mode=mode, hard_prune=hard_prune if balance == "floor-prune" else 0,
                            seed=seed)
    else:
        rows = select(scores, rate, mode, groups=labels if balance == "on" else None, seed=seed, n=len(frame))
    return np.sort(frame["id"].to_numpy(np.int64)[rows])


def resolve_floor(frame: pd.DataFrame, method: str, rate: float, ids: np.ndarray, class_balance: str,
                  **options) -> str:
    """What a floor setting (:data:`FLOORS`) did to the coreset ``ids``: ``off`` (the paper's selection,
    unchanged) or the floor rule applied (``auto``: :data:`AUTO_BALANCE`). ``options``: the other
    arguments of :func:`select_coreset`."""
    paper = select_coreset(frame, method, rate, class_balance="off", **options)
    if np.array_equal(ids, paper):
        return "off"
    done = AUTO_BALANCE if class_balance == "auto" else class_balance
    return "floor" if method == "random" else done


def coreset_shift(frame: pd.DataFrame, ids: np.ndarray) -> ClassShift:
    """Class distribution of the coreset ``ids`` beside the full table's (the ``group`` column)."""
    return class_shift(frame["id"].to_numpy(), frame["group"].to_numpy(), ids)
