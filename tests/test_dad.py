import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nnunet_diet.core.dad import ZERO_ONLY_DAD, dad_trajectory, dad_windows, moving_distance, stop_window
from nnunet_diet.core.errors import DietError
from nnunet_diet.core.windows import window_moments

# Worked example (by hand), window 2:
#   case 0: 0.2 0.4 | 0.6 0.6  -> DAD 0.30, 0.60; sigma 0.10, 0.00
#   case 1: 0.0 0.5 | 0.5 0.7  -> DAD 0.25, 0.60; sigma 0.25, 0.10
#   L_1 = (0.6-0.3) + (0-0.1) + (0.6-0.25) + (0.1-0.25) = 0.4 ; absolute: 0.3+0.1+0.35+0.15 = 0.9
DICE = np.array([[0.2, 0.4, 0.6, 0.6], [0.0, 0.5, 0.5, 0.7]])


def test_worked_example():
    dad, sigma = dad_windows(DICE, 2)
    np.testing.assert_allclose(dad, [[0.30, 0.25], [0.60, 0.60]], atol=1e-6)
    np.testing.assert_allclose(sigma, [[0.10, 0.25], [0.00, 0.10]], atol=1e-6)
    L = moving_distance(dad, sigma)
    assert np.isnan(L[0]) and L[1] == pytest.approx(0.4, abs=1e-6)
    assert moving_distance(dad, sigma, absolute=True)[1] == pytest.approx(0.9, abs=1e-6)


def test_ignore_zeros_convention():
    dad, sigma = dad_windows(DICE, 2, ignore_zeros=True)
    assert dad[0, 1] == pytest.approx(0.5) and sigma[0, 1] == pytest.approx(0.0)
    zeros = np.array([[0.0, 0.0, np.nan, np.nan]])
    dad, sigma = dad_windows(zeros, 2, ignore_zeros=True)
    assert dad[0, 0] == pytest.approx(ZERO_ONLY_DAD) and sigma[0, 0] == 0
    assert np.isnan(dad[1, 0])  # not seen at all: stays unknown


def test_unseen_cases_are_left_out_of_the_window_and_the_distance():
    dice = np.array([[0.2, np.nan, 0.8, 0.8], [np.nan, np.nan, 0.5, 0.5]])
    dad, sigma = dad_windows(dice, 2)
    assert dad[0, 0] == pytest.approx(0.2) and sigma[0, 0] == 0
    assert np.isnan(dad[0, 1])
    assert moving_distance(dad, sigma)[1] == pytest.approx(0.6)


@pytest.mark.parametrize(
    "L, kwargs, expected",
    [
        ([np.nan, 10, 5, 0.05, 0.2], {}, 3),
        ([np.nan, 1, 5, 0.04], {}, 3),            # peak at window 2, then 0.04 <= 0.05
        ([np.nan, 1, 5, 0.06], {}, None),
        ([np.nan, 10, -3], {}, 2),                # signed L can drop below 1 % through cancellation
        ([np.nan, -1, -2], {}, None),             # no positive maximum: no rule
        ([np.nan, 10, 2, 0.5], {"threshold": 0.2}, 2),
        ([np.nan, 10, 0.05, 0.5, 0.02, 0.01], {"patience": 2}, 5),
        ([np.nan, 0.0, 5], {}, None),
    ],
)
def test_stop_window(L, kwargs, expected):
    assert stop_window(np.array(L, dtype=float), **kwargs) == expected


@settings(max_examples=60, deadline=None)
@given(
    values=arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 30)),
                  elements=st.one_of(st.floats(0, 1), st.just(np.nan))),
    window=st.integers(1, 6),
)
def test_windows_match_numpy_nan_reductions(values, window):
    if values.shape[1] < window or not np.isfinite(values).any():
        with pytest.raises(DietError):
            dad_windows(values, window)
        return
    dad, sigma = dad_windows(values, window)
    for w in range(values.shape[1] // window):
        block = values[:, w * window:(w + 1) * window]
        seen = np.isfinite(block).any(axis=1)
        with np.errstate(all="ignore"):
            np.testing.assert_allclose(dad[w][seen], np.nanmean(block[seen], axis=1), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(sigma[w][seen], np.nanstd(block[seen], axis=1), rtol=1e-4, atol=1e-5)
        assert np.isnan(dad[w][~seen]).all()
    L = moving_distance(dad, sigma)
    d = np.diff(dad.astype(float), axis=0) + np.diff(sigma.astype(float), axis=0)
    ok = np.isfinite(d).any(axis=1)
    np.testing.assert_allclose(L[1:][ok], np.nansum(d, axis=1)[ok], rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(L=st.lists(st.floats(-5, 100), min_size=1, max_size=20), thr=st.floats(0.001, 0.5))
def test_stop_window_is_the_first_window_after_a_peak_below_the_threshold(L, thr):
    L = np.array([np.nan] + L)
    w = stop_window(L, threshold=thr)
    assert w is None or L[w] < np.nanmax(L[:w + 1])  # fires only once L has peaked
    running_max = np.fmax.accumulate(np.nan_to_num(L, nan=-np.inf))
    candidates = [i for i in range(1, len(L)) if L[i] < running_max[i] and running_max[i] > 0
                  and L[i] <= thr * running_max[i]]
    assert w == (candidates[0] if candidates else None)


def test_trajectory_reports_epochs():
    rng = np.random.default_rng(0)
    # Dice rises then plateaus: L peaks early and decays; the rule must fire at a window end epoch.
    epochs = np.arange(100)
    dice = 1 - np.exp(-epochs / 12)[None, :] * rng.uniform(0.5, 1.0, size=(30, 1))
    traj = dad_trajectory(dice, 10)
    assert traj.stop is not None and traj.stop_epoch == (traj.stop + 1) * 10 - 1
    dad, _ = traj.at()
    np.testing.assert_allclose(dad, dice[:, traj.stop * 10:(traj.stop + 1) * 10].mean(axis=1), rtol=1e-5)


def test_window_moments_unbiased_variance():
    m = window_moments(np.array([[1.0, 0.0, np.nan], [np.nan, np.nan, 2.0]]), (0, 3), ddof=1)
    assert m.var[0] == pytest.approx(0.5) and np.isnan(m.var[1]) and m.count.tolist() == [2, 1]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: dad_windows(np.full((3, 20), np.nan)), "every entry is NaN"),
        (lambda: dad_windows(np.empty((0, 20))), "no data"),
        (lambda: dad_windows(np.ones((3, 5)), 10), "at least one full window of 10 epochs; 5 recorded"),
        (lambda: dad_windows(np.ones((3, 5)), 0), "window .* must be >= 1"),
        (lambda: stop_window(np.ones(3), threshold=1.5), "threshold must be in"),
        (lambda: window_moments(np.ones((2, 5)), (3, 9)), r"needs 9 epochs but only 5"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(DietError, match=message):
        call()
