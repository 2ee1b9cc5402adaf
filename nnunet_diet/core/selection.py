"""Which samples to keep, given one score per sample.

All selectors return sorted row indices of the kept samples and are deterministic: ties are
broken by row order, random choices use ``numpy.random.default_rng(seed)``.

Sizes: ``keep`` is the kept fraction in (0, 1) and ``ceil(keep * N)`` samples are kept (EVA's
M = ceil(alpha N)); a pruning rate q is ``keep = 1 - q``. With ``groups`` every group keeps its
proportional share (largest-remainder rounding, so the shares add up to the same total).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import DietError, check_fraction

__all__ = ["MODES", "KEEP_MODES", "n_kept", "select", "regions", "ccs"]

MODES = ("top", "bottom", "middle", "random")
# What is kept, in the DAD paper's words (its data-map regions), as the mode that selects it from an
# easiness score (high = easy): the one vocabulary of prune, the report and the MONAI Label strategies.
KEEP_MODES = {"ambiguous": "middle", "easy": "top", "hard": "bottom", "random": "random"}
_NAN_POLICIES = ("raise", "keep", "remove")


def n_kept(n: int, keep: float) -> int:
    """``ceil(keep * n)`` (at least 1 for n > 0), robust to float noise such as 0.6 * 10."""
    keep = check_fraction(keep, "keep fraction")
    return min(n, max(1 if n else 0, math.ceil(round(keep * n, 9))))


def _apportion(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over groups proportionally to ``sizes`` (largest remainder, ties by order)."""
    quota = sizes * (total / sizes.sum())
    base = np.floor(quota).astype(np.int64)
    rest = total - base.sum()
    order = np.lexsort((np.arange(len(sizes)), -(quota - base)))
    base[order[:rest]] += 1
    return base


def _tails(n: int, k: int) -> tuple[int, int]:
    """Samples removed from the low and the high end when keeping the middle ``k`` of ``n``
    (an odd one comes off the high end)."""
    removed = n - k
    return removed // 2, removed - removed // 2


