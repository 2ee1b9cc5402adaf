"""Class distribution of a coreset beside the full set's, and the warning when a class collapses.

A score-ranked coreset can drift away from the data's class shares (EVA on small imbalanced sets keeps
mostly the minority class, EL2N and AUM the hardest class). :func:`class_shift` counts every class in
the full set and in the kept subset and flags a class whose kept share falls below ``factor`` (default
one half) of its full-data share, or that vanishes. Every coreset command reports it.

The remedies keep a ranking's selection unless it is shifted: :func:`floor_select` lifts every class to
that line (optionally after CCS-style hard pruning of each class's hardest end), and
:func:`floor_strata_select` keeps those class counts but draws each class's samples by CCS over the score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DietError

__all__ = ["ClassShift", "class_shift", "floor_select", "floor_strata_select", "SHIFT_FACTOR"]

SHIFT_FACTOR = 0.5  # warn when a class keeps less than half of its full-data share


@dataclass(frozen=True)
class ClassShift:
    """Per-class counts of the full set and of the coreset (classes sorted as strings); ``what`` names the
    column in the table and the warnings (``class``; e.g. ``group`` when a centre column is reported)."""

    classes: tuple[str, ...]
    full: np.ndarray
    kept: np.ndarray
    factor: float = SHIFT_FACTOR
    what: str = "class"

    @property
    def full_share(self) -> np.ndarray:
        return self.full / self.full.sum()

    @property
    def kept_share(self) -> np.ndarray:
        return self.kept / max(int(self.kept.sum()), 1)

    @property
    def shifted(self) -> tuple[str, ...]:
        """Classes that vanish or keep less than ``factor`` times their full-data share."""
        low = (self.kept == 0) | (self.kept_share < self.factor * self.full_share)
        return tuple(c for c, bad in zip(self.classes, low) if bad)

    def warnings(self) -> list[str]:
        """One line per shifted class, naming it."""
        out = []
        for c in self.shifted:
            i = self.classes.index(c)
            full = f"{100 * self.full_share[i]:.1f} % of the full set"
            if self.kept[i] == 0:
                out.append(f"warning: {self.what} {c} vanishes from the coreset ({full})")
            else:
                out.append(f"warning: {self.what} {c} keeps {100 * self.kept_share[i]:.1f} % of the coreset against {full}"
                           f" (less than {self.factor:g} x its share): the coreset is {self.what}-shifted")
        return out

    def table(self) -> str:
        """A plain-text table: class, full count and share, coreset count and share."""
        lines = [f"{self.what:>8}  {'full set':>16}  {'coreset':>16}"]
        for c, nf, sf, nk, sk in zip(self.classes, self.full, self.full_share, self.kept, self.kept_share):
            mark = "  <-" if c in self.shifted else ""
            lines.append(f"{c:>8}  {nf:>7d} ({100 * sf:5.1f} %)  {nk:>7d} ({100 * sk:5.1f} %){mark}")
        return "\n".join(lines)

    def columns(self) -> dict[str, object]:
        """Flat columns for a results table: ``share_<c>``, ``full_share_<c>`` and ``class_shift`` (e.g.
        ``1 below 0.5 x share; 2 vanishes``, blank when no class is shifted)."""
        cols: dict[str, object] = {}
        for c, sk, sf in zip(self.classes, self.kept_share, self.full_share):
            cols[f"share_{c}"] = float(sk)
            cols[f"full_share_{c}"] = float(sf)
        cols["class_shift"] = "; ".join(f"{c} {self._state(c)}" for c in self.shifted)
        return cols

    def _state(self, c: str) -> str:
        return "vanishes" if self.kept[self.classes.index(c)] == 0 else f"below {self.factor:g} x share"


def _class_order(c: str) -> tuple[bool, int, str]:
    """Integer classes in numeric order (0, 2, 10), then any other names alphabetically."""
    numeric = c.lstrip("-").isdigit()
    return not numeric, int(c) if numeric else 0, c


def class_shift(ids: np.ndarray, labels: np.ndarray, kept_ids: np.ndarray, *,
                factor: float = SHIFT_FACTOR, what: str = "class") -> ClassShift:
    """Class counts of the full set (``ids`` with their ``labels``) and of the coreset ``kept_ids``.

    Ids are compared as strings (so integer rows and case names both work); every kept id must be in
    ``ids``. Labels are compared as strings too. ``what``: the word for a label in the report.
    """
    ids = np.asarray(ids).astype(str)
    labels = np.asarray(labels).astype(str)
    kept_ids = np.asarray(kept_ids).astype(str)
    if ids.shape != labels.shape or ids.ndim != 1:
        raise DietError(f"class distribution: {labels.size} labels for {ids.size} ids")
    if len(np.unique(ids)) != len(ids):
        raise DietError("class distribution: duplicate ids")
    kept = np.isin(ids, kept_ids)
    if kept.sum() != len(np.unique(kept_ids)):
        missing = np.setdiff1d(kept_ids, ids)
        raise DietError(f"class distribution: kept id {missing[0]} is not in the full set")
    classes = sorted(set(labels.tolist()), key=_class_order)
    full = np.array([int((labels == c).sum()) for c in classes], dtype=np.int64)
    kept_counts = np.array([int((labels[kept] == c).sum()) for c in classes], dtype=np.int64)
    return ClassShift(tuple(classes), full, kept_counts, factor, what)


def _preference(scores: np.ndarray | None, n: int, mode: str, seed: int) -> np.ndarray:
    """All rows, best first: highest scores (``top``), lowest (``bottom``) or a uniform order (``random``)."""
    if mode == "random":
        return np.random.default_rng(seed).permutation(n)
    if mode not in ("top", "bottom"):
        raise DietError(f"a class floor needs mode top, bottom or random, got {mode!r}")
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,):
        raise DietError(f"{s.size} scores for {n} class labels")
    if not np.isfinite(s).all():
        raise DietError(f"{int((~np.isfinite(s)).sum())} samples have no score (NaN)")
    return np.argsort(-s if mode == "top" else s, kind="stable")


def _floors(g: np.ndarray, classes: np.ndarray, budget: int, factor: float) -> list[int]:
    """``ceil(factor * M * n_c / N)`` per class, at most the class's size."""
    n = len(g)
    return [min(int((g == c).sum()), int(np.ceil(round(factor * budget * (g == c).sum() / n, 9)))) for c in classes]


