"""When to stop the DAD scoring run: the paper's rule and rules that track the ranking itself.

Every rule turns a run's windows into one *criterion* per window and stops at the first window
where the criterion has met its threshold in ``patience`` consecutive windows:

- ``paper`` (He et al. 2023, Algorithm 1): ``L_w / max(L_1..L_w) <= threshold`` (default 0.01),
  L the moving distance of Eq. 7 (signed unless ``absolute``).
- ``spearman``: Spearman's rho between the DAD vectors of windows w-1 and w (cases seen in both,
  ties ranked by their mean rank) ``>= threshold`` (default 0.9): the order of the cases has settled.
- ``kept``: overlap of the sets kept by keep-ambiguous pruning at ``rate`` (Eq. 8's middle band)
  in windows w-1 and w, ``|K_{w-1} n K_w| / |K_w| >= threshold`` (default 0.9): the fold a user
  would train on has settled.
- ``noise``: the absolute moving distance ``sum_i |dDAD_i| + |dsigma_i|`` divided by its noise floor
  ``<= threshold`` (default 1): the floor is the same sum between two bootstrap resamples of window
  w's own epochs (per case, with replacement; mean over ``n_boot`` pairs), i.e. what L would be if
  the two windows were draws from one unchanged distribution.

The three ranking rules only count windows after L has peaked (L_w below the largest L so far): in
the first epochs most cases tie at DAD 0 and an unchanged all-background ranking is no ranking.
"""

from __future__ import annotations

import numpy as np

from .errors import DietError
from .selection import select

__all__ = ["STOP_RULES", "check_stop_rule", "threshold_range", "stop_test", "stop_criterion", "first_stop"]

STOP_RULES = {"paper": 0.01, "spearman": 0.9, "kept": 0.9, "noise": 1.0}  # rule -> default threshold
THRESHOLD_RANGES = {"paper": (0, 1, False), "spearman": (0, 1, True), "kept": (0, 1, True),
                    "noise": (0, np.inf, False)}  # rule -> (low, high, high included)
_BELOW = {"paper", "noise"}  # rules whose criterion must fall to the threshold (others must rise to it)
_CRITERIA = {"paper": "L / L_max", "spearman": "Spearman", "kept": "kept overlap", "noise": "L_abs / floor"}
_MIN_SHARED = 3              # cases seen in both windows needed to compare two rankings
_BLOCK_ELEMENTS = 1 << 20    # bootstrap draws held at a time


def check_stop_rule(rule: str, threshold: float | None) -> float:
    """Validate a rule name and its threshold; returns the threshold (the rule's default for None)."""
    if rule not in STOP_RULES:
        raise DietError(f"unknown stop rule {rule!r}; expected one of {', '.join(STOP_RULES)}")
    value = STOP_RULES[rule] if threshold is None else float(threshold)
    low, high, closed = THRESHOLD_RANGES[rule]
    if not (low < value < high or (closed and value == high)):
        raise DietError(f"stop rule {rule}: threshold must be in {threshold_range(rule)}, got {value}")
    return value


def stop_test(rule: str, threshold: float, patience: int = 1) -> str:
    """The test ``rule`` stops at, in words for a log line, e.g. ``stops at L / L_max <= 0.01`` or
    ``stops at Spearman >= 0.8 in 2 windows in a row``."""
    return (f"stops at {_CRITERIA[rule]} {'<=' if rule in _BELOW else '>='} {threshold:g}"
            + (f" in {patience} windows in a row" if patience > 1 else ""))


def threshold_range(rule: str) -> str:
    """The valid thresholds of ``rule`` as an interval, e.g. ``(0, 1]``."""
    low, high, closed = THRESHOLD_RANGES[rule]
    return f"({low:g}, {high:g}{']' if closed else ')'}"


