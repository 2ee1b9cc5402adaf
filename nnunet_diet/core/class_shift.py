"""Class distribution of a coreset beside the full set's, and the warning when a class collapses.

A score-ranked coreset can drift away from the data's class shares (EVA on small imbalanced sets keeps
mostly the minority class, EL2N and AUM the hardest class). :func:`class_shift` counts every class in
the full set and in the kept subset and flags a class whose kept share falls below ``factor`` (default
one half) of its full-data share, or that vanishes. Every coreset command reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DietError

__all__ = ["ClassShift", "class_shift", "floor_select", "SHIFT_FACTOR"]

SHIFT_FACTOR = 0.5  # warn when a class keeps less than half of its full-data share


@dataclass(frozen=True)
class ClassShift:
    """Per-class counts of the full set and of the coreset (classes sorted as strings)."""

    classes: tuple[str, ...]
    full: np.ndarray
    kept: np.ndarray
    factor: float = SHIFT_FACTOR

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
                out.append(f"warning: class {c} vanishes from the coreset ({full})")
            else:
                out.append(f"warning: class {c} keeps {100 * self.kept_share[i]:.1f} % of the coreset against {full}"
                           f" (less than {self.factor:g} x its share): the coreset is class-shifted")
        return out

    def table(self) -> str:
        """A plain-text table: class, full count and share, coreset count and share."""
        lines = [f"{'class':>8}  {'full set':>16}  {'coreset':>16}"]
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
                factor: float = SHIFT_FACTOR) -> ClassShift:
    """Class counts of the full set (``ids`` with their ``labels``) and of the coreset ``kept_ids``.

    Ids are compared as strings (so integer rows and case names both work); every kept id must be in
    ``ids``. Labels are compared as strings too.
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
    return ClassShift(tuple(classes), full, kept_counts, factor)


def floor_select(scores: np.ndarray | None, keep: float, groups: np.ndarray, *, mode: str = "top",
                 factor: float = SHIFT_FACTOR, seed: int = 0) -> np.ndarray:
    """The ``ceil(keep N)`` best-ranked samples subject to a floor per class: every class keeps at least
    ``ceil(factor * M * n_c / N)`` samples (M the budget), so no class falls below ``factor`` times its
    share (the :class:`ClassShift` warning) unless it has fewer samples.

    Each class first keeps its best floor (by the same ranking), the rest of the budget goes to the best
    remaining samples overall. When the plain ranking already meets every floor the result is exactly
    the plain ranking's. ``mode``: ``top`` (highest scores), ``bottom`` or ``random`` (``scores`` may be
    None, uniform order from ``default_rng(seed)``). Returns sorted row indices.
    """
    from .selection import n_kept, select

    g = np.asarray(groups).astype(str)
    n = len(g)
    if mode == "random":
        order = np.random.default_rng(seed).permutation(n)
    elif mode in ("top", "bottom"):
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (n,):
            raise DietError(f"{s.size} scores for {n} class labels")
        if not np.isfinite(s).all():
            raise DietError(f"{int((~np.isfinite(s)).sum())} samples have no score (NaN)")
        order = np.argsort(-s if mode == "top" else s, kind="stable")
    else:
        raise DietError(f"a class floor needs mode top, bottom or random, got {mode!r}")
    budget = n_kept(n, keep)
    classes = np.unique(g)
    floors = [min(int((g == c).sum()), int(np.ceil(round(factor * budget * (g == c).sum() / n, 9)))) for c in classes]
    if sum(floors) > budget:  # more classes than the budget can floor: every class at its share instead
        return select(scores, keep, mode, groups=g, seed=seed, n=n)
    taken = np.zeros(n, dtype=bool)
    for c, floor in zip(classes, floors):
        taken[order[g[order] == c][:floor]] = True
    rest = order[~taken[order]]
    taken[rest[: max(budget - int(taken.sum()), 0)]] = True
    return np.flatnonzero(taken)
