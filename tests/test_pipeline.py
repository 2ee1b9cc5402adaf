"""``nnunet-diet pipeline``: the stop setting it chooses and what its summary says the stop saved
(the whole pipeline runs in tests/test_nnunet_e2e.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nnunet_diet.cli.pipeline import (EXAMPLE, REPEAT, _Job, _Slots, check_arguments, jobs_words, saving_lines,
                                      spread_lines, stop_words, training_threads)
from nnunet_diet.core.errors import DietError


def _args(tmp_path, **kw) -> argparse.Namespace:
    base = dict(output=tmp_path / "out", raw=EXAMPLE, dataset_id=990, epochs=50, iterations=10, window=5,
                stop_rule="spearman", threshold=None, patience=None, exact_every=1, rate=0.4, retrain_epochs=10,
                jobs=2)
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
    on = _summary(19, 50, None)
    on["settings"]["stop"] = False  # NNUNET_DIET_STOP=0: the stop reported, training went on
    assert saving_lines(on)[0].endswith("fired at epoch 19; trained on to epoch 49 (NNUNET_DIET_STOP=0)")
    slow = saving_lines(_summary(29, 30, {"epochs": 165.0, "exact_mode": 75.0}))[2]  # 3 s an epoch online: 150 s
    assert slow.endswith("about 150 s with online recording only (the stop took 10% more)")


def test_saving_lines_when_the_rule_did_not_fire_online():
    lines = saving_lines(_summary(None, 50, {"epochs": 200.0, "exact_mode": 0.0}, exact_every=0))
    assert lines[0].endswith("on online DAD (training patches): did not fire within 50 epochs; scored at the last "
                             "window")
    assert "compute saved 0%" in lines[1]
    assert lines[2] == "time: 50 epochs took 200 s; all 50 epochs: about 200 s"
    assert len(saving_lines({**_summary(None, 50, None), "seconds": None})) == 2  # an older summary: no time line


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(DietError, match="--jobs must be >= 1"):
        check_arguments(_args(tmp_path, jobs=0))


def _sleeper(tmp_path, name: str, seconds: float = 0.6, code: int = 0) -> _Job:
    """A job that notes when it started and ended and prints one tagged epoch line."""
    script = (f"import time; s = time.time(); time.sleep({seconds}); print('noise'); "
              f"print('x nnunet-diet epoch 1/1: done'); "
              f"open({str(tmp_path / name)!r}, 'w').write(f'{{s}} {{time.time()}}'); raise SystemExit({code})")
    return _Job(name, f"job {name}", [sys.executable, "-c", script], dict(os.environ), tmp_path / f"{name}.log")


def test_slots_run_jobs_side_by_side_at_most_n_in_order(tmp_path, capsys):
    slots = _Slots(2)
    jobs = [slots.submit(_sleeper(tmp_path, name)) for name in ("a", "b", "c")]
    for job in jobs:
        job.check()
    (a0, a1), (b0, b1), (c0, c1) = (map(float, (tmp_path / n).read_text().split()) for n in "abc")
    assert a0 < b1 and b0 < a1  # a and b at the same time
    assert c0 >= min(a1, b1) - 0.05  # c waited for a free slot
    out = capsys.readouterr().out
    assert "   [a] nnunet-diet epoch 1/1: done" in out and "\nnoise\n" not in out  # only the tagged lines, tagged
    assert "noise" in (tmp_path / "a.log").read_text()  # the whole output in the job's log
    assert out.index("== job a") < out.index("== job b") < out.index("== job c")


def test_slots_failure_names_the_step_and_log_and_stop_ends_the_others(tmp_path):
    slots = _Slots(2)
    bad = slots.submit(_sleeper(tmp_path, "bad", 0.1, code=3))
    slow, queued = slots.submit(_sleeper(tmp_path, "slow", 30)), slots.submit(_sleeper(tmp_path, "queued", 0.1))
    with pytest.raises(DietError, match=f"job bad failed \\(exit 3\\); see {tmp_path / 'bad.log'}"):
        bad.check()
    time.sleep(0.5)
    t0 = time.time()
    slots.stop()
    slow.done.wait(10)
    queued.done.wait(10)
    assert time.time() - t0 < 5 and slow.returncode != 0  # terminated, not left training
    assert queued.returncode != 0 or (tmp_path / "queued").exists()  # started before the stop, or never


def test_training_threads_divide_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert training_threads(2, {}) == str(max(1, cores // 2))
    assert training_threads(1, {}) is None  # one at a time: nnU-Net's own choice
    assert training_threads(2, {"OMP_NUM_THREADS": "3"}) == "3"  # the user's setting wins
    assert jobs_words(2, "1") == ("the scoring run alone with nnU-Net's threads (all cores), then the retrainings 2 at "
                                  "a time, 1 torch thread each")
    assert jobs_words(2, "1", "1") == ("the scoring run alone with 1 torch thread (OMP_NUM_THREADS), then the "
                                       "retrainings 2 at a time, 1 torch thread each")
    assert jobs_words(1, None) == "one after another, each with nnU-Net's threads (all cores)"


def _dice(rows):
    return pd.DataFrame([{"training list": t, "fold": f, "cases": c, "Dice": (a + p) / 2, "anterior": a,
                          "posterior": p} for t, f, c, a, p in rows])


def test_spread_lines_state_the_repeat_gap_and_each_label_not_learned():
    dice = _dice([("full", 0, 32, 0.70, 0.64), ("DAD ambiguous, 40% pruned", 6, 20, 0.0, 0.60),
                  (REPEAT, 5, 32, 0.60, 0.50)])
    lines = spread_lines(dice, ["anterior", "posterior"], 100)
    assert lines[0] == ("run-to-run spread: the same full list trained twice gave 0.670 and 0.550 (0.120 apart, one "
                        "pair);\na difference between lists no larger than that says nothing about pruning")
    assert lines[1].startswith("not learned in 100 iterations: DAD ambiguous, 40% pruned (anterior 0.000): such")
    single = spread_lines(_dice([("full", 0, 32, 0.7, 0.6)]), ["anterior", "posterior"], 100)
    assert len(single) == 1 and "--repeat-full" in single[0]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_stop_ends_a_jobs_worker_processes_too(tmp_path):
    # nnUNetv2_train starts data-augmentation workers; ending only the trainer would leave them running
    pids = tmp_path / "child"
    script = ("import subprocess, sys, time; c = subprocess.Popen(['sleep', '60']); "
              f"open({str(pids)!r}, 'w').write(str(c.pid)); print('x nnunet-diet epoch 1/1: go', flush=True); "
              "time.sleep(60)")
    slots = _Slots(1)
    job = slots.submit(_Job("w", "job w", [sys.executable, "-c", script], dict(os.environ), tmp_path / "w.log"))
    for _ in range(200):
        if pids.exists() and pids.read_text():
            break
        time.sleep(0.05)
    child = int(pids.read_text())
    assert _alive(child)
    slots.stop()
    job.done.wait(10)
    for _ in range(100):
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child) and job.returncode != 0
