import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnunet_diet.core.errors import DietError
from nnunet_diet.core.normdel import normdel
from nnunet_diet.core.selection import ccs, n_kept, regions, select

scores_st = st.lists(st.floats(-10, 10), min_size=1, max_size=60).map(np.array)
keep_st = st.floats(0.01, 0.99)


@settings(max_examples=80, deadline=None)
@given(s=scores_st, keep=keep_st, mode=st.sampled_from(["top", "bottom", "middle", "random"]), seed=st.integers(0, 99))
def test_size_order_and_determinism(s, keep, mode, seed):
    kept = select(s, keep, mode, seed=seed)
    assert len(kept) == max(1, math.ceil(round(keep * len(s), 9))) == n_kept(len(s), keep)
    assert np.all(np.diff(kept) > 0)  # sorted, unique
    np.testing.assert_array_equal(kept, select(s, keep, mode, seed=seed))
    removed = np.setdiff1d(np.arange(len(s)), kept)
    if len(removed) == 0:
        return
    if mode == "top":
        assert s[kept].min() >= s[removed].max()
    elif mode == "bottom":
        assert s[kept].max() <= s[removed].min()
    elif mode == "middle":  # exactly floor(r / 2) removed from the low end, the rest from the high end
        ascending = np.argsort(s, kind="stable")
        n_low = len(removed) // 2
        np.testing.assert_array_equal(np.sort(removed), np.sort(np.concatenate(
            [ascending[:n_low], ascending[len(s) - (len(removed) - n_low):]])))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 80), keep=keep_st, n_groups=st.integers(1, 4), seed=st.integers(0, 99),
       mode=st.sampled_from(["top", "middle", "random"]))
def test_stratified_selection_keeps_each_groups_share(n, keep, n_groups, seed, mode):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n).astype(str)
    kept = select(rng.random(n), keep, mode, groups=groups, seed=seed)
    total = n_kept(n, keep)
    assert len(kept) == total
    for g in np.unique(groups):
        share = np.sum(groups == g) * total / n
        assert math.floor(share) <= np.sum(groups[kept] == g) <= math.ceil(share)


def test_middle_removes_both_tails():
    s = np.arange(10.0)
    np.testing.assert_array_equal(select(s, 0.6, "middle"), [2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(select(s, 0.5, "middle"), [2, 3, 4, 5, 6])  # odd removal: extra from the top
    assert regions(s, 0.4).tolist() == ["hard"] * 2 + ["ambiguous"] * 6 + ["easy"] * 2


def test_ties_are_broken_by_row_order():
    np.testing.assert_array_equal(select(np.zeros(5), 0.4, "top"), [0, 1])


def test_random_differs_between_seeds_and_needs_no_scores():
    a = select(None, 0.5, "random", n=100, seed=1)
    b = select(None, 0.5, "random", n=100, seed=2)
    assert len(a) == 50 and not np.array_equal(a, b)


def test_nan_policies():
    s = np.array([np.nan, 1.0, 2.0, 3.0])
    with pytest.raises(DietError, match="1 of 4 samples have no score"):
        select(s, 0.5, "top")
    np.testing.assert_array_equal(select(s, 0.5, "top", nan_policy="keep"), [0, 3])
    np.testing.assert_array_equal(select(s, 0.5, "top", nan_policy="remove"), [2, 3])
    # 2 kept, the unscored one among them: one scored case left, so the map's tails take the other two
    assert regions(s, 0.5).tolist() == ["unscored", "hard", "ambiguous", "easy"]
    np.testing.assert_array_equal(select(s, 0.5, "middle", nan_policy="keep"), [0, 2])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 60), n_nan=st.integers(0, 20), rate=st.floats(0.05, 0.95), seed=st.integers(0, 99))
def test_regions_are_the_tails_that_pruning_removes_with_unscored_cases(n, n_nan, rate, seed):
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    s[rng.choice(n, size=min(n_nan, n - 1), replace=False)] = np.nan
    try:
        kept = select(s, 1 - rate, "middle", nan_policy="keep")
    except DietError:  # more unscored cases than the budget: pruning refuses
        return
    removed = np.setdiff1d(np.arange(n), kept)
    r = regions(s, rate)
    np.testing.assert_array_equal(np.flatnonzero((r == "hard") | (r == "easy")), removed)
    assert (r[kept] != "hard").all() and (r[kept] != "easy").all()


def test_stratified_selection_counts_each_groups_unscored_cases_in_its_own_share():
    groups = np.array(["A"] * 10 + ["B"] * 10)
    s = np.arange(20.0)
    s[:4] = np.nan  # 4 unscored cases, all in A
    kept = select(s, 0.6, "middle", groups=groups, nan_policy="keep")
    assert (groups[kept] == "A").sum() == 6 == (groups[kept] == "B").sum()  # 12 kept: 6 each, as without NaN
    assert set(range(4)) <= set(kept)  # the unscored are among A's 6
    with pytest.raises(DietError, match="group 'A': its 4 unscored samples exceed its share of 3"):
        select(s, 0.3, "middle", groups=groups, nan_policy="keep")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(5, 300), keep=st.floats(0.05, 0.6), hard=st.floats(0.0, 0.3), seed=st.integers(0, 99))
