"""Stop rules on real recorded dynamics (the shipped MONAI U-Net hippocampus run and the PneumoniaMNIST run)."""

import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from nnunet_diet.core import DynamicsStore
from nnunet_diet.core.dad import dad_trajectory, stop_window
from nnunet_diet.core.errors import DietError
from nnunet_diet.core.selection import select
from nnunet_diet.core.stop_rules import STOP_RULES, check_stop_rule, first_stop, noise_floor, stop_criterion
from nnunet_diet.nnunet.config import DADConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "nnunet_diet" / "examples"


@pytest.fixture(scope="module")
def hippo() -> np.ndarray:
    return DynamicsStore.load(EXAMPLES / "hippocampus_dice.npz")["dice"]


@pytest.fixture(scope="module")
def pneumonia() -> np.ndarray:
    return DynamicsStore.load(EXAMPLES / "pneumoniamnist_dynamics.npz")["p_true"]


def test_paper_rule_is_algorithm_1_on_the_recorded_run(hippo):
    traj = dad_trajectory(hippo, 5)
    assert traj.rule == "paper" and traj.stop == stop_window(traj.moving_distance, threshold=0.01)
    L = traj.moving_distance
    running = np.fmax.accumulate(np.nan_to_num(L, nan=-np.inf))
    np.testing.assert_allclose(traj.criterion[1:], L[1:] / running[1:])
    assert L[traj.stop] <= 0.01 * np.nanmax(L[: traj.stop + 1])
    assert all(L[w] > 0.01 * np.nanmax(L[: w + 1]) for w in range(1, traj.stop))


def test_spearman_criterion_is_scipys_rho_of_consecutive_windows(hippo, pneumonia):
    for values, window in ((hippo, 5), (pneumonia, 2)):
        traj = dad_trajectory(values, window, rule="spearman")
        for w in range(1, len(traj.dad)):
            both = np.isfinite(traj.dad[w - 1]) & np.isfinite(traj.dad[w])
            rho = spearmanr(traj.dad[w - 1][both], traj.dad[w][both]).statistic
            assert traj.criterion[w] == pytest.approx(rho, abs=1e-9)


def test_kept_criterion_is_the_overlap_of_the_kept_folds(hippo):
    traj = dad_trajectory(hippo, 5, rule="kept", rate=0.4)
    for w in range(1, len(traj.dad)):
        before, now = select(traj.dad[w - 1], 0.6, "middle"), select(traj.dad[w], 0.6, "middle")
        assert len(now) == 24
        assert traj.criterion[w] == pytest.approx(len(set(before) & set(now)) / 24)


def test_ranking_rules_stop_at_the_first_run_of_windows_after_the_peak(hippo):
    traj = dad_trajectory(hippo, 5, rule="spearman", threshold=0.85, patience=2)
    L, crit, w = traj.moving_distance, traj.criterion, traj.stop
    peak = int(np.nanargmax(L[:3]))
    assert w is not None and w > peak
    assert crit[w] >= 0.85 and crit[w - 1] >= 0.85
    assert not any(crit[v] >= 0.85 and crit[v - 1] >= 0.85 for v in range(peak + 2, w))
    assert traj.stop_epoch == (w + 1) * 5 - 1


def test_ranking_rules_do_not_fire_on_an_all_background_start():
    # the first windows: every case at Dice 0 (ties, a constant ranking); then learning starts
    rng = np.random.default_rng(0)
    dice = np.zeros((30, 40))
    dice[:, 20:] = np.clip(rng.normal(0.5, 0.1, (30, 1)) + rng.normal(0, 0.02, (30, 20)), 0, 1)
    for rule in ("spearman", "kept", "noise"):
        traj = dad_trajectory(dice, 5, rule=rule)
        assert traj.stop is None or traj.stop_epoch >= 29, rule  # only after learning started and L peaked