def _mean_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing their mean rank (the ranks of Spearman's rho)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts
    return (start + (counts - 1) / 2)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two equally long vectors; NaN when either is constant."""
    ra, rb = _mean_ranks(a), _mean_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return np.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def kept_overlap(a: np.ndarray, b: np.ndarray, rate: float) -> float:
    """``|K(a) n K(b)| / |K(b)|`` for the sets keep-ambiguous pruning at ``rate`` keeps by each score."""
    ka, kb = select(a, 1 - rate, "middle"), select(b, 1 - rate, "middle")
    return len(np.intersect1d(ka, kb)) / len(kb)


def _consecutive(dad: np.ndarray, compare) -> np.ndarray:
    """``compare(dad[w-1], dad[w])`` over the cases seen in both, per window (NaN at w = 0)."""
    out = np.full(len(dad), np.nan)
    for w in range(1, len(dad)):
        both = np.isfinite(dad[w - 1]) & np.isfinite(dad[w])
        if both.sum() >= _MIN_SHARED:
            out[w] = compare(dad[w - 1][both].astype(np.float64), dad[w][both].astype(np.float64))
    return out


def _resampled_moments(values: np.ndarray, used: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of one bootstrap resample per (draw, case): ``values`` cases x epochs with
    the used entries first, ``used.sum(1)`` of them; ``u`` draws x cases x epochs uniforms in [0, 1)."""
    count = used.sum(1)
    pick = np.minimum((u * count[None, :, None]).astype(np.int64), np.maximum(count - 1, 0)[None, :, None])
    drawn = np.take_along_axis(values[None], pick, axis=2)
    mask = np.arange(values.shape[1])[None, None, :] < count[None, :, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(mask, drawn, 0).sum(2) / count
        var = (np.where(mask, drawn - mean[..., None], 0) ** 2).sum(2) / count
    return mean, np.sqrt(var)


def noise_floor(dice: np.ndarray, window: int, cases: np.ndarray, w: int, *, ignore_zeros: bool = False,
                n_boot: int = 50, seed: int = 0) -> float:
    """Mean over ``n_boot`` pairs of ``sum_i |DAD'_i - DAD''_i| + |sigma'_i - sigma''_i|`` over ``cases``
    (boolean mask), DAD' and DAD'' from two resamples (with replacement) of each case's entries in window
    ``w`` (finite ones; non-zero ones too with ``ignore_zeros``). Deterministic for a ``seed``."""
    rng = np.random.default_rng([seed, w])
    block = dice[cases, w * window:(w + 1) * window].astype(np.float64)
    used = np.isfinite(block) & ((block != 0) if ignore_zeros else True)
    order = np.argsort(~used, axis=1, kind="stable")  # used entries first
    block, used = np.take_along_axis(block, order, 1), np.take_along_axis(used, order, 1)
    total = 0.0
    rows = max(1, _BLOCK_ELEMENTS // (2 * n_boot * window))
    for r0 in range(0, len(block), rows):
        v, m = block[r0:r0 + rows], used[r0:r0 + rows]
        (m1, s1), (m2, s2) = (_resampled_moments(v, m, rng.random((n_boot, *v.shape))) for _ in range(2))
        step = np.abs(m1 - m2) + np.abs(s1 - s2)
        total += float(np.nansum(step)) / n_boot  # cases with no used entry: NaN, no noise
    return total


def _noise_ratio(dice: np.ndarray, window: int, dad: np.ndarray, sigma: np.ndarray, ignore_zeros: bool,
                 n_boot: int) -> np.ndarray:
    out = np.full(len(dad), np.nan)
    for w in range(1, len(dad)):
        step = np.abs(dad[w].astype(np.float64) - dad[w - 1]) + np.abs(sigma[w].astype(np.float64) - sigma[w - 1])
        both = np.isfinite(step)
        if not both.any():
            continue
        floor = noise_floor(dice, window, both, w, ignore_zeros=ignore_zeros, n_boot=n_boot)
        out[w] = step[both].sum() / floor if floor > 0 else np.nan
    return out


def _paper_ratio(L: np.ndarray) -> np.ndarray:
    """``L_w / max(L_1..L_w)`` where that maximum is positive, else NaN (NaN windows keep the maximum)."""
    L = np.asarray(L, dtype=np.float64)
    running = np.fmax.accumulate(np.where(np.isfinite(L), L, -np.inf))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(L) & (running > 0), L / running, np.nan)


def stop_criterion(rule: str, L: np.ndarray, *, dad: np.ndarray | None = None, sigma: np.ndarray | None = None,
                   dice: np.ndarray | None = None, window: int | None = None, rate: float = 0.4,
                   ignore_zeros: bool = False, n_boot: int = 50) -> np.ndarray:
    """The criterion of ``rule`` per window (see the module docstring); NaN where it is not defined.

    ``L`` is the moving distance per window (needed by every rule for the peak), ``dad`` (windows x
    cases) by the ranking rules, ``sigma``, ``dice`` (cases x epochs) and ``window`` by ``noise``.
    """
    check_stop_rule(rule, None)
    if rule == "paper":
        return _paper_ratio(L)
    if dad is None:
        raise DietError(f"stop rule {rule} needs the DAD of every window")
    if rule == "spearman":
        return _consecutive(dad, spearman)
    if rule == "kept":
        return _consecutive(dad, lambda a, b: kept_overlap(a, b, rate))
    if sigma is None or dice is None or window is None:
        raise DietError("stop rule noise needs sigma, the recorded values and the window")
    return _noise_ratio(dice, window, dad, sigma, ignore_zeros, n_boot)


def first_stop(rule: str, criterion: np.ndarray, L: np.ndarray, *, threshold: float | None = None,
               patience: int = 1) -> int | None:
    """First window where ``criterion`` has met ``threshold`` in ``patience`` consecutive windows; None if never.

    ``paper``: windows where L is NaN are skipped (they neither count nor break a run), a window that sets
    a new maximum of L can never qualify (Algorithm 1). Other rules: only windows after L has peaked
    count, and a window whose criterion is undefined breaks a run.
    """
    threshold = check_stop_rule(rule, threshold)
    if patience < 1:
        raise DietError(f"patience must be >= 1, got {patience}")
    crit = np.asarray(criterion, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        met = (crit <= threshold) if rule in _BELOW else (crit >= threshold)
    if rule == "paper":
        counted = np.isfinite(np.asarray(L, dtype=np.float64))
    else:
        counted = np.ones(len(crit), bool)
        met &= _paper_ratio(L) < 1  # after the peak of L
    run = 0
    for w in np.flatnonzero(counted):
        run = run + 1 if met[w] else 0
        if run >= patience:
            return int(w)
    return None
