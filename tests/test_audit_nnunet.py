"""The label audit end to end on real data with the real nnU-Net CLIs (CPU): a tiny 2D polyp dataset
(Kvasir-SEG + CVC-ClinicDB from ../shared/data, RGB PNG, 32 px) with some labels corrupted on purpose, one short
nnUNetTrainerDAD scoring run, ``nnunet-diet audit`` -> the corrupted cases first; then a real MONAI Label server
imports the PNG training labels and serves the audit's order to MONAI Label's own client. A tiny 3D
hippocampus dataset (the shipped MSD cases) with labels translated or with swapped classes, non-empty
corruptions that only DAD can put first, the empty-label rule cannot.

cleanlab's path on nnU-Net's own out-of-fold softmax: tests/test_nnunet_e2e.py (folds 1-4 of its hippocampus
split with ``--npz``) and, at benchmark scale, ``benchmarks/label_audit.py`` (docs/benchmarks.md)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_diet.core.store import DynamicsStore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "polyp"
BIN = Path(sys.executable).parent
DATASET = "Dataset985_PolypAudit"
TRAINER = "nnUNetTrainerDADAdam_6epochs_3iters"
PER_CENTRE = 8
SIDE = 32
# Corrupted on purpose (cases picked by position in name order): the foreground erased. Only this type is found
# after 18 iterations: a first try with 50 iterations ranked another case's mask (a "mismatched" label) 16th of
# 20; the subtler types are measured by benchmarks/label_audit.py, and non-empty wrong labels that DAD itself puts
# first are tested in 3D below (test_audit_puts_translated_and_swapped_labels_first_by_dad).
CORRUPT = {0: "erased", 5: "erased", 11: "erased"}
TOLERANCE = 0  # the corrupted cases are exactly the first len(CORRUPT) + TOLERANCE of the queue

needs_polyp = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} not present (real polyp data)")


def _env(root: Path) -> dict:
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
               nnUNet_results=str(root / "res"), nnUNet_def_n_proc="1", OMP_NUM_THREADS="1",
               NNUNET_DIET_WINDOW="2", NNUNET_DIET_STOP="0", NNUNET_DIET_EXACT_EVERY="1")
    env["nnUNet_extTrainer"] = subprocess.run([BIN / "nnunet-diet", "trainer-path"], capture_output=True, text=True,
                                              check=True).stdout.strip()
    return env


def _run(args, env, check=True):
    proc = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _make_raw(raw: Path) -> dict[str, str]:
    """Real image/mask pairs, shrunk to 32 px; returns the corrupted cases and how."""
    from PIL import Image

    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    masks = {}
    for centre, folder in (("kvasir", "Kvasir-SEG"), ("cvc", "CVC-ClinicDB")):
        names = sorted((DATA / folder / "images").glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
        for index in np.linspace(0, len(names) - 1, PER_CENTRE).round().astype(int):
            case = f"{centre}_{names[index].stem}"
            Image.open(names[index]).convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR) \
                .save(raw / "imagesTr" / f"{case}_0000.png")
            mask = Image.open(DATA / folder / "masks" / names[index].name).convert("L")
            masks[case] = (np.asarray(mask.resize((SIDE, SIDE), Image.Resampling.BILINEAR)) > 127).astype(np.uint8)
    cases = sorted(masks)
    corrupted = {}
    for position, kind in CORRUPT.items():
        case = cases[position]
        masks[case] = np.zeros_like(masks[case])
        corrupted[case] = kind
    for case, mask in masks.items():
        Image.fromarray(mask).save(raw / "labelsTr" / f"{case}.png")
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "polyp": 1},
        "numTraining": len(cases), "file_ending": ".png", "name": DATASET}))
    return corrupted


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Plan, preprocess and train the DAD trainer on every case (fold 'all', exact mode every epoch)."""
    root = tmp_path_factory.mktemp("audit_nnunet")
    corrupted = _make_raw(root / "raw" / DATASET)
    env = _env(root)
    _run([BIN / "nnUNetv2_plan_and_preprocess", "-d", "985", "-c", "2d", "-np", "1", "-npfp", "1"], env)
    _run([BIN / "nnunet-diet", "lite-plans", "-d", "985", "--features", "8", "--max-features", "32"], env)
    _run([BIN / "nnUNetv2_train", "985", "2d", "all", "-tr", TRAINER, "-p", "nnUNetPlans_lite", "-device", "cpu"],
         dict(env, nnUNet_n_proc_DA="0"))  # augmentation in-process (planning needs a worker count >= 1)
    fold = root / "res" / DATASET / f"{TRAINER}__nnUNetPlans_lite__2d" / "fold_all"
    return root, fold, corrupted, env


