"""Per-sample scores from classification training dynamics: EVA and the baselines of the EVA paper.

Inputs are samples x epochs series of a :class:`~nnunet_diet.core.store.DynamicsStore`
(NaN where a sample was not seen): ``error_norm`` = ||softmax - onehot||_2, ``correct`` in {0, 1},
``margin`` = p_y - max_{k != y} p_k. Every function returns one value per sample, NaN where the
sample has no usable entry. Missing epochs are masked, never read as zeros.
"""

from __future__ import annotations

import numpy as np

from .errors import DietError, require_finite_rows
from .windows import window_moments

__all__ = ["el2n", "forgetting_events", "aum", "entropy", "eva", "default_late_window", "class_normalise",
           "CLASS_NORMS"]

_BLOCK_ROWS = 1 << 16


def el2n(error_norm: np.ndarray, window: tuple[int, int] = (0, 10)) -> np.ndarray:
    """EL2N (Paul et al. 2021): mean error-vector norm over an early epoch window ``[start, stop)``.

    The CCS code sums epochs 0-9; the mean ranks identically when every epoch is seen and stays
    unbiased when some are missing. Segmentation's EL2N / EL2Nx use the same function on the
    per-epoch whole-image / foreground error norms.
    """
    require_finite_rows(error_norm, "EL2N")
    return window_moments(error_norm, window).mean


def aum(margin: np.ndarray) -> np.ndarray:
    """Area under the margin (Pleiss et al. 2020) on probabilities: mean margin over seen epochs.

    Equals the CCS code's sum over epochs divided by the epoch count when every epoch is seen.
    Low AUM = hard or mislabelled.
    """
    require_finite_rows(margin, "AUM")
    return window_moments(margin, (0, margin.shape[1])).mean


def forgetting_events(correct: np.ndarray, *, never_learned: float = 0.0) -> np.ndarray:
    """Forgetting events (Toneva et al. 2019): correct -> incorrect transitions between seen epochs.

    Epochs where a sample was not seen are skipped (the transition is taken between consecutive
    seen epochs). Samples never classified correctly get ``never_learned`` (0 as in the CCS code;
    ``np.inf`` as in Toneva et al.); samples never seen get NaN.
    """
    require_finite_rows(correct, "forgetting")
    n, n_epochs = correct.shape
    out = np.full(n, np.nan)
    epochs = np.arange(n_epochs)
    for r0 in range(0, n, _BLOCK_ROWS):
        c = correct[r0 : r0 + _BLOCK_ROWS].astype(np.float64)
        seen = np.isfinite(c)
        if np.any(seen & (c != 0) & (c != 1)):
            raise DietError("forgetting: 'correct' must hold 0, 1 or NaN")
        last_seen = np.maximum.accumulate(np.where(seen, epochs, -1), axis=1)
        prev_idx = last_seen[:, :-1]  # last seen epoch strictly before t, for t = 1..E-1
        prev = np.take_along_axis(c, np.maximum(prev_idx, 0), axis=1)
        events = (prev_idx >= 0) & seen[:, 1:] & (prev == 1) & (c[:, 1:] == 0)
        count = events.sum(axis=1).astype(np.float64)
        learned = (seen & (c == 1)).any(axis=1)
        count[~learned] = never_learned
        count[~seen.any(axis=1)] = np.nan
        out[r0 : r0 + len(c)] = count
    return out


def entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy -sum_k p_k log p_k per sample (Coleman et al. 2020), from an eval pass."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise DietError(f"entropy needs samples x classes probabilities, got shape {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise DietError("entropy: rows must be probabilities (non-negative, summing to 1)")
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


def default_late_window(n_epochs: int, length: int = 10) -> tuple[int, int]:
    """The EVA README's late window scaled to the run: ``[E/2, E/2 + length)`` (100-110 of 200)."""
    start = n_epochs // 2
    return start, min(start + length, n_epochs)


def eva(
    error_norm: np.ndarray,
    early: tuple[int, int] = (0, 10),
    late: tuple[int, int] | None = None,
    *,
    ddof: int = 0,
    normalize: bool = False,
    weights: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Evolution-aware VAriance (Hong et al. 2024, Eq. 4-6): variance of the error-vector norm in
    an early and a late window, combined as ``weights[0] * V_e + weights[1] * V_l``. Keep the highest.

    Defaults follow the paper: population variance (``ddof=0``), plain sum. The EVA code uses
    ``ddof=1``, L1-normalises each window's variances over samples (``normalize=True``) and weights
    0.5/0.5. Windows are half-open ``[start, stop)``; ``late=None`` uses :func:`default_late_window`.
    Missing epochs are masked; a sample with too few seen epochs in a window gets NaN.
    """
    require_finite_rows(error_norm, "EVA")
    if late is None:
        late = default_late_window(error_norm.shape[1], early[1] - early[0])
    if not early[1] <= late[0]:
        raise DietError(f"EVA windows must not overlap: early {early}, late {late}")
    parts = []
    for span in (early, late):
        v = window_moments(error_norm, span, ddof=ddof).var
        if normalize:
            total = np.nansum(v)
            if total > 0:
                v = v / total
        parts.append(v)
    return weights[0] * parts[0] + weights[1] * parts[1]


CLASS_NORMS = ("mean", "zscore")


def class_normalise(scores: np.ndarray, groups: np.ndarray, how: str = "zscore") -> np.ndarray:
    """Per-class normalisation of a score, so that a ranking compares samples with their own class.

    ``mean``: s_i / mean_{c(i)} s (removes a per-class scale); ``zscore``: (s_i - mean_{c(i)} s) /
    std_{c(i)} s (population std; removes scale and offset). NaN scores stay NaN and are left out of
    the class statistics; a class whose statistic is 0 keeps its raw scores minus the mean.
    """
    if how not in CLASS_NORMS:
        raise DietError(f"class normalisation must be one of {', '.join(CLASS_NORMS)}, got {how!r}")
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(groups).astype(str)
    if g.shape != s.shape:
        raise DietError(f"class normalisation: {g.size} class labels for {s.size} scores")
    out = np.full_like(s, np.nan)
    for c in np.unique(g):
        rows = g == c
        v = s[rows]
        mean = np.nanmean(v) if np.isfinite(v).any() else np.nan
        if how == "mean":
            out[rows] = v / mean if mean > 0 else v - mean
        else:
            std = np.nanstd(v) if np.isfinite(v).any() else np.nan
            out[rows] = (v - mean) / std if std > 0 else v - mean
    return out
