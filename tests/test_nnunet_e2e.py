"""End to end with the real nnU-Net CLIs on CPU: plan and preprocess 10 real hippocampus cases, train
a short nnUNetTrainerDAD variant on lite plans, check the records, prune the split file, retrain on the
pruned fold, and resume a killed run with --c."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from nnunet_diet.core.dad import dad_trajectory
from nnunet_diet.core.store import DynamicsStore

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parent.parent / "nnunet_diet" / "examples" / "hippocampus40"
DATASET = "Dataset991_Hippo10"
N_CASES = 10


def _env(root: Path, **extra) -> dict:
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
               nnUNet_results=str(root / "res"), nnUNet_def_n_proc="1",
               NNUNET_DIET_WINDOW="2", OMP_NUM_THREADS="2")
    env["nnUNet_extTrainer"] = subprocess.run([BIN / "nnunet-diet", "trainer-path"], capture_output=True,
                                              text=True, check=True).stdout.strip()
    env.update(extra)
    return env


def _run(args, env, check=True, timeout=600):
    proc = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _train(env, fold, trainer="nnUNetTrainerDAD_6epochs_3iters", *extra, check=True):
    env = dict(env, nnUNet_n_proc_DA="0")  # augmentation in-process: no worker processes on 2 cores
    return _run([BIN / "nnUNetv2_train", "991", "3d_fullres", fold, "-tr", trainer, "-p", "nnUNetPlans_lite",
                 "-device", "cpu", *extra], env, check=check)


def _fold_folder(root: Path, fold, trainer="nnUNetTrainerDAD_6epochs_3iters") -> Path:
    return root / "res" / DATASET / f"{trainer}__nnUNetPlans_lite__3d_fullres" / f"fold_{fold}"


@pytest.fixture(scope="module")
def nnunet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet")
    raw = root / "raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    cases = sorted(p.name for p in (EXAMPLE / "labelsTr").iterdir())[:N_CASES]
    for name in cases:
        case = name.removesuffix(".nii.gz")
        shutil.copy(EXAMPLE / "imagesTr" / f"{case}_0000.nii.gz", raw / "imagesTr")
        shutil.copy(EXAMPLE / "labelsTr" / name, raw / "labelsTr")
    meta = json.loads((EXAMPLE / "dataset.json").read_text())
    meta["numTraining"] = N_CASES
    (raw / "dataset.json").write_text(json.dumps(meta))
    env = _env(root)
    _run([BIN / "nnUNetv2_plan_and_preprocess", "-d", "991", "-c", "3d_fullres", "-np", "1", "-npfp", "1"], env)
    _run([BIN / "nnunet-diet", "lite-plans", "-d", "991", "--features", "4", "--max-features", "32"], env)
    return root


@pytest.fixture(scope="module")
def trained(nnunet_root):
    """Fold 0 trained for 6 epochs (3 windows of 2) with the DAD trainer, stop rule off."""
    proc = _train(_env(nnunet_root, NNUNET_DIET_STOP="0"), 0)
    return nnunet_root, proc


def test_training_records_every_case_and_writes_outputs(trained):
    root, proc = trained
    dad = _fold_folder(root, 0) / "dad"
    splits = json.loads((root / "pre" / DATASET / "splits_final.json").read_text())
    store = DynamicsStore.load(dad / "dynamics.npz")
    assert sorted(store.ids) == sorted(splits[0]["train"])
    assert store.names == ["dice", "el2n", "el2nx"] and store.n_epochs == 6
    seen = np.isfinite(store["el2n"])
    assert seen.any(axis=0).all()  # every epoch recorded some cases
    # batch 2 x 3 iterations = 6 draws per epoch from 8 cases: some cases are unseen (NaN), never 0-filled
    assert (seen.sum(axis=0) <= 6).all()
    assert np.all((store["el2n"][seen] >= 0) & (store["el2n"][seen] <= np.sqrt(2)))
    table = pd.read_csv(dad / "scores.csv")
    assert list(table.columns) == ["id", "dad", "sigma", "region", "dad_rank", "el2n", "el2nx"]
    assert sorted(table["id"]) == sorted(store.ids)
    summary = json.loads((dad / "summary.json").read_text())
    assert summary["epochs_trained"] == 6 and summary["num_epochs"] == 6 and summary["dad_window"] == 2
    assert len(summary["moving_distance"]) == 3
    for png in ("moving_distance.png", "data_map.png"):
        assert (dad / png).stat().st_size > 1000
    log = next(_fold_folder(root, 0).glob("training_log_*.txt")).read_text()
    assert "nnunet-diet DAD settings: window=2" in log and "stop=False" in log
    assert log.count("DAD window ending at epoch") == 3
    assert [line.split(": ")[1].split()[-1] for line in log.splitlines() if "nnunet-diet epoch" in line] == \
        [f"{e}/6" for e in range(1, 7)]  # the trainer's one line per epoch
    assert "nnunet-diet epoch 6/6: train loss" in proc.stdout  # also on the console
    assert plt.imread(_fold_folder(root, 0) / "progress.png").shape[:2] == (7200, 3000)  # with the DAD panel
    assert (_fold_folder(root, 0) / "checkpoint_final.pth").is_file()


def test_prune_appends_a_fold_and_nnunet_trains_on_it(trained):
    root, _ = trained
    env = _env(root)
    split_file = root / "pre" / DATASET / "splits_final.json"
    before = json.loads(split_file.read_text())
    prune = [BIN / "nnunet-diet", "prune", "-d", "991", "-c", "3d_fullres", "-f", "0", "-tr",
             "nnUNetTrainerDAD_6epochs_3iters", "-p", "nnUNetPlans_lite", "--rate", "0.4"]
    dry = _run(prune + ["--dry-run"], env)
    assert "append fold 5" in dry.stdout and "dry run: nothing written" in dry.stdout
    assert json.loads(split_file.read_text()) == before
    _run(prune, env)
    after = json.loads(split_file.read_text())
    assert after[:5] == before and len(after) == 6
    assert after[5]["val"] == before[0]["val"]
    assert set(after[5]["train"]) < set(before[0]["train"]) and len(after[5]["train"]) == 5  # ceil(0.6 x 8)
    assert list(split_file.parent.glob("splits_final.json.*.bak"))
    _train(_env(root, NNUNET_DIET_STOP="0"), 5, "nnUNetTrainerDAD_5epochs_5iters")
    retrained = DynamicsStore.load(_fold_folder(root, 5, "nnUNetTrainerDAD_5epochs_5iters") / "dad" / "dynamics.npz")
    assert sorted(retrained.ids) == sorted(after[5]["train"])  # nnU-Net trained on the pruned list


@pytest.mark.parametrize(
    "args, message",
    [
        (["-d", "999", "-f", "0"], "unknown dataset '999'"),
        (["-d", "991", "-f", "9"], "fold 9 does not exist"),
        (["-d", "991", "-f", "0", "--rate", "1.5"], r"rate must be in (0, 1), got 1.5"),
        (["-d", "991", "-f", "1"], "no such scores file"),
        (["-d", "991", "-f", "0", "--scores", "{bad_ids}"], "id(s) are not cases of Dataset991_Hippo10"),
        (["-d", "991", "-f", "0", "-c", "5d"], "no configuration '5d'"),
        (["-d", "991", "-f", "0", "-c", "2d"], "nnUNetPlans_2d: no preprocessed data for this configuration"),
    ],
)
def test_prune_bad_input_writes_nothing(trained, tmp_path, args, message):
    root, _ = trained
    split_file = root / "pre" / DATASET / "splits_final.json"
    before = split_file.read_text()
    bad_ids = tmp_path / "bad.csv"
    bad_ids.write_text("id,dad\nhippocampus_999,0.5\n")
    proc = _run([BIN / "nnunet-diet", "prune", "-tr", "nnUNetTrainerDAD_6epochs_3iters", "-p", "nnUNetPlans_lite",
                 *[a.format(bad_ids=bad_ids) for a in args]], _env(root), check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert split_file.read_text() == before


def test_prune_rejects_a_malformed_split_file(trained):
    root, _ = trained
    split_file = root / "pre" / DATASET / "splits_final.json"
    good = split_file.read_text()
    try:
        split_file.write_text('{"train": "oops"}')
        proc = _run([BIN / "nnunet-diet", "prune", "-d", "991", "-f", "0", "-tr", "nnUNetTrainerDAD_6epochs_3iters",
                     "-p", "nnUNetPlans_lite"], _env(root), check=False)
        assert proc.returncode == 2 and "malformed split file" in proc.stderr
        assert split_file.read_text() == '{"train": "oops"}'
    finally:
        split_file.write_text(good)


# nnUNetv2_train whose process is killed (SIGKILL) half-way through writing its 4th checkpoint_latest
KILLED_WRITING_A_CHECKPOINT = """
import io, os, signal, sys, torch
from nnunetv2.run.run_training import run_training_entry
save, written = torch.save, []
def save_and_die_on_the_4th_latest(obj, f, *args, **kwargs):
    if "checkpoint_latest" in str(f):
        written.append(f)
        if len(written) == 4:
            buffer = io.BytesIO()
            save(obj, buffer)
            with open(f, "wb") as fh:
                fh.write(buffer.getvalue()[: buffer.tell() // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    save(obj, f, *args, **kwargs)
torch.save = save_and_die_on_the_4th_latest
sys.argv[0] = "nnUNetv2_train"
run_training_entry()
"""


def test_killed_while_writing_a_checkpoint_continue_keeps_records_without_gaps_or_duplicates(nnunet_root):
    root = nnunet_root
    env = _env(root, NNUNET_DIET_STOP="0", nnUNet_n_proc_DA="0")
    trainer = "nnUNetTrainerDAD_10epochs_3iters"
    folder = _fold_folder(root, 1, trainer)
    args = ["991", "3d_fullres", "1", "-tr", trainer, "-p", "nnUNetPlans_lite", "-device", "cpu"]
    killed = _run([sys.executable, "-c", KILLED_WRITING_A_CHECKPOINT, *args], env, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = DynamicsStore.load(folder / "dad" / "dynamics.npz")
    assert before.n_epochs == 4  # epoch 3 recorded, then killed in its checkpoint: the last one is epoch 2's
    _run([BIN / "nnUNetv2_train", *args, "--c"], env)
    after = DynamicsStore.load(folder / "dad" / "dynamics.npz")
    assert after.n_epochs == 10
    assert np.isfinite(after["el2n"]).any(axis=0).all()  # no gap
    assert (np.isfinite(after["el2n"]).sum(axis=0) <= 6).all()  # no epoch recorded twice (6 draws an epoch)
    # resumed from epoch 2's checkpoint: epoch 3 is trained and recorded again, every earlier epoch kept
    rows = after.index_of(before.ids)
    np.testing.assert_array_equal(after["el2n"][rows, :3], before["el2n"][:, :3])
    log = "".join(p.read_text() for p in sorted(folder.glob("training_log_*.txt")))
    assert log.count("nnunet-diet DAD settings") == 2
    assert (folder / "checkpoint_final.pth").is_file() and not list(folder.glob("*.partial"))


def test_stop_rule_ends_the_run_and_continue_does_not_train_on(nnunet_root):
    # absolute L >= 0 and a 0.999 threshold: the rule fires at the first window that is not a new maximum
    env = _env(nnunet_root, NNUNET_DIET_ABSOLUTE="1", NNUNET_DIET_THRESHOLD="0.999")
    trainer = "nnUNetTrainerDADAdam_20epochs_3iters"
    folder = _fold_folder(nnunet_root, 2, trainer)
    _train(env, 2, trainer)
    state = json.loads((folder / "dad" / "state.json").read_text())
    summary = json.loads((folder / "dad" / "summary.json").read_text())
    store = DynamicsStore.load(folder / "dad" / "dynamics.npz")
    stop = state["stop_epoch"]
    assert stop is not None and store.n_epochs == stop + 1 < 20
    assert summary["stopped_early"] and summary["stop_epoch"] == stop and summary["epochs_trained"] == stop + 1
    assert (folder / "checkpoint_final.pth").is_file() and not (folder / "checkpoint_latest.pth").exists()
    traj = dad_trajectory(store["dice"], 2, absolute=True, threshold=0.999)
    assert traj.stop_epoch == stop  # the core, run on the saved records, agrees with the trainer
    _train(env, 2, trainer, "--c")
    again = DynamicsStore.load(folder / "dad" / "dynamics.npz")
    assert again.n_epochs == store.n_epochs
    np.testing.assert_array_equal(again["dice"], store["dice"])
    log = "".join(p.read_text() for p in sorted(folder.glob("training_log_*.txt")))
    assert f"DAD stop rule fired at epoch {stop}: not training on" in log


def test_killed_after_the_stop_before_its_checkpoint_continue_trains_to_the_stop_again(nnunet_root):
    # the stop is written to state.json at the end of the stop epoch's training part; a kill during its
    # validation leaves checkpoint_latest one epoch behind: --c must not stop on that older model
    import torch

    env = _env(nnunet_root, NNUNET_DIET_ABSOLUTE="1", NNUNET_DIET_THRESHOLD="0.999")
    trainer = "nnUNetTrainerDADAdam_20epochs_3iters"
    folder = _fold_folder(nnunet_root, 3, trainer)
    _train(env, 3, trainer)
    stop = json.loads((folder / "dad" / "state.json").read_text())["stop_epoch"]
    assert stop is not None and stop < 19
    checkpoint = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    checkpoint["current_epoch"] = stop  # as saved at the end of epoch stop - 1
    checkpoint["logging"] = {k: v[:stop] for k, v in checkpoint["logging"].items()}
    torch.save(checkpoint, folder / "checkpoint_latest.pth")
    (folder / "checkpoint_final.pth").unlink()
    _train(env, 3, trainer, "--c")
    log = "".join(p.read_text() for p in sorted(folder.glob("training_log_*.txt")))
    assert f"the stop at epoch {stop} is past the checkpoint (epoch {stop})" in log
    summary = json.loads((folder / "dad" / "summary.json").read_text())
    store = DynamicsStore.load(folder / "dad" / "dynamics.npz")
    final = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    new_stop = summary["stop_epoch"]
    assert new_stop is not None and new_stop >= stop  # trained on from the checkpoint until the rule fired
    assert store.n_epochs == summary["epochs_trained"] == new_stop + 1 == final["current_epoch"]
    assert np.isfinite(store["dice"][:, stop]).any()  # the stop epoch was trained and recorded again


def test_pipeline_command_runs_every_step(nnunet_root, tmp_path):
    raw = tmp_path / "Hippo10"
    shutil.copytree(nnunet_root / "raw" / DATASET, raw)
    env = {k: v for k, v in _env(nnunet_root).items() if not k.startswith("nnUNet_")}
    env["nnUNet_n_proc_DA"] = "0"  # augmentation in-process: four trainings without worker processes
    env["OMP_NUM_THREADS"] = "1"  # two trainings at a time on the test machine's cores
    proc = _run([BIN / "nnunet-diet", "pipeline", "-o", tmp_path / "out", "--raw", raw, "--dataset-id", "992",
                 "--epochs", "6", "--iterations", "3", "--window", "2", "--retrain-epochs", "5", "--no-random",
                 "--repeat-full"], env,
                timeout=1200)
    out = proc.stdout
    for step in ("plan and preprocess", "lite plans", "train nnUNetTrainerDADAdam_6epochs_3iters", "prune 40%",
                 "retrain on fold 0 (full)", "retrain on fold 5 (full, trained again)",
                 "retrain on fold 6 (DAD ambiguous, 40% pruned)", "HTML report", "moving distance L per window",
                 "trainings: the scoring run alone with 1 torch thread (OMP_NUM_THREADS), then the retrainings 2 "
                 "at a time, 1 torch thread each"):
        assert step in out
    assert out.count("nnunet-diet epoch ") == 6 + 3 * 5  # the trainer's line per epoch, streamed from the logs
    for label, epochs in (("scoring", 6), ("full", 5), ("full again", 5), ("DAD", 5)):  # tagged by training
        assert out.count(f"   [{label}] nnunet-diet epoch ") == epochs, label
    # the scoring run alone, then the retrainings two at a time: the pruned list started beside the full list
    assert out.index("[scoring] done in") < out.index("== retrain on fold 0 (full)")
    assert out.index("== retrain on fold 6 (DAD ambiguous, 40% pruned)") < out.index("[full] done in")
    assert min(out.index("[full] done in"), out.index("[DAD] done in")) < out.index("== retrain on fold 5 (full, "
                                                                                "trained again)")  # in the freed slot
    assert out.count("] nnunet-diet validation: mean foreground Dice ") == 3  # each retraining's final validation
    assert "   [scoring] nnunet-diet validation: nnU-Net's final validation skipped" in out
    assert "at random" not in out
    results = tmp_path / "out" / "nnUNet_results" / "Dataset992_Hippo10"
    fold0 = results / "nnUNetTrainerDADAdam_6epochs_3iters__nnUNetPlans_lite__3d_fullres" / "fold_0"
    summary = json.loads((fold0 / "dad" / "summary.json").read_text())
    assert f"trained {summary['epochs_trained']} of 6 epochs (compute saved {summary['compute_saved']:.0%} of" in out
    settings = summary["settings"]  # the pipeline's stop setting reached the scoring run (and only it)
    assert (settings["stop_rule"], settings["threshold"], settings["patience"], settings["exact_every"]) == \
        ("spearman", 0.8, 2, 1)
    assert "stop rule of the scoring run: spearman, stops at Spearman >= 0.8 in 2 windows in a row" in out
    assert f"time: {summary['epochs_trained']} epochs took" in out and summary["seconds"]["exact_mode"] > 0
    assert settings["final_validation"] is False and not (fold0 / "validation").exists()  # nothing read it
    assert "nnU-Net's final validation skipped (NNUNET_DIET_FINAL_VALIDATION=0)" in (
        tmp_path / "out" / "logs" / "train_fold0.log").read_text()
    assert settings["plot_every"] == 2 and (fold0 / "progress.png").is_file()  # redrawn once a window, and at the end
    splits = json.loads((tmp_path / "out" / "nnUNet_preprocessed" / "Dataset992_Hippo10" /
                         "splits_final.json").read_text())
    assert splits[5] == splits[0] and len(splits[6]["train"]) == 5 and splits[6]["val"] == splits[0]["val"]
    table = out[out.index("training list"):out.index("run-to-run spread")].splitlines()
    assert table[0].split() == ["training", "list", "fold", "cases", "Dice", "anterior", "posterior"]
    retrained = results / "nnUNetTrainerDADAdam_5epochs_3iters__nnUNetPlans_lite__3d_fullres"
    assert [line.split()[0] for line in table[1:4]] == ["full", "DAD", "full,"]
    for line, fold, cases in zip(table[1:4], (0, 6, 5), (8, 5, 8)):  # nnU-Net's own validation of each fold
        validation = json.loads((retrained / f"fold_{fold}" / "validation" / "summary.json").read_text())
        numbers = line.split()[-5:]
        assert numbers[:2] == [str(fold), str(cases)]
        assert float(numbers[2]) == pytest.approx(validation["foreground_mean"]["Dice"], abs=6e-4)
        assert float(numbers[3]) == pytest.approx(validation["mean"]["1"]["Dice"], abs=6e-4)
        assert json.loads((retrained / f"fold_{fold}" / "dad" / "summary.json").read_text())["settings"][
            "exact_every"] == 0
    assert f"report: {fold0 / 'dad' / 'report.html'}" in out and (fold0 / "dad" / "report.html").is_file()
    assert (fold0 / "dad" / "scores.csv").is_file() and (fold0 / "dad" / "data_map.png").is_file()


def test_exact_mode_scores_every_case_on_fixed_patches(nnunet_root):
    env = _env(nnunet_root, NNUNET_DIET_STOP="0", NNUNET_DIET_EXACT_EVERY="2")
    _train(env, 3)
    folder = _fold_folder(nnunet_root, 3)
    store = DynamicsStore.load(folder / "dad" / "dynamics.npz")
    assert store.names == ["dice", "el2n", "el2nx", "dice_exact", "el2n_exact", "el2nx_exact"]
    exact = np.isfinite(store["el2n_exact"])
    assert exact[:, [1, 3, 5]].all() and not exact[:, [0, 2, 4]].any()  # every case, every 2nd epoch
    assert np.isfinite(store["dice_exact"][:, 5]).sum() >= len(store.ids) - 1  # a patch can miss all foreground
    summary = json.loads((folder / "dad" / "summary.json").read_text())
    assert summary["dad_series"] == "dice_exact" and summary["settings"]["exact_every"] == 2
    table = pd.read_csv(folder / "dad" / "scores.csv")
    traj = dad_trajectory(store["dice_exact"], 2)
    np.testing.assert_allclose(table["dad"], traj.dad[-1], rtol=1e-5)  # DAD comes from the exact series
    assert summary["el2n_series"] == "el2n_exact" and summary["el2nx_series"] == "el2nx_exact"  # and EL2N too
    np.testing.assert_allclose(table["el2n"], np.nanmean(store["el2n_exact"], axis=1), rtol=1e-5)
    log = next(folder.glob("training_log_*.txt")).read_text()
    assert log.count("DAD exact mode: 8 cases evaluated on fixed patches") == 3


def test_meddel_embeds_preprocessed_cases_with_the_trained_encoder(trained, tmp_path):
    """MedDEL's nnU-Net source: the trained fold-0 model's global-average-pooled bottleneck per case."""
    from nnunet_diet.embed.store import load_embeddings

    root, _ = trained
    model = _fold_folder(root, 0).parent
    pre = root / "pre" / DATASET / "nnUNetPlans_3d_fullres"
    _run([BIN / "nnunet-diet", "embed", "--preprocessed", pre, "--source", "nnunet", "--model", model,
          "--fold", "0", "-o", tmp_path / "emb", "--no-progress", "--dtype", "float32"], _env(root))
    emb = load_embeddings(tmp_path / "emb")
    plans = json.loads((root / "pre" / DATASET / "nnUNetPlans_lite.json").read_text())
    deepest = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["features_per_stage"][-1]
    assert emb.vectors.shape == (N_CASES, deepest) and np.isfinite(emb.vectors).all()
    labels = root / "raw" / DATASET / "labelsTr"
    assert list(emb.ids) == sorted(p.name.removesuffix(".nii.gz") for p in labels.iterdir())
    assert emb.meta["source"] == "nnunet"
    # the raw dataset through nnU-Net's own inference preprocessing with the model's plans: the same vectors
    _run([BIN / "nnunet-diet", "embed", "--raw", root / "raw" / DATASET, "--source", "nnunet", "--model", model,
          "--fold", "0", "-o", tmp_path / "emb_raw", "--no-progress", "--dtype", "float32"], _env(root))
    raw = load_embeddings(tmp_path / "emb_raw")
    assert list(raw.ids) == list(emb.ids) and raw.meta["input"] == "raw, nnU-Net preprocessing"
    np.testing.assert_allclose(raw.vectors, emb.vectors, rtol=1e-3, atol=1e-4)
    _run([BIN / "nnunet-diet", "meddel", tmp_path / "emb", "--fraction", "0.5", "-o", tmp_path / "keep.csv"],
         _env(root))
    keep = pd.read_csv(tmp_path / "keep.csv")
    assert len(keep) == N_CASES and 0 < keep["keep"].sum() < N_CASES


MIXIN_TRAINERS = '''
import torch
from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerNoDeepSupervision import (
    nnUNetTrainerNoDeepSupervision,
)

from nnunet_diet.nnunet.trainer import DADRecordingMixin


class nnUNetTrainerDADNoDS_4epochs_3iters(DADRecordingMixin, nnUNetTrainerNoDeepSupervision):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 4, 3, 1
'''


def test_recording_mixin_adds_dad_to_another_nnunet_variant(nnunet_root, tmp_path):
    """docs/nnunet.md's recipe: a user's own trainer folder, listed in nnUNet_extTrainer beside ours, puts
    DADRecordingMixin in front of nnU-Net's NoDeepSupervision variant; nnU-Net finds it, trains it (single
    output tensor, no deep supervision) and the mixin records every epoch."""
    ext = tmp_path / "my_trainers"
    ext.mkdir()
    (ext / "my_dad_trainers.py").write_text(MIXIN_TRAINERS)
    env = _env(nnunet_root, NNUNET_DIET_STOP="0")
    env["nnUNet_extTrainer"] += os.pathsep + str(ext)
    trainer = "nnUNetTrainerDADNoDS_4epochs_3iters"
    _train(env, 0, trainer)
    folder = _fold_folder(nnunet_root, 0, trainer)
    store = DynamicsStore.load(folder / "dad" / "dynamics.npz")
    splits = json.loads((nnunet_root / "pre" / DATASET / "splits_final.json").read_text())
    assert sorted(store.ids) == sorted(splits[0]["train"]) and store.n_epochs == 4
    assert np.isfinite(store["el2n"]).any(axis=0).all()
    assert store.metadata["trainer"] == trainer
    import torch

    checkpoint = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == trainer


CLEANLAB_TRAINER = "nnUNetTrainerDAD_5epochs_3iters"  # the shortest schedule: only the validation softmax is read


@pytest.fixture(scope="module")
def cross_validated(trained):
    """Folds 1-4 of nnU-Net's split trained briefly with ``--npz``, two at a time with 1 thread each: nnU-Net's
    own out-of-fold softmax (``fold_k/validation/<case>.npz``) of every training case of the audited fold 0."""
    root, _ = trained
    env = _env(root, NNUNET_DIET_STOP="0", NNUNET_DIET_PLOT_EVERY="100", OMP_NUM_THREADS="1", nnUNet_n_proc_DA="0")
    for pair in ((1, 2), (3, 4)):
        procs = [subprocess.Popen([str(a) for a in (BIN / "nnUNetv2_train", "991", "3d_fullres", fold, "-tr",
                                                    CLEANLAB_TRAINER, "-p", "nnUNetPlans_lite", "-device", "cpu",
                                                    "--npz")],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for fold in pair]
        for proc in procs:
            out = proc.communicate(timeout=600)[0]
            assert proc.returncode == 0, out[-3000:]
    return root, _fold_folder(root, 0, CLEANLAB_TRAINER).parent


def test_audit_scores_every_case_with_cleanlab_on_nnunets_out_of_fold_softmax(cross_validated, tmp_path):
    rank = pytest.importorskip("cleanlab.segmentation.rank")
    import SimpleITK as sitk

    root, run = cross_validated
    out = tmp_path / "audit.csv"
    proc = _run([BIN / "nnunet-diet", "audit", _fold_folder(root, 0), "--cleanlab", run, "-o", out], _env(root))
    assert f"cleanlab label quality from the out-of-fold predictions in {run}" in proc.stdout
    table = pd.read_csv(out).set_index("id")
    splits = json.loads((root / "pre" / DATASET / "splits_final.json").read_text())
    assert sorted(table.index) == sorted(splits[0]["train"]) and table["cleanlab"].notna().all()
    for case in splits[0]["train"]:
        # the fold that validated the case (nnU-Net's split), its softmax as nnU-Net wrote it, the label read here
        k = next(k for k in range(1, 5) if case in splits[k]["val"])
        with np.load(run / f"fold_{k}" / "validation" / f"{case}.npz") as npz:
            probs = npz["probabilities"]
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "raw" / DATASET / "labelsTr" / f"{case}.nii.gz")))
        assert probs.shape == (3, *label.shape)
        np.testing.assert_allclose(probs.sum(axis=0), 1, atol=1e-3)  # a softmax over the three labels
        # cleanlab's softmin runs over all voxels of one image: two foldings of the volume give the same score
        scores = [rank.get_label_quality_scores(label.reshape(1, *shape).astype(np.int64),
                                                probs.reshape(1, 3, *shape), verbose=False)[0][0]
                  for shape in ((-1, label.shape[-1]), (label.shape[0], -1))]
        assert scores[0] == pytest.approx(scores[1], rel=1e-5)
        assert table.loc[case, "cleanlab"] == pytest.approx(scores[0], rel=1e-5), case  # the CSV keeps 6 digits


def test_cleanlab_rejects_predictions_with_another_class_count(cross_validated, tmp_path):
    pytest.importorskip("cleanlab")
    root, run = cross_validated
    copy = tmp_path / DATASET / run.name  # the same dataset name, so only the class count is wrong
    for name in ("plans.json", "dataset.json"):
        copy.mkdir(parents=True, exist_ok=True)
        shutil.copy(run / name, copy / name)
    for k in range(1, 5):
        shutil.copytree(run / f"fold_{k}" / "validation", copy / f"fold_{k}" / "validation",
                        ignore=shutil.ignore_patterns("*.nii.gz", "*.json"))
    npz = sorted((copy / "fold_2" / "validation").glob("*.npz"))[0]
    with np.load(npz) as data:
        probs = data["probabilities"]
    np.savez_compressed(npz, probabilities=probs[:2])  # anterior / posterior merged away: two classes
    out = tmp_path / "audit.csv"
    proc = _run([BIN / "nnunet-diet", "audit", _fold_folder(root, 0), "--cleanlab", copy, "-o", out], _env(root),
                check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"nnunet-diet audit: error: {npz}: 2 classes, the dataset has 3: "
                                                "predictions of another dataset?"]
    assert not out.exists()
