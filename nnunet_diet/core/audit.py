"""The label audit: every training case in review order, with a reason a reviewer can act on.

DAD paper (He et al. 2023), Sec. 4.2: a case the network keeps segmenting badly (low DAD) is worth a
look, its annotation may be wrong. The audit orders the cases of one scoring run by DAD at the scoring
window (Eq. 3; lowest first), except that a case whose label has no foreground goes first and a case
without a Dice in that window goes last (:func:`review_order`; the MONAI Label app's ``audit`` strategy serves
this order, its ``dad_hardest`` queue the plain DAD ranks), and says *why* each flagged case is there, from
its whole trajectory:

- ``no foreground in the label``: EL2Nx was never defined (no foreground voxel in any recorded patch);
  such a case goes first even when its DAD is undefined (network and label both empty: Dice NaN);
- ``Dice near 0 throughout training``: DAD below ``near_zero`` in every window;
- ``learned then forgotten``: DAD reached ``learned`` in some window and a later window lost at least
  ``forgotten_share`` of that best DAD (relative: a label contradicting the anatomy the network learns, e.g.
  swapped classes, is first learned with the cohort, then unlearned to near 0 while the cohort improves);
- ``lowest DAD`` / ``unstable: sigma`` / ``EL2N`` / ``EL2Nx`` / ``cleanlab``: in the worst ``tail`` share;
- ``not scored``: no Dice in the scoring window (online mode: never drawn); these go last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .dad import dad_windows
from .errors import DietError, check_fraction
from .scores import ScoreConfig, score_table
from .store import DynamicsStore

__all__ = ["AuditConfig", "audit_table", "review_order", "empty_labels", "AUDIT_COLUMNS"]

AUDIT_COLUMNS = ("audit_rank", "id", "group", "flagged", "reason", "dad", "sigma", "dad_rank", "el2n", "el2nx",
                 "cleanlab", "dad_max", "region")


@dataclass(frozen=True)
class AuditConfig:
    """Thresholds of the reasons (the ordering itself has none: it is DAD's)."""

    near_zero: float = 0.1        # every window's DAD below this: "Dice near 0 throughout training"
    learned: float = 0.2          # a window DAD at least this counts as learned ...
    forgotten_share: float = 0.6  # ... and a later window that lost this share of it as forgotten
    tail: float = 0.05            # worst share of each score that is flagged (5 %)

    def __post_init__(self) -> None:
        for name in ("near_zero", "learned", "forgotten_share", "tail"):
            check_fraction(getattr(self, name), name)


def _worst(values: np.ndarray, tail: float, high_is_bad: bool) -> np.ndarray:
    """Mask of the worst ``ceil(tail * n)`` finite values (ties at the cut included), only those worse than
    the median: a score that does not vary flags nothing."""
    v = np.where(np.isfinite(values), values if high_is_bad else -values, np.nan)
    ok = v[np.isfinite(v)]
    if not len(ok):
        return np.zeros(len(values), bool)
    k = max(1, int(np.ceil(tail * len(ok))))
    cut = np.sort(ok)[::-1][k - 1]
    with np.errstate(invalid="ignore"):
        return (v >= cut) & (v > np.median(ok))


def empty_labels(store: DynamicsStore, el2n: str = "el2n", el2nx: str = "el2nx") -> np.ndarray:
    """Cases recorded (EL2N defined) whose label never had a foreground voxel (EL2Nx never defined)."""
    if el2n not in store or el2nx not in store:
        return np.zeros(store.n_samples, bool)
    return np.isfinite(store[el2n]).any(axis=1) & ~np.isfinite(store[el2nx]).any(axis=1)


def review_order(dad: np.ndarray, ids: np.ndarray, first: np.ndarray | None = None) -> np.ndarray:
    """Row indices in review order: ``first`` rows, then lowest DAD, undefined DAD last; ties by id."""
    first = np.zeros(len(dad), bool) if first is None else first
    key = np.where(first, -np.inf, np.where(np.isfinite(dad), dad, np.inf))
    return np.lexsort((ids.astype(str), key))


def audit_table(store: DynamicsStore, config: ScoreConfig = ScoreConfig(), audit: AuditConfig = AuditConfig(),
                extra: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Per-case audit columns (``AUDIT_COLUMNS`` that apply), rows in review order, and the score summary.

    Args:
        store: the scoring run's dynamics (needs ``config.dad_series``).
        config: score settings (the fold's: window, stop rule, series).
        audit: thresholds of the reasons.
        extra: more per-case scores aligned with ``store.ids``; ``cleanlab`` (label quality, lower = worse)
            adds a column and a reason.
    """
    if config.dad_series not in store:
        raise DietError(f"the dynamics have no {config.dad_series!r} series (they have {', '.join(store.names)}); "
                        "the audit needs the Dice of a DAD scoring run")
    cols, summary = score_table(store, config)
    n = store.n_samples
    dad, sigma = cols["dad"], cols["sigma"]
    windows, _ = dad_windows(store[config.dad_series], config.window, ignore_zeros=config.ignore_zeros)
    scored_at = (summary["dad_scored_at_epoch"] + 1) // config.window  # windows up to the scoring one
    upto = windows[:scored_at]
    seen_any = np.isfinite(upto).any(axis=0)
    filled = np.where(np.isfinite(upto), upto, -np.inf)
    dad_max = np.where(seen_any, filled.max(axis=0), np.nan)
    peak = filled.argmax(axis=0)
    after = np.where(np.arange(len(upto))[:, None] >= peak[None, :], np.where(np.isfinite(upto), upto, np.inf), np.inf)
    after_peak_min = np.where(seen_any, after.min(axis=0), np.nan)
    no_fg = empty_labels(store, summary.get("el2n_series", "el2n"), summary.get("el2nx_series", "el2nx"))

    reasons: list[list[str]] = [[] for _ in range(n)]

    def add(mask: np.ndarray, text: str) -> None:
        for i in np.flatnonzero(mask):
            reasons[i].append(text)

    pct = f"{100 * audit.tail:g} %"
    add(no_fg, "no foreground in the label (EL2Nx undefined in every epoch)")
    add(seen_any & (np.where(np.isfinite(upto), upto, 0) < audit.near_zero).all(axis=0) & ~no_fg,
        "Dice near 0 throughout training")
    add((dad_max >= audit.learned) & (after_peak_min <= (1 - audit.forgotten_share) * dad_max),
        "learned then forgotten")
    add(_worst(dad, audit.tail, high_is_bad=False), f"lowest DAD: in the bottom {pct}")
    add(_worst(sigma, audit.tail, high_is_bad=True), f"unstable: sigma in the top {pct}")
    for name, label in (("el2n", "EL2N"), ("el2nx", "EL2Nx")):
        if name in cols:
            add(_worst(cols[name], audit.tail, high_is_bad=True), f"{label} in the top {pct}")
    if extra and "cleanlab" in extra:
        cleanlab = np.asarray(extra["cleanlab"], dtype=np.float64)
        if cleanlab.shape != (n,):
            raise DietError(f"cleanlab scores: {cleanlab.shape[0]} values for {n} cases")
        cols["cleanlab"] = cleanlab
        add(_worst(cleanlab, audit.tail, high_is_bad=False), f"cleanlab label quality in the bottom {pct}")
    add(~np.isfinite(dad) & ~no_fg, "not scored: no Dice in the scoring window (use exact mode)")

    cols["dad_max"] = dad_max
    cols["flagged"] = np.array([bool(r) for r in reasons])
    cols["reason"] = np.array(["; ".join(r) for r in reasons], dtype=object)
    order = review_order(dad, store.ids, first=no_fg)
    out = {name: np.asarray(cols[name])[order] for name in AUDIT_COLUMNS if name in cols}
    out["audit_rank"] = np.arange(1, n + 1)
    out = {name: out[name] for name in AUDIT_COLUMNS if name in out}
    summary.update(audit_settings=asdict(audit), flagged=int(cols["flagged"].sum()))
    return out, summary