def test_noise_floor_matches_the_change_between_two_draws_of_one_distribution():
    # stationary per-case values: the observed |dDAD| + |dsigma| between windows is itself a noise draw
    rng = np.random.default_rng(1)
    dice = np.clip(rng.uniform(0.2, 0.8, (400, 1)) + rng.normal(0, 0.05, (400, 20)), 0, 1)
    traj = dad_trajectory(dice, 10, rule="noise")
    assert 0.75 < traj.criterion[1] < 1.25
    # a real early window of learning is far above its noise floor
    drifting = dice + np.linspace(0, 0.2, 20)[None]
    assert dad_trajectory(np.clip(drifting, 0, 1), 10, rule="noise").criterion[1] > 3


def test_noise_floor_is_deterministic_and_skips_unseen_entries(hippo):
    mask = np.ones(len(hippo), bool)
    a = noise_floor(hippo, 5, mask, 3)
    assert a == noise_floor(hippo, 5, mask, 3) > 0
    holes = hippo.copy()
    holes[::2, 15:17] = np.nan  # cases not drawn in two epochs of window 3
    assert np.isfinite(noise_floor(holes, 5, mask, 3))
    constant = np.full((5, 10), 0.5)
    assert noise_floor(constant, 5, np.ones(5, bool), 1) == 0


def test_first_stop_patience_and_direction():
    L = np.array([np.nan, 5, 10, 3, 2, 1, 0.5])
    rho = np.array([np.nan, 0.95, 0.95, 0.95, 0.8, 0.95, 0.95])
    assert first_stop("spearman", rho, L, threshold=0.9) == 3           # windows 1-2 are before the peak
    assert first_stop("spearman", rho, L, threshold=0.9, patience=2) == 6
    ratio = np.array([np.nan, 9, 9, 1.5, 0.9, 1.1, 0.8])
    assert first_stop("noise", ratio, L, threshold=1.0) == 4
    assert first_stop("noise", ratio, L, threshold=1.0, patience=2) is None


@pytest.mark.parametrize("rule, threshold, message", [
    ("median", None, "unknown stop rule 'median'"),
    ("paper", 1.1, "threshold must be in (0, 1)"),
    ("spearman", 0.0, "threshold must be in (0, 1]"),
    ("noise", -1.0, "threshold must be in (0, inf)"),
])
def test_bad_rules_are_refused(rule, threshold, message):
    with pytest.raises(DietError, match=re.escape(message)):
        check_stop_rule(rule, threshold)


def test_every_rule_needs_what_it_compares(hippo):
    L = dad_trajectory(hippo, 5).moving_distance
    with pytest.raises(DietError, match="needs the DAD"):
        stop_criterion("kept", L)
    assert set(STOP_RULES) == {"paper", "spearman", "kept", "noise"}


def test_trainer_reads_the_rule_from_the_environment():
    cfg = DADConfig.from_env({"NNUNET_DIET_STOP_RULE": "spearman"})
    assert (cfg.stop_rule, cfg.threshold) == ("spearman", 0.9)
    assert "stop_rule=spearman" in cfg.describe() and "threshold=0.9" in cfg.describe()
    assert DADConfig.from_env({}).stop_rule == "paper" and DADConfig.from_env({}).threshold == 0.01
    score = DADConfig.from_env({"NNUNET_DIET_STOP_RULE": "noise", "NNUNET_DIET_THRESHOLD": "1.5"}).score_config()
    assert (score.stop_rule, score.threshold) == ("noise", 1.5)
    with pytest.raises(DietError, match="NNUNET_DIET_STOP_RULE='rank'"):
        DADConfig.from_env({"NNUNET_DIET_STOP_RULE": "rank"})
    with pytest.raises(DietError, match=re.escape("NNUNET_DIET_THRESHOLD='1.5': expected a number in (0, 1] for stop rule kept")):
        DADConfig.from_env({"NNUNET_DIET_STOP_RULE": "kept", "NNUNET_DIET_THRESHOLD": "1.5"})