def _rank_keep(scores: np.ndarray, k: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Positions (into ``scores``) of the ``k`` samples ``mode`` keeps."""
    n = len(scores)
    if mode == "random":
        return rng.permutation(n)[:k]
    ascending = np.argsort(scores, kind="stable")
    if mode == "bottom":
        return ascending[:k]
    if mode == "top":
        return np.argsort(-scores, kind="stable")[:k]
    low, high = _tails(n, k)
    return ascending[low : n - high]


def _check_scores(scores: np.ndarray | None, n: int | None) -> np.ndarray:
    if scores is None:
        raise DietError("scores are required for this selection mode")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise DietError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    if n is not None and s.size != n:
        raise DietError(f"{s.size} scores for {n} samples")
    return s


def select(
    scores: np.ndarray | None,
    keep: float,
    mode: str = "top",
    *,
    groups: np.ndarray | None = None,
    seed: int = 0,
    nan_policy: str = "raise",
    n: int | None = None,
) -> np.ndarray:
    """Keep a fraction of samples ranked by ``scores``.

    Args:
        scores: one value per sample (may be None for ``mode="random"`` when ``n`` is given).
        keep: kept fraction in (0, 1).
        mode: ``top`` (highest scores), ``bottom`` (lowest), ``middle`` (drop both tails equally:
            DAD's "keep ambiguous"), ``random``.
        groups: optional label per sample; each group then keeps its proportional share.
        seed: for ``random``.
        nan_policy: samples with a NaN score: ``raise`` (default), ``keep`` (always kept, counted in
            the budget) or ``remove`` (always removed).
        n: number of samples when ``scores`` is None.
    """
    if mode not in MODES:
        raise DietError(f"unknown selection mode {mode!r}; choose one of {', '.join(MODES)}")
    if nan_policy not in _NAN_POLICIES:
        raise DietError(f"nan_policy must be one of {_NAN_POLICIES}, got {nan_policy!r}")
    if scores is None and mode == "random":
        if n is None or n < 1:
            raise DietError("random selection without scores needs the number of samples n >= 1")
        s = np.zeros(n)
    else:
        s = _check_scores(scores, n)
    total = len(s)
    budget = n_kept(total, keep)
    bad = ~np.isfinite(s)
    if bad.any() and mode != "random":
        if nan_policy == "raise":
            raise DietError(f"{int(bad.sum())} of {total} samples have no score (NaN), e.g. row "
                            f"{int(np.flatnonzero(bad)[0])}; choose nan_policy 'keep' or 'remove'")
        if nan_policy == "keep" and bad.sum() > budget:
            raise DietError(f"{int(bad.sum())} unscored samples exceed the budget of {budget} kept samples")
    else:
        bad[:] = False
    forced = np.flatnonzero(bad) if nan_policy == "keep" else np.empty(0, np.int64)
    ranked = np.flatnonzero(~bad)
    if groups is None:
        group_rows = [ranked]
        quotas = np.array([budget - len(forced)])
    else:
        g = np.asarray(groups).astype(str)
        if g.shape != (total,):
            raise DietError(f"{g.shape[0] if g.ndim else 0} group labels for {total} samples")
        # each group's share of the whole budget; the unscored samples it keeps count against its own share
        # (unscored samples that are removed take no share: the groups divide the budget by scored samples)
        labels, sizes = np.unique(g if nan_policy == "keep" else g[ranked], return_counts=True)
        share = _apportion(sizes, budget)
        group_rows = [ranked[g[ranked] == lab] for lab in labels]
        quotas = share - np.array([np.sum(g[forced] == lab) for lab in labels])
        if (quotas < 0).any():
            i = int(np.flatnonzero(quotas < 0)[0])
            raise DietError(f"group {labels[i]!r}: its {share[i] - quotas[i]} unscored samples exceed its share of "
                            f"{share[i]} kept samples")
    rng = np.random.default_rng(seed)
    kept = [forced] + [rows[_rank_keep(s[rows], int(q), mode, rng)] for rows, q in zip(group_rows, quotas)]
    return np.sort(np.concatenate(kept))


def regions(scores: np.ndarray, rate: float = 0.4, unscored: str = "keep") -> np.ndarray:
    """Data-map regions for a pruning rate q: ``hard`` (the low tail), ``easy`` (the high tail), else
    ``ambiguous``: exactly the tails that DAD's keep-ambiguous pruning at rate q removes
    (``select(scores, 1 - q, "middle", nan_policy=unscored)``, where unscored samples kept count in the
    budget, so the tails grow). Unscored samples get ``unscored``.
    """
    s = _check_scores(scores, None)
    out = np.full(len(s), "unscored", dtype=object)
    ok = np.flatnonzero(np.isfinite(s))
    if len(ok):
        forced = len(s) - len(ok) if unscored == "keep" else 0
        k = max(n_kept(len(s), 1 - check_fraction(rate, "rate")) - forced, 0)
        low, high = _tails(len(ok), min(k, len(ok)))
        ascending = ok[np.argsort(s[ok], kind="stable")]
        out[ascending] = "ambiguous"
        out[ascending[:low]] = "hard"
        out[ascending[len(ok) - high:]] = "easy"
    return out.astype(str)


def ccs(
    scores: np.ndarray,
    keep: float,
    *,
    hard_prune: float = 0.0,
    n_strata: int = 50,
    hardest: str = "lowest",
    seed: int = 0,
) -> np.ndarray:
    """Coverage-centric coreset selection (Zheng et al. 2023).

    1. Drop the ``int(hard_prune * N)`` hardest samples (lowest score for AUM: ``hardest="lowest"``).
    2. Split the remaining score range into ``n_strata`` equal-width strata.
    3. Budget ``ceil(keep * N)``; visit strata from the smallest, each takes
       ``min(size, remaining budget // remaining strata)``, drawn uniformly at random.
    """
    s = _check_scores(scores, None)
    if not np.isfinite(s).all():
        raise DietError(f"CCS: {int((~np.isfinite(s)).sum())} samples have no score (NaN)")
    if not 0 <= hard_prune < 1:
        raise DietError(f"hard_prune must be in [0, 1), got {hard_prune}")
    if hardest not in ("lowest", "highest"):
        raise DietError(f"hardest must be 'lowest' or 'highest', got {hardest!r}")
    if n_strata < 1:
        raise DietError(f"n_strata must be >= 1, got {n_strata}")
    total = len(s)
    budget = n_kept(total, keep)
    order = np.argsort(s if hardest == "lowest" else -s, kind="stable")
    pool = np.sort(order[int(hard_prune * total):])
    if budget > len(pool):
        raise DietError(f"CCS: budget {budget} exceeds the {len(pool)} samples left after hard pruning")
    vals = s[pool]
    lo, hi = vals.min(), vals.max()
    edges = np.linspace(lo, hi, n_strata + 1)
    stratum = np.clip(np.searchsorted(edges, vals, side="right") - 1, 0, n_strata - 1)
    members = [pool[stratum == k] for k in range(n_strata)]
    members = [m for m in members if len(m)]
    rng = np.random.default_rng(seed)
    kept = []
    remaining = budget
    for i, idx in enumerate(sorted(members, key=len)):
        take = min(len(idx), remaining // (len(members) - i))
        kept.append(rng.choice(idx, size=take, replace=False))
        remaining -= take
    return np.sort(np.concatenate(kept)) if kept else np.empty(0, np.int64)
