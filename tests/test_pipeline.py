"""``nnunet-diet pipeline``: the stop setting it chooses and what its summary says the stop saved
(the whole pipeline runs in tests/test_nnunet_e2e.py)."""

from __future__ import annotations

import argparse

import pytest

from nnunet_diet.cli.pipeline import EXAMPLE, check_arguments, saving_lines, stop_words
from nnunet_diet.core.errors import DietError


def _args(tmp_path, **kw) -> argparse.Namespace:
    base = dict(output=tmp_path / "out", raw=EXAMPLE, dataset_id=990, epochs=50, iterations=10, window=5,
                stop_rule="spearman", threshold=None, patience=None, exact_every=1, rate=0.4, retrain_epochs=10)
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("rule, given, expected", [
    ("spearman", {}, (0.8, 2)),                                # the pipeline's own setting
    ("paper", {}, (0.01, 1)),                                  # the trainer's (the paper's) defaults
    ("kept", {}, (0.9, 1)),
    ("spearman", {"threshold": 0.9, "patience": 1}, (0.9, 1)),  # given values win
])
def test_stop_setting_defaults(tmp_path, rule, given, expected):
    args = _args(tmp_path, stop_rule=rule, **given)
    check_arguments(args)
    assert (args.threshold, args.patience) == expected


def test_paper_threshold_range_names_the_option(tmp_path):
    with pytest.raises(DietError, match=r"--threshold: stop rule paper: threshold must be in \(0, 1\), got 1.0"):
        check_arguments(_args(tmp_path, stop_rule="paper", threshold=1.0))


def test_stop_words():
    assert stop_words("spearman", 0.8, 2, 1) == ("spearman, stops at Spearman >= 0.8 in 2 windows in a row, on "
                                                 "exact-mode DAD (fixed patches every epoch)")
    assert stop_words("paper", 0.01, 1, 0) == "paper, stops at L / L_max <= 0.01, on online DAD (training patches)"
    assert stop_words("paper", 0.01, 1, 3).endswith("(fixed patches every 3 epochs)")


def _summary(stop, trained, seconds, exact_every=1):
    return {"stop_epoch": stop, "epochs_trained": trained, "num_epochs": 50, "compute_saved": 1 - trained / 50,
            "dad_scored_at_epoch": trained - 1, "seconds": seconds,
            "settings": {"stop_rule": "spearman", "threshold": 0.8, "patience": 2, "exact_every": exact_every}}


def test_saving_lines_count_exact_mode_against_the_whole_schedule():
    # 30 of 50 epochs in 165 s, 45 s of them exact mode: 5.5 s an epoch recorded this way (275 s for 50),
    # 4 s an epoch without exact mode (200 s for 50 online): the stopped run took 165 / 200 = 82 % of that
    lines = saving_lines(_summary(29, 30, {"epochs": 165.0, "exact_mode": 45.0}))
    assert lines[0] == ("DAD stop rule spearman, stops at Spearman >= 0.8 in 2 windows in a row, on exact-mode DAD "
                        "(fixed patches every epoch): fired at epoch 29")
    assert lines[1] == ("scoring run: trained 30 of 50 epochs (compute saved 40% of the schedule's epochs); DAD "
                        "scored at epoch 29")
    assert lines[2] == ("time: 30 epochs took 165 s, of which exact mode 45 s (27%); all 50 epochs: about 275 s "
                        "recorded the same way (the stop saved 40% of that), about 200 s with online recording only "
                        "(the stop saved 18% of that)")
    slow = saving_lines(_summary(29, 30, {"epochs": 165.0, "exact_mode": 75.0}))[2]  # 3 s an epoch online: 150 s
    assert slow.endswith("about 150 s with online recording only (the stop took 10% more)")


def test_saving_lines_when_the_rule_did_not_fire_online():
    lines = saving_lines(_summary(None, 50, {"epochs": 200.0, "exact_mode": 0.0}, exact_every=0))
    assert lines[0].endswith("on online DAD (training patches): did not fire within 50 epochs; scored at the last "
                             "window")
    assert "compute saved 0%" in lines[1]
    assert lines[2] == "time: 50 epochs took 200 s; all 50 epochs: about 200 s"
    assert len(saving_lines({**_summary(None, 50, None), "seconds": None})) == 2  # an older summary: no time line