def test_ccs_budget_hard_pruning_and_determinism(n, keep, hard, seed):
    s = np.random.default_rng(seed).normal(size=n)
    budget = n_kept(n, keep)
    if budget > n - int(hard * n):
        with pytest.raises(DietError, match="exceeds"):
            ccs(s, keep, hard_prune=hard)
        return
    kept = ccs(s, keep, hard_prune=hard, seed=seed)
    assert len(kept) == budget and len(np.unique(kept)) == budget
    hardest = np.argsort(s, kind="stable")[: int(hard * n)]
    assert not np.isin(hardest, kept).any()
    np.testing.assert_array_equal(kept, ccs(s, keep, hard_prune=hard, seed=seed))


def test_ccs_covers_sparse_strata():
    # 90 samples packed near 0 and 10 spread out: coverage takes all of the sparse ones first
    s = np.concatenate([np.random.default_rng(0).normal(0, 0.01, 90), np.linspace(1, 10, 10)])
    kept = ccs(s, 0.2, n_strata=10)
    assert np.isin(np.arange(90, 100), kept).sum() >= 9


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: select(np.ones(4), 1.5), r"keep fraction must be in \(0, 1\), got 1.5"),
        (lambda: select(np.ones(4), 0.0), r"must be in \(0, 1\)"),
        (lambda: select(np.ones(4), "x"), "must be a number"),
        (lambda: select(np.ones(4), 0.5, "hardest"), "unknown selection mode 'hardest'"),
        (lambda: select(np.ones(4), 0.5, groups=["a"]), "1 group labels for 4 samples"),
        (lambda: select(np.array([]), 0.5), "non-empty"),
        (lambda: select(None, 0.5, "top"), "scores are required"),
        (lambda: regions(np.ones(3), 1.0), r"rate must be in \(0, 1\)"),
        (lambda: ccs(np.array([1.0, np.nan]), 0.5), "have no score"),
        (lambda: ccs(np.ones(3), 0.5, hardest="up"), "hardest must be"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(DietError, match=message):
        call()


# NormDEL: the paper's Table 3 (mIoU / NormDEL x 100) with alpha = 1 and R = 0.33 for "30 %",
# to its last digit (the table rounds 68.029 up but 67.166 down).
TABLE3 = [
    (0.7938, 0.05, 68.03),  # Kvasir-Instrument 5 %
    (0.7545, 0.05, 67.21), (0.7574, 0.10, 66.49), (0.7637, 0.20, 65.14),  # Kvasir-SEG
    (0.7603, 0.33, 63.33), (0.7677, 0.50, 61.43), (0.7602, 1.00, 56.95),
    (0.7524, 0.05, 67.16), (0.7458, 0.10, 66.26), (0.7527, 0.20, 64.94),  # CVC-ClinicDB
    (0.7550, 0.33, 63.25), (0.7549, 0.50, 61.25), (0.7495, 1.00, 56.85),
]


@pytest.mark.parametrize("miou, retained, expected", TABLE3)
def test_normdel_reproduces_table3(miou, retained, expected):
    assert abs(100 * float(normdel(miou, retained)) - expected) <= 0.01 + 1e-9  # the table's 2 decimals


def test_normdel_bad_input():
    with pytest.raises(DietError, match="divide percentages by 100"):
        normdel(79.38, 0.05)
    with pytest.raises(DietError, match=r"retained fraction must be in \(0, 1\]"):
        normdel(0.7, 0.0)


def test_one_direction_table_gives_every_papers_choice():
    """EVA, EL2N, forgetting keep their highest values, AUM its lowest margins, DAD its middle (the
    papers'); and 'easy' / 'hard' name the opposite ends of each score through the same table."""
    from nnunet_diet.core.scores import EASY_END, SCORE_DIRECTIONS, selection_mode

    assert SCORE_DIRECTIONS == {"eva": "top", "el2n": "top", "el2nx": "top", "forgetting": "top",
                                "aum": "bottom", "dad": "middle"}
    for score, end in EASY_END.items():
        easy, hard = selection_mode(score, "easy"), selection_mode(score, "hard")
        assert {easy, hard} == {"top", "bottom"} and easy == ("top" if end == "high" else "bottom")
    values = np.array([0.9, 0.1, 0.5, 0.3])  # EL2N: row 1 is the easiest (smallest error)
    assert list(select(values, 0.25, selection_mode("el2n", "easy"))) == [1]
    assert list(select(values, 0.25, selection_mode("dad", "easy"))) == [0]  # DAD: highest Dice is easy
