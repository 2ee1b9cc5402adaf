"""Errors raised by the core: one class, so callers (CLI, adapters) can show a clean message."""

from __future__ import annotations

import numpy as np

__all__ = ["DietError", "check_fraction", "check_window", "require_finite_rows"]


class DietError(ValueError):
    """Bad input to nnunet-diet: the message says what and where; no traceback needed."""


def check_fraction(value: float, name: str = "rate") -> float:
    """Return ``value`` as float if it lies in the open interval (0, 1), else raise :class:`DietError`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DietError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < v < 1.0:
        raise DietError(f"{name} must be in (0, 1), got {value!r}")
    return v


def check_window(window: tuple[int, int], n_epochs: int, name: str = "window") -> tuple[int, int]:
    """Validate a half-open epoch window ``[start, stop)`` (0-based) against ``n_epochs`` recorded."""
    try:
        start, stop = (int(w) for w in window)
    except (TypeError, ValueError):
        raise DietError(f"{name} must be two epochs (start, stop), got {window!r}") from None
    if not 0 <= start < stop:
        raise DietError(f"{name} must satisfy 0 <= start < stop, got [{start}, {stop})")
    if stop > n_epochs:
        raise DietError(f"{name} [{start}, {stop}) needs {stop} epochs but only {n_epochs} are recorded")
    return start, stop


def require_finite_rows(values: np.ndarray, what: str) -> None:
    """Raise when ``values`` (samples x epochs) is empty or has no finite entry at all."""
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise DietError(f"{what}: no data (shape {values.shape}); record at least one sample and one epoch")
    if not np.isfinite(values).any():
        raise DietError(f"{what}: every entry is NaN (no sample was ever recorded)")
