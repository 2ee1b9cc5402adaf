"""NormDEL (Yang et al. 2024, Eq. 4-5): accuracy against the fraction of data kept."""

from __future__ import annotations

import numpy as np

from .errors import DietError

__all__ = ["normdel"]


def normdel(metric: float | np.ndarray, retained: float | np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """``NormDEL = sigmoid(DEL)`` with ``DEL = metric * exp(-alpha * R)`` (Eq. 4-5).

    Args:
        metric: downstream accuracy in [0, 1] (the paper's mIoU).
        retained: retained data fraction R in (0, 1].
        alpha: weight of compactness. The paper states no value; alpha = 1 with the metric in [0, 1]
            reproduces its Table 3 once multiplied by 100 (e.g. 0.7938 at R = 0.05 -> 68.03).

    Returns:
        NormDEL in (0, 1) (multiply by 100 for the paper's numbers); with alpha = 1 its range is
        [0.5, 0.731], not [0, 1].
    """
    m = np.asarray(metric, dtype=np.float64)
    r = np.asarray(retained, dtype=np.float64)
    bad_m = ~np.isfinite(m) | (m < 0) | (m > 1)
    if bad_m.any():
        raise DietError(f"metric must be in [0, 1] (divide percentages by 100), got {_first(m, bad_m)}")
    bad_r = ~np.isfinite(r) | (r <= 0) | (r > 1)
    if bad_r.any():
        raise DietError(f"retained fraction must be in (0, 1], got {_first(r, bad_r)}")
    if not np.isfinite(alpha) or alpha < 0:
        raise DietError(f"alpha must be >= 0, got {alpha!r}")
    return 1.0 / (1.0 + np.exp(-(m * np.exp(-alpha * r))))


def _first(values: np.ndarray, bad: np.ndarray) -> str:
    """The first offending value, with its row when ``values`` is an array."""
    if values.ndim == 0:
        return f"{float(values):g}"
    i = int(np.flatnonzero(bad.reshape(-1))[0])
    return f"{float(values.reshape(-1)[i]):g} (value {i + 1})"
