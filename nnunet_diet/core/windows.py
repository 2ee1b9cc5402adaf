"""Masked per-sample moments over epoch windows: the one reduction behind DAD, EVA, EL2N and AUM."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import DietError, check_window

__all__ = ["WindowMoments", "window_moments", "consecutive_window_moments"]

_BLOCK_ELEMENTS = 1 << 18  # entries reduced at a time (float32 work, float64 sums): small temporaries


class WindowMoments(NamedTuple):
    """Per-sample statistics of the entries used in a window (arrays shaped like the samples axis,
    with a leading windows axis for :func:`consecutive_window_moments`)."""

    count: np.ndarray  # int32, entries used
    mean: np.ndarray   # float64, NaN where count == 0
    var: np.ndarray    # float64, NaN where count - ddof <= 0


def _moments(values: np.ndarray, start: int, width: int, n_windows: int, ddof: int,
             ignore_zeros: bool) -> WindowMoments:
    """Moments of ``n_windows`` consecutive windows of ``width`` epochs from ``start``: windows x samples."""
    n = values.shape[0]
    count = np.zeros((n, n_windows), np.int32)
    mean = np.full((n, n_windows), np.nan)
    var = np.full((n, n_windows), np.nan)
    rows = max(1, _BLOCK_ELEMENTS // (width * n_windows))
    for r0 in range(0, n, rows):
        block = values[r0 : r0 + rows, start : start + width * n_windows]
        x = block.astype(np.float32, copy=False).reshape(block.shape[0], n_windows, width)
        used = np.isfinite(x)
        if ignore_zeros:
            used &= x != 0
        c = used.sum(axis=2)
        x = np.where(used, x, np.float32(0))
        with np.errstate(invalid="ignore", divide="ignore"):
            m = x.sum(axis=2, dtype=np.float64) / c
            x -= m.astype(np.float32)[..., None]
            x[~used] = 0
            v = np.einsum("ijk,ijk->ij", x, x, dtype=np.float64) / (c - ddof)
        sl = slice(r0, r0 + len(c))
        count[sl] = c
        mean[sl] = np.where(c > 0, m, np.nan)
        var[sl] = np.where(c - ddof > 0, v, np.nan)
    return WindowMoments(count.T, mean.T, var.T)


def window_moments(
    values: np.ndarray,
    window: tuple[int, int],
    *,
    ddof: int = 0,
    ignore_zeros: bool = False,
) -> WindowMoments:
    """Mean and variance of ``values[:, start:stop]`` per sample, skipping NaN (not seen) entries.

    ``window`` is half-open and 0-based: ``(0, 10)`` covers the first ten epochs.
    ``ddof=0`` is the population variance (DAD Eq. 6, EVA paper Eq. 4); ``ddof=1`` the unbiased
    one (EVA code, ``torch.var``). ``ignore_zeros`` also skips exact zeros (the DAD code's convention
    of averaging only non-zero Dice values).
    """
    start, stop = check_window(window, values.shape[1])
    count, mean, var = _moments(values, start, stop - start, 1, ddof, ignore_zeros)
    return WindowMoments(count[0], mean[0], var[0])


def consecutive_window_moments(
    values: np.ndarray, width: int, *, ddof: int = 0, ignore_zeros: bool = False
) -> WindowMoments:
    """:func:`window_moments` of every complete window ``[w*width, (w+1)*width)`` in one pass;
    arrays are windows x samples."""
    if width < 1:
        raise DietError(f"window width must be >= 1 epoch, got {width}")
    n_windows = values.shape[1] // width
    if n_windows == 0:
        raise DietError(f"need at least one full window of {width} epochs; {values.shape[1]} recorded")
    return _moments(values, 0, width, n_windows, ddof, ignore_zeros)
