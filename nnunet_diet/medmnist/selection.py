"""Score a recorded run with the core library and pick coresets: EVA and the EVA paper's baselines.

Scores (one per training sample, from :mod:`nnunet_diet.core`): ``eva`` (Eq. 4-6 over an early and a
late window of ``error_norm``), ``el2n`` (mean ``error_norm`` over an early window), ``forgetting``
(from ``correct``), ``aum`` (mean ``margin``), ``entropy`` (of ``train_probs.npy``, the final model's
eval pass). Coresets keep ``ceil(rate N)`` samples: the highest EVA, EL2N, forgetting and entropy, the
lowest AUM (the directions of the EVA paper's Appendix A), CCS over AUM, or a random draw. With
``class_balance`` each class keeps its proportional share (not for CCS, which stratifies by score).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.classification import entropy
from ..core.errors import DietError, check_fraction, check_window
from ..core.scores import SCORE_DIRECTIONS, ScoreConfig, score_table
from ..core.selection import ccs, select
from ..core.store import DynamicsStore
from .config import METHODS
from .trainer import DYNAMICS, PROBS

__all__ = ["METHODS", "DIRECTIONS", "score_run", "select_coreset", "class_counts"]

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


def select_coreset(frame: pd.DataFrame, method: str, rate: float, *, class_balance: bool = False,
                   hard_prune: float = 0.1, seed: int = 0) -> np.ndarray:
    """Sorted ids (train rows) of the ``ceil(rate N)`` samples that ``method`` keeps.

    ``hard_prune``: CCS's share of lowest-AUM samples dropped before stratifying (relative to N).
    ``seed``: for ``random`` and the draws inside CCS strata.
    """
    rate = check_fraction(rate, "rate")
    method = method.lower()
    if method not in METHODS:
        raise DietError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    groups = frame["group"].to_numpy() if class_balance else None
    if method == "ccs":
        if class_balance:
            raise DietError("CCS stratifies by score, not by class: drop class balance for ccs")
        rows = ccs(frame["aum"].to_numpy(float), rate, hard_prune=hard_prune, seed=seed)
    elif method == "random":
        rows = select(None, rate, "random", groups=groups, seed=seed, n=len(frame))
    else:
        rows = select(frame[method].to_numpy(float), rate, DIRECTIONS[method], groups=groups, seed=seed)
    return np.sort(frame["id"].to_numpy(np.int64)[rows])


def class_counts(frame: pd.DataFrame, ids: np.ndarray) -> dict[str, int]:
    """Kept samples per class label (the table's ``group`` column)."""
    kept = frame.set_index("id").loc[ids, "group"]
    return {str(k): int(v) for k, v in kept.value_counts().sort_index().items()}
