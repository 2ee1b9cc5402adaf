import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pathlib import Path

import nnunet_diet
from nnunet_diet.core.class_shift import class_shift, floor_select, floor_strata_select
from nnunet_diet.core.classification import (aum, class_normalise, default_late_window, el2n, entropy, eva,
                                             forgetting_events)
from nnunet_diet.core.errors import DietError
from nnunet_diet.core.selection import select
from nnunet_diet.core.store import DynamicsStore
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


# Real dynamics: 800 PneumoniaMNIST training images (217 normal = class 0, 583 pneumonia), 40 epochs of a
# small ResNet that fits them all by epoch 16 (nnunet_diet/examples/README.md): EVA's class shift in small.
PNEUMONIA = DynamicsStore.load(Path(nnunet_diet.__file__).parent / "examples" / "pneumoniamnist_dynamics.npz")
EARLY, LATE = (0, 4), (20, 24)  # the CPU protocol's windows on 40 epochs


def _class0_share(scores, keep=0.1, balance=False):
    g = PNEUMONIA.groups
    rows = select(scores, keep, "top", groups=g if balance else None)
    return (g[rows] == "0").mean()


def test_class_shift_counts_shares_and_warnings():
    labels = PNEUMONIA.groups
    ids = PNEUMONIA.ids
    top = ids[select(eva(PNEUMONIA["error_norm"], EARLY, LATE), 0.1, "top")]
    shift = class_shift(ids, labels, top)
    assert shift.classes == ("0", "1") and shift.full.tolist() == [217, 583] and shift.kept.sum() == 80
    np.testing.assert_allclose(shift.full_share, [217 / 800, 583 / 800])
    assert shift.kept.tolist() == [55, 25]  # EVA keeps mostly the minority class: class 1 at 31 % of 73 %
    assert shift.shifted == ("1",)
    (line,) = shift.warnings()
    assert line.startswith("warning: class 1 keeps 31.2 % of the coreset against 72.9 % of the full set")
    cols = shift.columns()
    assert cols["share_0"] == pytest.approx(55 / 80) and cols["full_share_1"] == pytest.approx(583 / 800)
    assert cols["class_shift"] == "1 below 0.5 x share"
    assert "<-" in shift.table().splitlines()[2] and "217 ( 27.1 %)" in shift.table()
    only_pneumonia = class_shift(ids, labels, ids[labels == "1"][:50])
    assert only_pneumonia.warnings() == ["warning: class 0 vanishes from the coreset (27.1 % of the full set)"]
    fair = class_shift(ids, labels, ids[select(None, 0.1, "random", groups=labels, n=800)])
    assert fair.shifted == () and fair.warnings() == [] and fair.columns()["class_shift"] == ""


def test_class_shift_sorts_numeric_classes_and_rejects_unknown_ids():
    labels = np.array(["10", "2", "2", "0"])
    assert class_shift(np.arange(4), labels, [1]).classes == ("0", "2", "10")
    with pytest.raises(DietError, match="kept id 7 is not in the full set"):
        class_shift(np.arange(4), labels, [1, 7])
    with pytest.raises(DietError, match="3 labels for 4 ids"):
        class_shift(np.arange(4), labels[:3], [1])


def test_unbiased_variance_does_not_change_evas_ranking():
    # every sample seen every epoch and windows of equal length: ddof scales every score by one constant
    err = PNEUMONIA["error_norm"]
    paper, unbiased = eva(err, EARLY, LATE), eva(err, EARLY, LATE, ddof=1)
    np.testing.assert_allclose(unbiased, paper * 4 / 3, rtol=1e-6)
    np.testing.assert_array_equal(select(paper, 0.1, "top"), select(unbiased, 0.1, "top"))


def test_remedies_move_the_coreset_towards_the_data_share():
    err, g = PNEUMONIA["error_norm"], PNEUMONIA.groups
    paper = eva(err, EARLY, LATE)
    data_share = 217 / 800
    default = _class0_share(paper)
    assert default > 2 * data_share  # the shift: 69 % normal images against 27 % in the data
    # class balance: exactly the data share (largest remainder)
    assert abs(_class0_share(paper, balance=True) - data_share) <= 1 / 80
    # per-class z-score: much closer to the data share than the paper's ranking
    assert abs(_class0_share(class_normalise(paper, g, "zscore")) - data_share) < 0.5 * (default - data_share)
    # per-class mean: the class with the larger mean variance no longer dominates (here it over-corrects)
    assert _class0_share(class_normalise(paper, g, "mean")) < data_share
    # an early window after the class-prior transient of epochs 0-1: a smaller shift
    assert data_share < _class0_share(eva(err, (2, 6), LATE)) < default - 0.1


