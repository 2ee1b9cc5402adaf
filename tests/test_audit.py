"""The label audit without training: the core's reasons on worked examples, and ``nnunet-diet audit`` on a fold
made of the shipped real dynamics and the shipped hippocampus cases (bad input: one line, exit 2)."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_diet.core.audit import AuditConfig, audit_table, review_order
from nnunet_diet.core.errors import DietError
from nnunet_diet.core.scores import ScoreConfig
from nnunet_diet.core.store import DynamicsStore
from nnunet_diet.report.tables import write_score_table

CLI = str(Path(sys.executable).parent / "nnunet-diet")
EXAMPLES = Path(__file__).resolve().parent.parent / "nnunet_diet" / "examples"
DATASET = "Dataset990_Hippocampus40"


def _cli(*args):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=120)


def _bad(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---------------------------------------------------------------- core, worked examples (window 2, 6 epochs)
def _store(dice: dict[str, list[float]], fg: dict[str, bool] | None = None) -> DynamicsStore:
    ids = list(dice)
    store = DynamicsStore(ids, ["dice", "el2n", "el2nx"])
    for epoch in range(6):
        d = np.array([dice[i][epoch] for i in ids], float)
        has_fg = np.array([(fg or {}).get(i, True) for i in ids])
        store.append_epoch({"dice": d, "el2n": np.full(len(ids), 0.1), "el2nx": np.where(has_fg, 1 - d, np.nan)})
    return store


def test_reasons_and_review_order_on_worked_trajectories():
    dice = {
        "steady": [0.6, 0.7, 0.8, 0.8, 0.8, 0.8],      # DAD 0.65, 0.80, 0.80
        "zero": [0.0, 0.02, 0.05, 0.0, 0.03, 0.01],   # every window < 0.1
        "forgot": [0.7, 0.8, 0.9, 0.9, 0.3, 0.2],     # peak DAD 0.9, last window 0.25: learned then forgotten
        "late": [0.0, 0.1, 0.3, 0.5, 0.6, 0.7],       # slow learner, never dropped
        "empty": [np.nan] * 6,                        # label and prediction empty: Dice NaN throughout
        "unseen": [0.5, 0.5, np.nan, np.nan, np.nan, np.nan],  # not drawn in the scoring window
    }
    cols, summary = audit_table(_store(dice, fg={"empty": False}), ScoreConfig(window=2),
                                AuditConfig(tail=0.2))
    assert summary["dad_scored_at_epoch"] == 5  # stop rule never fired: the last window
    order = list(cols["id"])
    # the empty label first, then by DAD at the last window (zero 0.02, forgot 0.25, late 0.65, steady 0.8),
    # the case without a Dice in that window last
    assert order == ["empty", "zero", "forgot", "late", "steady", "unseen"]
    assert list(cols["audit_rank"]) == [1, 2, 3, 4, 5, 6]
    reason = dict(zip(order, cols["reason"]))
    assert reason["empty"].startswith("no foreground in the label")
    assert "Dice near 0 throughout training" in reason["zero"] and "learned then forgotten" not in reason["zero"]
    assert "learned then forgotten" in reason["forgot"] and "Dice near 0" not in reason["forgot"]
    assert "unstable: sigma in the top 20 %" in reason["forgot"]  # 0.05 in the last window: the largest
    assert reason["steady"] == "" and not dict(zip(order, cols["flagged"]))["steady"]
    assert reason["late"] == ""
    assert reason["unseen"].startswith("not scored")
    np.testing.assert_allclose(dict(zip(order, cols["dad_max"]))["forgot"], 0.9, atol=1e-6)


def test_learned_then_forgotten_is_relative_to_the_best_window():
    """The swapped-classes trajectory of the 3D benchmark (docs/benchmarks.md): learned to DAD 0.25 with the
    cohort, then unlearned to near 0, is flagged; a case that keeps 59 % of its best is not, whatever its
    absolute drop; one that never reached ``learned`` is not either."""
    dice = {
        "swapped": [0.2, 0.3, 0.3, 0.2, 0.02, 0.01],  # windows 0.25, 0.25, 0.015: lost 94 % of its best
        "noisy": [0.8, 0.9, 0.5, 0.5, 0.5, 0.5],      # windows 0.85, 0.50, 0.50: lost 41 % (0.35 absolute)
        "edge": [0.4, 0.6, 0.3, 0.3, 0.2, 0.15],      # windows 0.50, 0.30, 0.175: lost 65 %
        "faint": [0.05, 0.15, 0.1, 0.1, 0.0, 0.0],    # best window 0.1 < learned 0.2
    }
    cols, _ = audit_table(_store(dice), ScoreConfig(window=2), AuditConfig(tail=0.01))
    forgot = {i for i, r in zip(cols["id"], cols["reason"]) if "learned then forgotten" in r}
    assert forgot == {"swapped", "edge"}
    cols, _ = audit_table(_store(dice), ScoreConfig(window=2), AuditConfig(tail=0.01, forgotten_share=0.4))
    assert {i for i, r in zip(cols["id"], cols["reason"]) if "learned then forgotten" in r} == {"swapped", "edge",
                                                                                               "noisy"}


def test_cleanlab_scores_add_a_column_and_a_reason_but_not_the_order():
    dice = {f"c{i}": [0.1 * i] * 6 for i in range(1, 6)}
    store = _store(dice)
    cleanlab = np.array([0.9, 0.8, 0.7, 0.6, 0.1])  # aligned with store.ids: c5 worst by cleanlab
    cols, _ = audit_table(store, ScoreConfig(window=2), AuditConfig(tail=0.2), {"cleanlab": cleanlab})
    assert list(cols["id"]) == ["c1", "c2", "c3", "c4", "c5"]  # the order stays DAD's
    assert dict(zip(cols["id"], cols["cleanlab"]))["c5"] == pytest.approx(0.1)
    assert "cleanlab label quality in the bottom 20 %" in cols["reason"][-1]
    with pytest.raises(DietError, match="3 values for 5 cases"):
        audit_table(store, ScoreConfig(window=2), AuditConfig(), {"cleanlab": cleanlab[:3]})


def test_review_order_ties_by_id_and_puts_undefined_last():
    ids = np.array(["b", "a", "c", "d"])
    assert list(ids[review_order(np.array([0.5, 0.5, np.nan, 0.1]), ids)]) == ["d", "a", "b", "c"]


def test_audit_config_rejects_thresholds_outside_0_1():
    with pytest.raises(DietError, match="tail must be in"):
        AuditConfig(tail=5)


# ---------------------------------------------------------------- the command on a fold of the shipped data
@pytest.fixture
def fold(tmp_path):
    """``<results>/Dataset990_Hippocampus40/<run>/fold_0/dad/`` from the shipped dynamics (40 real cases), with
    the shipped raw dataset beside it as ``nnUNet_raw``."""
    store = DynamicsStore.load(EXAMPLES / "hippocampus_dice.npz")
    fold = tmp_path / "nnUNet_results" / DATASET / "nnUNetTrainerDAD__nnUNetPlans__3d_fullres" / "fold_0"
    dad = fold / "dad"
    settings = {"window": 10, "threshold": 0.01, "patience": 1, "absolute": False, "ignore_zeros": False,
                "stop": True, "rate": 0.4, "centres": None, "exact_every": 0}
    write_score_table(store, ScoreConfig(), dad / "scores.csv", dad / "summary.json", {"settings": settings})
    shutil.copy(EXAMPLES / "hippocampus_dice.npz", dad / "dynamics.npz")
    shutil.copytree(EXAMPLES / "hippocampus40", tmp_path / "nnUNet_raw" / DATASET)
    return fold


def test_audit_writes_the_queue_and_prints_its_head(fold):
    proc = _cli("audit", fold, "--show", "3")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(fold / "dad" / "audit.csv")
    scores = pd.read_csv(fold / "dad" / "scores.csv")
    assert list(table.columns[:5]) == ["audit_rank", "id", "flagged", "reason", "dad"]
    assert len(table) == 40 and list(table["audit_rank"]) == list(range(1, 41))
    # nothing in the shipped run has an empty label: the order is exactly the DAD rank of scores.csv
    assert list(table["id"]) == list(scores.sort_values(["dad", "id"])["id"])
    np.testing.assert_allclose(table.set_index("id").loc[scores["id"], "dad"], scores["dad"], rtol=1e-5)
    assert "labels checked against their images in" in proc.stdout  # found through <results>/../nnUNet_raw
    assert f"wrote {fold / 'dad' / 'audit.csv'}" in proc.stdout
    assert table["id"].iloc[0] in proc.stdout.split("review queue starts with:")[1]


def test_audit_bad_input_names_the_file(fold, tmp_path):
    _bad(_cli("audit", tmp_path / "nowhere"), "no such fold folder")
    bare = tmp_path / "bare_fold"
    bare.mkdir()
    _bad(_cli("audit", bare), f"{bare}: no dad/ folder")
    _bad(_cli("audit", fold, "-o", fold / "dad" / "scores.csv"), "scores.csv: is the input")
    _bad(_cli("audit", fold, "--tail", "2"), "--tail must be in (0, 1)")
    _bad(_cli("audit", fold, "--forgotten-share", "1.5"), "--forgotten-share must be in (0, 1)")
    # a label replaced by another case's label of another shape: it no longer matches its image
    raw = tmp_path / "nnUNet_raw" / DATASET / "labelsTr"
    before = (fold / "dad" / "scores.csv").read_bytes()
    shutil.copy(raw / "hippocampus_003.nii.gz", raw / "hippocampus_001.nii.gz")
    _bad(_cli("audit", fold), f"{raw / 'hippocampus_001.nii.gz'}: the label of case hippocampus_001 has size",
         "not on one voxel grid")
    assert not (fold / "dad" / "audit.csv").exists() and (fold / "dad" / "scores.csv").read_bytes() == before


def test_cleanlab_bad_input_missing_or_foreign_predictions(fold, tmp_path):
    # the files are checked before cleanlab is imported: these errors need no cleanlab
    run = fold.parent
    for k in range(5):
        (run / f"fold_{k}" / "validation").mkdir(parents=True, exist_ok=True)
    _bad(_cli("audit", fold, "--cleanlab", run), "fold_*/validation/", ".npz: missing", "--npz")
    other = tmp_path / "nnUNet_results" / "Dataset991_Other" / "run"
    (other / "fold_0" / "validation").mkdir(parents=True)
    _bad(_cli("audit", fold, "--cleanlab", other), "out-of-fold predictions of Dataset991_Other", DATASET)
    _bad(_cli("audit", fold, "--cleanlab", run / "fold_0"), "not one fold")


def test_cleanlab_file_errors_come_before_the_cleanlab_import(fold):
    """Without the extra (cleanlab hidden from the import system), a missing prediction is still named."""
    run = fold.parent
    (run / "fold_0" / "validation").mkdir(parents=True)
    code = ("import sys; sys.modules['cleanlab'] = None; from nnunet_diet.cli.main import main; "
            "sys.exit(main(['audit', sys.argv[1], '--cleanlab', sys.argv[2]]))")
    _bad(subprocess.run([sys.executable, "-c", code, str(fold), str(run)], capture_output=True, text=True,
                        timeout=120), "fold_*/validation/", ".npz: missing")


def _predictions(run: Path, folds: dict[int, list[str]]) -> None:
    """``run/fold_k/validation/<case>.npz`` for the given cases (empty files: only their names are read
    before these checks fail)."""
    for k, cases in folds.items():
        (run / f"fold_{k}" / "validation").mkdir(parents=True, exist_ok=True)
        for case in cases:
            (run / f"fold_{k}" / "validation" / f"{case}.npz").touch()


def test_cleanlab_bad_input_a_case_in_two_folds_or_only_other_cases(fold, tmp_path):
    ids = sorted(DynamicsStore.load(fold / "dad" / "dynamics.npz").ids)
    run = fold.parent
    # nnU-Net's five folds of 8 validation cases each, but fold 3 validates fold 1's first case again
    _predictions(run, {k: ids[8 * k: 8 * k + 8] for k in range(5)})
    _predictions(run, {3: [ids[8]]})
    _bad(_cli("audit", fold, "--cleanlab", run),
         f"{run / 'fold_3' / 'validation' / ids[8]}.npz: case {ids[8]} is validated in two folds (fold_1 too): "
         "not one cross-validation")
    # a run of the same dataset name whose validation cases are none of the audited fold's cases
    other = run.parent / "nnUNetTrainer__nnUNetPlans__2d"
    _predictions(other, {0: ["prostate_00", "prostate_01"], 1: ["prostate_02"]})
    _bad(_cli("audit", fold, "--cleanlab", other),
         f"{other / 'fold_0' / 'validation' / 'prostate_00.npz'}: case prostate_00 is not a case of the audited "
         "fold (3 such files): predictions of another dataset?")
    assert not (fold / "dad" / "audit.csv").exists()


def test_default_audit_never_imports_cleanlab(fold):
    code = ("import sys; from nnunet_diet.cli.main import main; rc = main(['audit', sys.argv[1]]); "
            "print('cleanlab' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(fold)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_report_shows_the_audit_queue_with_thumbnails(fold, tmp_path):
    out = tmp_path / "report.html"
    proc = _cli("report", fold, "-o", out, "--thumbs", "2")
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    section = page.split("Label audit: the review queue")[1]
    assert not (fold / "dad" / "audit.csv").exists()  # computed from dynamics.npz as the command would
    assert "first 4 of the queue" in section and section.count("<img") >= 4
    first = section.split("#1 ")[1].split(" ")[0]
    scores = pd.read_csv(fold / "dad" / "scores.csv").sort_values(["dad", "id"])
    assert first == scores["id"].iloc[0]
