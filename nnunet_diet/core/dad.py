"""Dynamic Average Dice (DAD), its variability and the moving distance L (He et al. 2023).

Windows are consecutive, non-overlapping and ``window`` (Delta t) epochs long: window ``w`` covers
epochs ``[w*dt, (w+1)*dt)`` (0-based). Eq. 3 writes the sum from ``t - dt`` to ``t`` (dt + 1 terms)
over ``dt``; we average exactly the dt epochs of the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DietError, require_finite_rows
from .stop_rules import check_stop_rule, first_stop, stop_criterion
from .windows import consecutive_window_moments

__all__ = ["DADTrajectory", "dad_windows", "moving_distance", "stop_window", "dad_trajectory"]

ZERO_ONLY_DAD = 0.001  # the DAD code's value for a case whose window holds only zero Dice


def dad_windows(
    dice: np.ndarray, window: int = 10, *, ignore_zeros: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """DAD (Eq. 3) and variability sigma (Eq. 6, population std) for every complete window.

    Args:
        dice: samples x epochs foreground Dice, NaN where a case was not seen.
        window: Delta t, epochs per window.
        ignore_zeros: the DAD code's convention: average only non-zero Dice values; a case whose
            window holds only zeros gets DAD 0.001 and sigma 0.

    Returns:
        ``(dad, sigma)``, each windows x samples; NaN where a case was not seen in a window.
    """
    window = int(window)
    if window < 1:
        raise DietError(f"window (Delta t) must be >= 1 epoch, got {window}")
    require_finite_rows(dice, "DAD")
    if dice.shape[1] < window:
        raise DietError(f"DAD needs at least one full window of {window} epochs; {dice.shape[1]} recorded")
    mom = consecutive_window_moments(dice, window, ignore_zeros=ignore_zeros)
    dad = mom.mean.astype(np.float32)
    sigma = np.sqrt(mom.var).astype(np.float32)
    if ignore_zeros:
        only_zeros = (mom.count == 0) & (consecutive_window_moments(dice, window).count > 0)
        dad[only_zeros] = ZERO_ONLY_DAD
        sigma[only_zeros] = 0.0
    return dad, sigma


def moving_distance(dad: np.ndarray, sigma: np.ndarray, *, absolute: bool = False) -> np.ndarray:
    """Moving distance L per window (Eq. 7): ``L_w = sum_i (dDAD_i + dsigma_i)`` from window w-1 to w.

    ``L[0]`` is NaN (no previous window). Samples not seen in either window are left out of that
    sum. ``absolute=True`` sums ``|dDAD_i| + |dsigma_i|`` instead of the paper's signed sum, so
    that opposite moves cannot cancel.
    """
    if dad.shape != sigma.shape or dad.ndim != 2:
        raise DietError(f"dad and sigma must be windows x samples of one shape, got {dad.shape}, {sigma.shape}")
    L = np.full(len(dad), np.nan)
    for w in range(1, len(dad)):  # one window pair at a time: memory stays O(samples)
        d_mu = dad[w].astype(np.float64) - dad[w - 1]
        d_sigma = sigma[w].astype(np.float64) - sigma[w - 1]
        if absolute:
            d_mu, d_sigma = np.abs(d_mu), np.abs(d_sigma)
        step = d_mu + d_sigma
        valid = np.isfinite(step)
        if valid.any():
            L[w] = step[valid].sum()
    return L


def stop_window(L: np.ndarray, *, threshold: float = 0.01, patience: int = 1) -> int | None:
    """First window where ``L <= threshold * max(L so far)`` (Algorithm 1); ``None`` if never.

    A window that sets a new maximum can never satisfy the rule, so it fires only after L has
    peaked; only a positive maximum counts (the signed L can be negative). ``patience`` > 1 asks
    for the condition in that many consecutive windows (a guard against a signed sum that dips
    through cancellation); 1 is the paper's rule. The ``paper`` rule of :mod:`.stop_rules`.
    """
    return first_stop("paper", stop_criterion("paper", L), L, threshold=threshold, patience=patience)


@dataclass(frozen=True)
class DADTrajectory:
    """DAD, sigma and L for every window of a run, and the window where the stop rule fired."""

    window: int
    dad: np.ndarray             # windows x samples
    sigma: np.ndarray           # windows x samples
    moving_distance: np.ndarray  # windows; L[0] is NaN
    stop: int | None            # window index, None if the rule never fired
    rule: str = "paper"         # the stop rule (:mod:`.stop_rules`)
    criterion: np.ndarray | None = None  # the rule's criterion per window

    @property
    def window_end_epochs(self) -> np.ndarray:
        """Last epoch (0-based) of each window: the epoch at which its values are known."""
        return (np.arange(len(self.dad)) + 1) * self.window - 1

    @property
    def stop_epoch(self) -> int | None:
        return None if self.stop is None else int(self.window_end_epochs[self.stop])

    def at(self, w: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(dad, sigma)`` at window ``w``; default: the stop window, else the last window."""
        if w is None:
            w = self.stop if self.stop is not None else len(self.dad) - 1
        return self.dad[w], self.sigma[w]


def dad_trajectory(
    dice: np.ndarray,
    window: int = 10,
    *,
    ignore_zeros: bool = False,
    absolute: bool = False,
    threshold: float | None = None,
    patience: int = 1,
    rule: str = "paper",
    rate: float = 0.4,
) -> DADTrajectory:
    """DAD and sigma per window, the moving distance curve and the stop window of ``rule``
    (:mod:`.stop_rules`; ``threshold`` None: the rule's default, 0.01 for the paper's) in one call."""
    check_stop_rule(rule, threshold)
    dad, sigma = dad_windows(dice, window, ignore_zeros=ignore_zeros)
    L = moving_distance(dad, sigma, absolute=absolute)
    crit = stop_criterion(rule, L, dad=dad, sigma=sigma, dice=dice, window=window, rate=rate,
                          ignore_zeros=ignore_zeros)
    stop = first_stop(rule, crit, L, threshold=threshold, patience=patience)
    return DADTrajectory(int(window), dad, sigma, L, stop, rule, crit)