def test_class_normalise():
    s = np.array([1.0, 3.0, 10.0, 30.0, np.nan])
    g = np.array(["a", "a", "b", "b", "b"])
    np.testing.assert_allclose(class_normalise(s, g, "mean"), [0.5, 1.5, 0.5, 1.5, np.nan])
    np.testing.assert_allclose(class_normalise(s, g, "zscore"), [-1, 1, -1, 1, np.nan])
    with pytest.raises(DietError, match="one of mean, zscore"):
        class_normalise(s, g, "rank")


def test_floor_select_raises_a_collapsed_class_to_half_its_share_and_keeps_the_rest():
    g = PNEUMONIA.groups
    paper_scores = eva(PNEUMONIA["error_norm"], EARLY, LATE)
    paper = select(paper_scores, 0.1, "top")
    floored = floor_select(paper_scores, 0.1, g)
    assert np.bincount(g[floored].astype(int)).tolist() == [50, 30]  # class 1: ceil(0.5 x 80 x 583 / 800)
    assert not class_shift(PNEUMONIA.ids, g, PNEUMONIA.ids[floored]).shifted
    paper0 = paper[g[paper] == "0"]
    best0 = np.sort(paper0[np.argsort(-paper_scores[paper0])[:50]])  # class 0's best 50 of the paper's 55
    np.testing.assert_array_equal(floored[g[floored] == "0"], best0)
    fair = select(paper_scores, 0.5, "top")  # at 50 % the paper's coreset is not shifted: unchanged
    np.testing.assert_array_equal(floor_select(paper_scores, 0.5, g), fair)
    rnd = floor_select(None, 0.1, g, mode="random", seed=3)
    assert len(rnd) == 80 and not class_shift(PNEUMONIA.ids, g, PNEUMONIA.ids[rnd]).shifted


def _class_tops(scores, g, share):
    """Rows of each class's ``int(share n_c)`` highest scores."""
    return np.concatenate([np.flatnonzero(g == c)[np.argsort(-scores[g == c], kind="stable")[: int(share * (g == c).sum())]]
                           for c in np.unique(g)])


def test_floor_prune_sets_each_classs_top_aside_before_the_floor():
    g = PNEUMONIA.groups
    paper_scores = eva(PNEUMONIA["error_norm"], EARLY, LATE)
    pruned = floor_select(paper_scores, 0.1, g, hard_prune=0.1)
    assert len(pruned) == 80 and not class_shift(PNEUMONIA.ids, g, PNEUMONIA.ids[pruned]).shifted
    assert not np.isin(pruned, _class_tops(paper_scores, g, 0.1)).any()
    # it ranks below the set-aside tops: the best of what is left, so it overlaps the plain floor below them
    assert len(np.intersect1d(pruned, floor_select(paper_scores, 0.1, g))) > 0
    # an unshifted coreset is the paper's, pruning or not
    np.testing.assert_array_equal(floor_select(paper_scores, 0.5, g, hard_prune=0.1), select(paper_scores, 0.5, "top"))
    with pytest.raises(DietError, match="hard_prune must be in"):
        floor_select(paper_scores, 0.1, g, hard_prune=1.0)


def test_floor_strata_keeps_the_floor_counts_and_covers_each_classs_score_range():
    g = PNEUMONIA.groups
    paper_scores = eva(PNEUMONIA["error_norm"], EARLY, LATE)
    floored = floor_select(paper_scores, 0.1, g)
    strata = floor_strata_select(paper_scores, 0.1, g, seed=0)
    assert np.bincount(g[strata].astype(int)).tolist() == np.bincount(g[floored].astype(int)).tolist() == [50, 30]
    assert not np.isin(strata, _class_tops(paper_scores, g, 0.1)).any()  # CCS's hard pruning, per class
    for c in ("0", "1"):  # the floor keeps a class's top; the strata reach down to its low scores
        mine = g == c
        assert paper_scores[strata[mine[strata]]].min() < paper_scores[floored[mine[floored]]].min()
        assert paper_scores[strata[mine[strata]]].min() <= np.quantile(paper_scores[mine], 0.25)
    np.testing.assert_array_equal(floor_strata_select(paper_scores, 0.1, g, seed=0), strata)  # deterministic
    assert not np.array_equal(floor_strata_select(paper_scores, 0.1, g, seed=1), strata)
    np.testing.assert_array_equal(floor_strata_select(paper_scores, 0.5, g), select(paper_scores, 0.5, "top"))
    with pytest.raises(DietError, match="needs a score ranking"):
        floor_strata_select(paper_scores, 0.1, g, mode="random")