@needs_polyp
def test_audit_puts_the_corrupted_labels_first(scored):
    root, fold, corrupted, env = scored
    proc = _run([BIN / "nnunet-diet", "audit", fold], env)
    assert "labels checked against their images in" in proc.stdout
    table = pd.read_csv(fold / "dad" / "audit.csv", dtype={"id": str, "reason": str})
    store = DynamicsStore.load(fold / "dad" / "dynamics.npz")
    assert len(table) == 2 * PER_CENTRE and "dice_exact" in store
    head = list(table["id"][: len(CORRUPT) + TOLERANCE])
    assert set(corrupted) <= set(head), (corrupted, table[["id", "dad", "reason"]].head(8).to_string())
    reasons = table.set_index("id")["reason"].fillna("")
    for case in corrupted:
        assert reasons[case].startswith("no foreground in the label"), reasons[case]
    # after them, the order is the trainer's own DAD ranking (scores.csv, written by nnUNetTrainerDAD)
    scores = pd.read_csv(fold / "dad" / "scores.csv", dtype={"id": str}).set_index("id")
    rest = table[~table["id"].isin(list(corrupted))]
    assert list(rest["id"]) == list(scores.loc[rest["id"]].sort_values(["dad", "id"]).index)
    np.testing.assert_allclose(rest["dad"], scores.loc[rest["id"], "dad"], rtol=1e-5)


