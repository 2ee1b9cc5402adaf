import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nnunet_diet.core.classification import aum, default_late_window, el2n, entropy, eva, forgetting_events
from nnunet_diet.core.errors import DietError
from nnunet_diet.core.segmentation import error_norms, foreground_dice

# EVA worked example, early [0, 2), late [2, 4):
#   sample 0: 1.0 0.0 | 0.5 0.5 -> V_e 0.25, V_l 0      (population); 0.5, 0    (unbiased)
#   sample 1: 0.5 0.5 | 0.0 0.5 -> V_e 0,    V_l 0.0625             ; 0,   0.125
ERR = np.array([[1.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.0, 0.5]])


def test_eva_paper_convention():
    np.testing.assert_allclose(eva(ERR, (0, 2), (2, 4)), [0.25, 0.0625])


def test_eva_code_convention():
    # unbiased variances, each window L1-normalised over samples, then 0.5 / 0.5
    got = eva(ERR, (0, 2), (2, 4), ddof=1, normalize=True, weights=(0.5, 0.5))
    np.testing.assert_allclose(got, [0.5 * 1.0 + 0.5 * 0.0, 0.5 * 0.0 + 0.5 * 1.0])


def test_eva_masks_missing_epochs_instead_of_zero_filling():
    err = np.array([[1.0, np.nan, 0.0, 0.3, 0.3, 0.3]])
    assert eva(err, (0, 3), (3, 6))[0] == pytest.approx(0.25)  # var of [1, 0]; zero-filled would give 0.222


def test_eva_default_late_window_is_the_readme_example():
    assert default_late_window(200) == (100, 110)
    rng = np.random.default_rng(0)
    err = rng.random((5, 200))
    np.testing.assert_allclose(eva(err), eva(err, (0, 10), (100, 110)))


def test_el2n_and_aum():
    err = np.array([[0.9, 0.7, 0.1], [0.2, np.nan, 0.4]])
    np.testing.assert_allclose(el2n(err, (0, 2)), [0.8, 0.2])
    np.testing.assert_allclose(aum(np.array([[0.2, 0.4, np.nan], [-0.5, 0.1, 0.1]])), [0.3, -0.1])


@pytest.mark.parametrize(
    "row, expected",
    [
        ([1, 0, 1, 0], 2),
        ([1, np.nan, 0, np.nan], 1),      # transition across an unseen epoch counts once
        ([0, 1, 1, 1], 0),
        ([0, 0, 0, 0], 0),                # never learned -> 0 (CCS code)
        ([np.nan] * 4, np.nan),           # never seen
    ],
)
def test_forgetting_events(row, expected):
    got = forgetting_events(np.array([row, [1, 0, 0, 0]], dtype=float))[0]
    assert (np.isnan(got) and np.isnan(expected)) or got == expected


def test_forgetting_never_learned_option():
    assert forgetting_events(np.array([[0.0, 0.0]]), never_learned=np.inf)[0] == np.inf


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 15)),
              elements=st.sampled_from([0.0, 1.0, np.nan])))
def test_forgetting_matches_a_loop(correct):
    if not np.isfinite(correct).any():
        return
    got = forgetting_events(correct)
    for row, value in zip(correct, got):
        seen = row[np.isfinite(row)]
        if len(seen) == 0:
            assert np.isnan(value)
        else:
            assert value == sum(1 for a, b in zip(seen[:-1], seen[1:]) if a == 1 and b == 0)


def test_entropy():
    np.testing.assert_allclose(entropy(np.array([[0.5, 0.5], [1.0, 0.0]])), [np.log(2), 0.0])
    with pytest.raises(DietError, match="probabilities"):
        entropy(np.array([[0.5, 0.7]]))


def test_foreground_dice_and_error_norms():
    np.testing.assert_allclose(foreground_dice([2, 0], [1, 0], [1, 0]), [2 * 2 / 6, np.nan])
    assert foreground_dice([0], [0], [0], empty=0.0)[0] == 0.0
    # 1 case, 2 classes, 4 voxels; voxels 0-1 foreground
    target = np.array([[1, 1, 0, 0]])
    probs = np.array([[[0.0, 0.5, 1.0, 1.0], [1.0, 0.5, 0.0, 0.0]]])
    el2n_, el2nx = error_norms(probs, target)
    per_voxel = np.array([0.0, np.sqrt(0.5), 0.0, 0.0])
    np.testing.assert_allclose(el2n_, [per_voxel.mean()])
    np.testing.assert_allclose(el2nx, [per_voxel[:2].mean()])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: eva(np.full((2, 20), np.nan)), "every entry is NaN"),
        (lambda: eva(np.ones((2, 20)), (0, 10), (5, 15)), "must not overlap"),
        (lambda: eva(np.ones((2, 20)), (0, 10), (15, 30)), "needs 30 epochs but only 20"),
        (lambda: el2n(np.empty((0, 5))), "no data"),
        (lambda: forgetting_events(np.array([[0.5, 1.0]])), "must hold 0, 1 or NaN"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(DietError, match=message):
        call()
