"""Every score the recorded series allow, as one per-sample table (cleanlab-style columns)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .classification import aum, el2n, eva, forgetting_events
from .dad import dad_trajectory
from .selection import KEEP_MODES, regions
from .stop_rules import check_stop_rule
from .store import DynamicsStore

__all__ = ["ScoreConfig", "score_table", "SCORE_DIRECTIONS", "EASY_END", "PAPER_KEEPS", "selection_mode"]

# Which end of each score is easy, and what each score's paper keeps (KEEP_MODES words): the one table
# of directions. DAD: high Dice = easy, keep the ambiguous middle; EVA, EL2N, forgetting: high = hard
# (largest variance / error / most forgotten), keep the hard end; AUM: low margin = hard, keep it.
EASY_END = {"eva": "low", "el2n": "low", "el2nx": "low", "forgetting": "low", "aum": "high", "dad": "high"}
PAPER_KEEPS = {"eva": "hard", "el2n": "hard", "el2nx": "hard", "forgetting": "hard", "aum": "hard",
               "dad": "ambiguous"}


def selection_mode(score: str, keep: str | None = None) -> str:
    """The :func:`~.selection.select` mode over the raw values of ``score`` that keeps ``keep``
    (ambiguous / easy / hard / random; default: what the score's paper keeps)."""
    keep = keep or PAPER_KEEPS[score]
    if keep not in ("easy", "hard"):
        return KEEP_MODES[keep]
    return "top" if (keep == "easy") == (EASY_END[score] == "high") else "bottom"


# The paper's selection mode of each score ("top" = keep the highest values), a view of the table above.
SCORE_DIRECTIONS = {score: selection_mode(score) for score in EASY_END}


@dataclass(frozen=True)
class ScoreConfig:
    """Parameters of every score; defaults follow the papers (see docs/algorithms.md)."""

    window: int = 10                      # DAD Delta t
    dad_series: str = "dice"              # series DAD is computed from ("dice_exact": exact mode)
    ignore_zeros: bool = False            # DAD code's non-zero averaging
    absolute: bool = False                # moving distance: |dDAD| + |dsigma| instead of the signed sum
    stop_rule: str = "paper"              # stop rule (core.stop_rules): paper, spearman, kept, noise
    threshold: float | None = 0.01        # the rule's threshold (paper: L <= threshold * L_max); None: its default
    patience: int = 1                     # consecutive windows the stop condition must hold
    rate: float = 0.4                     # pruning rate that defines the data-map regions
    el2n_window: tuple[int, int] = (0, 10)
    eva_early: tuple[int, int] = (0, 10)
    eva_late: tuple[int, int] | None = None
    eva_ddof: int = 0
    eva_normalize: bool = False
    eva_weights: tuple[float, float] = (1.0, 1.0)
    never_learned: float = 0.0
    extra: dict = field(default_factory=dict)


def _clip(window: tuple[int, int], n_epochs: int) -> tuple[int, int]:
    return window[0], min(window[1], n_epochs)


def score_table(store: DynamicsStore, config: ScoreConfig = ScoreConfig()) -> tuple[dict[str, np.ndarray], dict]:
    """Compute each score whose input series the store holds.

    Series used: ``dice`` (or ``config.dad_series``) -> DAD, sigma, region, dad_rank (1 = lowest DAD = hardest);
    ``el2n`` / ``el2nx`` (segmentation, per-epoch error norms; ``el2n_exact`` / ``el2nx_exact`` when
    ``config.dad_series`` is ``dice_exact`` and the store has them) -> EL2N / EL2Nx;
    ``error_norm`` -> EVA and EL2N; ``correct`` -> forgetting; ``margin`` -> AUM.

    Returns:
        ``(columns, summary)``: columns aligned with ``store.ids`` (starting with ``id`` and, when
        known, ``group``), and a summary dict (DAD stop epoch, L_max, windows, ...).
    """
    cols: dict[str, np.ndarray] = {"id": store.ids}
    if store.groups is not None:
        cols["group"] = store.groups
    summary: dict = {"n_samples": store.n_samples, "n_epochs": store.n_epochs, "series": store.names}
    if config.dad_series in store:
        traj = dad_trajectory(store[config.dad_series], config.window, ignore_zeros=config.ignore_zeros,
                              absolute=config.absolute, threshold=config.threshold, patience=config.patience,
                              rule=config.stop_rule, rate=config.rate)
        dad, sigma = traj.at()
        cols["dad"], cols["sigma"] = dad.astype(np.float64), sigma.astype(np.float64)
        cols["region"] = regions(cols["dad"], config.rate)
        order = np.argsort(np.where(np.isfinite(cols["dad"]), cols["dad"], np.inf), kind="stable")
        rank = np.empty(store.n_samples, np.int64)
        rank[order] = np.arange(1, store.n_samples + 1)
        cols["dad_rank"] = rank
        L = traj.moving_distance
        summary.update(
            dad_series=config.dad_series,
            dad_window=config.window,
            dad_scored_at_epoch=int(traj.window_end_epochs[traj.stop if traj.stop is not None else -1]),
            stop_rule=config.stop_rule,
            stop_threshold=check_stop_rule(config.stop_rule, config.threshold),
            stop_criterion=[None if not np.isfinite(v) else float(v) for v in traj.criterion],
            stop_epoch=traj.stop_epoch,
            L_max=float(np.nanmax(L)) if np.isfinite(L).any() else None,
            moving_distance=[None if not np.isfinite(v) else float(v) for v in L],
        )
    mode = config.dad_series.removeprefix("dice")  # "_exact": EL2N / EL2Nx from the same mode's series
    for name in ("el2n", "el2nx"):
        series = name + mode if name + mode in store else name
        if series in store:
            cols[name] = el2n(store[series], _clip(config.el2n_window, store.n_epochs))
            summary[f"{name}_series"] = series
    if "error_norm" in store:
        cols["eva"] = eva(store["error_norm"], _clip(config.eva_early, store.n_epochs), config.eva_late,
                          ddof=config.eva_ddof, normalize=config.eva_normalize, weights=config.eva_weights)
        cols.setdefault("el2n", el2n(store["error_norm"], _clip(config.el2n_window, store.n_epochs)))
    if "correct" in store:
        cols["forgetting"] = forgetting_events(store["correct"], never_learned=config.never_learned)
    if "margin" in store:
        cols["aum"] = aum(store["margin"])
    return cols, summary