def _meets_floors(order: np.ndarray, g: np.ndarray, budget: int, factor: float) -> bool:
    """Whether the plain top ``budget`` of ``order`` already keeps every class at its floor."""
    classes = np.unique(g)
    top = g[order[:budget]]
    return all(int((top == c).sum()) >= f for c, f in zip(classes, _floors(g, classes, budget, factor)))


def _demote_class_tops(order: np.ndarray, g: np.ndarray, hard_prune: float) -> np.ndarray:
    """``order`` with the first ``int(hard_prune * n_c)`` samples of every class c moved to the end (in
    their order): CCS's hard pruning of the hardest (Zheng et al. 2023), per class because a score's
    scale differs between classes (EVA: the minority's early-window variance is several times larger)."""
    demoted = np.zeros(len(order), dtype=bool)
    for c in np.unique(g):
        mine = order[g[order] == c]
        demoted[mine[: int(hard_prune * len(mine))]] = True
    return np.concatenate([order[~demoted[order]], order[demoted[order]]])


def floor_select(scores: np.ndarray | None, keep: float, groups: np.ndarray, *, mode: str = "top",
                 factor: float = SHIFT_FACTOR, hard_prune: float = 0.0, seed: int = 0) -> np.ndarray:
    """The ``ceil(keep N)`` best-ranked samples subject to a floor per class: every class keeps at least
    ``ceil(factor * M * n_c / N)`` samples (M the budget), so no class falls below ``factor`` times its
    share (the :class:`ClassShift` warning) unless it has fewer samples.

    Each class first keeps its best floor (by the same ranking), the rest of the budget goes to the best
    remaining samples overall. When the plain ranking already meets every floor the result is exactly
    the plain ranking's. ``mode``: ``top`` (highest scores), ``bottom`` or ``random`` (``scores`` may be
    None, uniform order from ``default_rng(seed)``). ``hard_prune`` > 0 (only when the plain ranking
    misses a floor): the best ``int(hard_prune * n_c)`` of every class go to the end of the ranking first
    (:func:`_demote_class_tops`). Returns sorted row indices.
    """
    from .selection import n_kept, select

    g = np.asarray(groups).astype(str)
    n = len(g)
    order = _preference(scores, n, mode, seed)
    if not 0 <= hard_prune < 1:
        raise DietError(f"hard_prune must be in [0, 1), got {hard_prune}")
    budget = n_kept(n, keep)
    classes = np.unique(g)
    floors = _floors(g, classes, budget, factor)
    if sum(floors) > budget:  # more classes than the budget can floor: every class at its share instead
        return select(scores, keep, mode, groups=g, seed=seed, n=n)
    if hard_prune > 0 and not _meets_floors(order, g, budget, factor):
        order = _demote_class_tops(order, g, hard_prune)
    taken = np.zeros(n, dtype=bool)
    for c, floor in zip(classes, floors):
        taken[order[g[order] == c][:floor]] = True
    rest = order[~taken[order]]
    taken[rest[: max(budget - int(taken.sum()), 0)]] = True
    return np.flatnonzero(taken)


def floor_strata_select(scores: np.ndarray, keep: float, groups: np.ndarray, *, mode: str = "top",
                        factor: float = SHIFT_FACTOR, hard_prune: float = 0.1, n_strata: int = 50,
                        seed: int = 0) -> np.ndarray:
    """The class counts of :func:`floor_select` (the ranking's own class mix, floored), each class's
    samples drawn by CCS over the same score within the class (:func:`~nnunet_diet.core.selection.ccs`:
    its ``hard_prune`` share of the class's hardest end dropped, ``n_strata`` equal-width strata, uniform
    draws). The hardest end is the end ``mode`` prefers (``top``: the highest scores, e.g. EVA).

    Coverage instead of the top of the ranking, for a budget of a few dozen samples (CCS's argument at
    high pruning rates). When the plain ranking meets every floor the result is exactly the plain
    ranking's, as :func:`floor_select`'s. Returns sorted row indices.
    """
    from .selection import ccs, n_kept

    if mode not in ("top", "bottom"):
        raise DietError(f"stratified class floor needs a score ranking (mode top or bottom), got {mode!r}")
    g = np.asarray(groups).astype(str)
    s = np.asarray(scores, dtype=np.float64)
    order = _preference(s, len(g), mode, seed)
    if _meets_floors(order, g, n_kept(len(g), keep), factor):
        return np.sort(order[: n_kept(len(g), keep)])
    floored = floor_select(s, keep, g, mode=mode, factor=factor, seed=seed)
    kept = []
    for c in np.unique(g):
        rows = np.flatnonzero(g == c)
        quota = int((g[floored] == c).sum())
        if quota == len(rows):
            kept.append(rows)
        elif quota:
            prune = min(hard_prune, (len(rows) - quota) / len(rows))  # the pool must hold the quota
            kept.append(rows[ccs(s[rows], quota / len(rows), hard_prune=prune, n_strata=n_strata,
                                 hardest="highest" if mode == "top" else "lowest", seed=seed)])
    return np.sort(np.concatenate(kept))