@needs_polyp
def test_audit_rejects_a_label_that_no_longer_matches_its_image(scored, tmp_path):
    from PIL import Image

    root, fold, corrupted, env = scored
    raw = tmp_path / DATASET
    shutil.copytree(root / "raw" / DATASET, raw)
    case = sorted(p.name.removesuffix(".png") for p in (raw / "labelsTr").glob("*.png"))[3]
    Image.fromarray(np.zeros((SIDE, 2 * SIDE), np.uint8)).save(raw / "labelsTr" / f"{case}.png")
    proc = _run([BIN / "nnunet-diet", "audit", fold, "--raw", raw, "-o", tmp_path / "a.csv"], env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert f"{raw / 'labelsTr' / case}.png: the label of case {case} has size (64, 32), its image" in proc.stderr
    assert "not on one voxel grid" in proc.stderr
    assert not (tmp_path / "a.csv").exists()


@needs_polyp
def test_monailabel_imports_the_png_labels_and_serves_the_audit_order(scored):
    pytest.importorskip("monailabel")
    from test_monailabel_app import Server

    root, fold, corrupted, env = scored
    audit = fold / "dad" / "audit.csv"
    if not audit.exists():
        _run([BIN / "nnunet-diet", "audit", fold], env)
    review = root / "review"  # a copy of the raw layout: studies imagesTr/, labels in ../labelsTr, dataset.json
    shutil.copytree(root / "raw" / DATASET, review, dirs_exist_ok=True)
    studies = review / "imagesTr"
    server = Server(studies, audit, root / "monailabel.log")
    try:
        client = server.wait_ready()
        info = client.info()
        assert info["dad"]["original_labels"] == 2 * PER_CENTRE  # .png, the dataset's own file ending
        objects = client.datastore()["objects"]
        some = next(iter(objects.values()))
        assert some["labels"]["original"]["ext"] == ".png"
        table = pd.read_csv(audit, dtype={"id": str})
        served = []
        for _ in range(len(CORRUPT)):
            sample = client.next_sample("audit", {})
            served.append(sample["case_id"])
            client.save_label(sample["id"], str(review / "labelsTr" / f"{sample['case_id']}.png"), tag="final")
        assert served == list(table["id"][: len(CORRUPT)])  # what the table lists first is what is served
    finally:
        server.stop()


# ---------------------------------------------------------------- 3D: corruptions that only DAD can put first
HIPPO = Path(__file__).resolve().parents[1] / "nnunet_diet" / "examples" / "hippocampus40"
HIPPO_DATASET = "Dataset986_HippoAudit"
HIPPO_CASES = 20
HIPPO_TRAINER = "nnUNetTrainerDADAdam_10epochs_10iters"
# benchmarks/label_audit.py's corruptions, seeded: 15 % of the 20 labels, types in turn (translated by half
# the hippocampus' extent along its longest axis, anterior / posterior swapped): both leave a foreground
HIPPO_SEED, HIPPO_FRACTION, HIPPO_TYPES = 0, 0.15, ["translated", "swapped"]
# Tolerance, from 10 scoring runs of this schedule (corruption seeds 0, 1, 2: 5, 3 and 2 runs, 2026-12-01
# 21:37-22:44 UTC, load 1.5-6 on 2 cores): the corrupted cases' audit ranks were {1,2,3} six times, {1,2,5}
# twice, {1,2,4} and {1,2,6} once each (the translated labels at ranks 1-2 in 9 runs, 4 in one; the swapped one
# at 2-6: in weaker runs, the clean cases near the top at DAD 0.001-0.29 instead of 0.36-0.50). Not exactly the
# first three every time, so: at least two of the three among the first 3 (seen 10 / 10) and all three among
# the first 8 of 20 (worst seen 6); a random order meets both with probability 16 / 1140 = 1.4 %.
HIPPO_HEAD, HIPPO_ALL_WITHIN = 3, 8
# A run that learned nothing is no test of the ranking: in the clean-clone CI run of 2026-12-01 22:59 UTC the
# network of one such run predicted background everywhere (every case's DAD under 0.03, the corrupted ones at
# ranks 2, 4, 9). Whether the clean cases were learned (their median DAD at least HIPPO_LEARNED) is checked, and
# a run that did not learn them is trained once more (the audit's own advice: audit a network that has learned
# the easy majority); two such runs in a row fail the test.
HIPPO_LEARNED = 0.1


def _label_audit():
    """``benchmarks/label_audit.py`` as a module (its corruptions and log reading are what the tests check)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import label_audit
    finally:
        sys.path.pop(0)
    return label_audit


def _hippo_prepare(root: Path, seed: int = HIPPO_SEED) -> tuple[dict, dict]:
    """The first ``HIPPO_CASES`` shipped cases with labels corrupted by the benchmark's own function, planned and
    preprocessed (lite plans); returns (corrupted case -> type and Dice to the clean label, env)."""
    corrupt_dataset = _label_audit().corrupt_dataset
    clean = root / "clean"
    (clean / "imagesTr").mkdir(parents=True)
    (clean / "labelsTr").mkdir()
    for label in sorted((HIPPO / "labelsTr").iterdir())[:HIPPO_CASES]:
        case = label.name.removesuffix(".nii.gz")
        shutil.copy(HIPPO / "imagesTr" / f"{case}_0000.nii.gz", clean / "imagesTr")
        shutil.copy(label, clean / "labelsTr")
    meta = json.loads((HIPPO / "dataset.json").read_text())
    (clean / "dataset.json").write_text(json.dumps({**meta, "numTraining": HIPPO_CASES, "name": HIPPO_DATASET}))
    corrupted = corrupt_dataset(clean, root / "raw" / HIPPO_DATASET, seed, HIPPO_FRACTION, HIPPO_TYPES, radius=2)
    env = dict(_env(root), NNUNET_DIET_FINAL_VALIDATION="0", NNUNET_DIET_PLOT_EVERY="100")
    _run([BIN / "nnUNetv2_plan_and_preprocess", "-d", "986", "-c", "3d_fullres", "-np", "1", "-npfp", "1"], env)
    _run([BIN / "nnunet-diet", "lite-plans", "-d", "986", "--features", "8", "--max-features", "32"], env)
    return corrupted, env


def _hippo_train(root: Path, env: dict, trainer: str = HIPPO_TRAINER) -> Path:
    """One short scoring run of the DAD trainer on every case (fold 'all', exact mode every epoch)."""
    _run([BIN / "nnUNetv2_train", "986", "3d_fullres", "all", "-tr", trainer, "-p", "nnUNetPlans_lite", "-device",
          "cpu"], dict(env, nnUNet_n_proc_DA="0"))
    return root / "res" / HIPPO_DATASET / f"{trainer}__nnUNetPlans_lite__3d_fullres" / "fold_all"


def test_audit_puts_translated_and_swapped_labels_first_by_dad(tmp_path):
    """Non-empty wrong labels, ranked by DAD alone (not by the empty-label rule), after 100 iterations;
    the tolerance (HIPPO_HEAD, HIPPO_ALL_WITHIN) is the measured one above."""
    corrupted, env = _hippo_prepare(tmp_path)
    assert sorted(v["type"] for v in corrupted.values()) == ["swapped", "translated", "translated"]
    assert all(v["dice_to_clean"] < 0.5 for v in corrupted.values()), corrupted
    for attempt in range(2):
        fold = _hippo_train(tmp_path, env)
        _run([BIN / "nnunet-diet", "audit", fold], env)
        table = pd.read_csv(fold / "dad" / "audit.csv", dtype={"id": str, "reason": str})
        learned = table.loc[~table["id"].isin(list(corrupted)), "dad"].median()
        print(f"scoring run {attempt + 1}: median DAD of the clean cases {learned:.3f}")
        if learned >= HIPPO_LEARNED:
            break
        shutil.rmtree(fold)  # nothing learned in 100 iterations: train again from scratch
    assert learned >= HIPPO_LEARNED, f"the clean cases were not learned in two runs: median DAD {learned:.3f}"
    reasons = table.set_index("id")["reason"].fillna("")
    assert len(table) == HIPPO_CASES
    for case in corrupted:
        assert not reasons[case].startswith("no foreground"), (case, reasons[case])  # DAD put it there
    ranks = {case: int(table.index[table["id"] == case][0]) + 1 for case in corrupted}
    print("corrupted cases' audit ranks:", ranks, {c: corrupted[c]["type"] for c in corrupted})
    head = table[["id", "dad", "reason"]].head(HIPPO_ALL_WITHIN).to_string()
    assert sum(rank <= HIPPO_HEAD for rank in ranks.values()) >= 2, (ranks, head)
    assert max(ranks.values()) <= HIPPO_ALL_WITHIN, (ranks, head)
    assert list(table["id"]) == list(table.sort_values(["dad", "id"])["id"])  # the order is DAD's
    # label_audit.py validates a scoring run later (nnUNetv2_train --val, for cleanlab), and that writes a training
    # log of its own with no epochs: the benchmark's compute figures must still read the training's epoch times
    _run([BIN / "nnUNetv2_train", "986", "3d_fullres", "all", "-tr", HIPPO_TRAINER, "-p", "nnUNetPlans_lite",
          "-device", "cpu", "--val"], dict(env, NNUNET_DIET_FINAL_VALIDATION="1", nnUNet_n_proc_DA="0"))
    assert len(list(fold.glob("training_log_*.txt"))) == 2
    seconds = _label_audit().epoch_seconds(fold)
    assert len(seconds) == 10 and all(s > 0 for s in seconds)
