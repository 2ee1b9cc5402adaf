"""EVA harness on the shipped real PneumoniaMNIST subset (300 / 100 / 100 images, 28 x 28, 2 classes):
a tiny 4-epoch run records every sample every epoch, scores are finite, coresets have the right size
and class shares, retraining runs, an interrupted run resumes to the same dynamics, and bad input
ends with clear errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import nnunet_diet
from nnunet_diet.cli.main import main
from nnunet_diet.core.errors import DietError
from nnunet_diet.core.scores import ScoreConfig
from nnunet_diet.medmnist import METHODS, Coreset, TrainConfig, load_medmnist, retrain, score_run, select_coreset, train
from nnunet_diet.medmnist.recorder import SERIES
from nnunet_diet.medmnist.config import AUTO_BALANCE
from nnunet_diet.medmnist.selection import FLOORS, coreset_shift, resolve_floor

EXAMPLES = Path(nnunet_diet.__file__).parent / "examples"
FLAG = "pneumoniamnist_subset"
TINY = TrainConfig(epochs=4, batch_size=64, width=4, layers=(1, 1, 1, 1))  # 300 = 4 x 64 + 44: a partial batch
WINDOWS = ScoreConfig(eva_early=(0, 2), eva_late=(2, 4), el2n_window=(0, 2))
TINY_ARGS = ["--epochs", "4", "--batch-size", "64", "--width", "4", "--layers", "1", "1", "1", "1", "--no-progress"]
WINDOW_ARGS = ["--eva-early", "0", "2", "--eva-late", "2", "4", "--el2n-window", "0", "2"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny models on a shared 2-core machine run several times faster than with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return load_medmnist(EXAMPLES, FLAG)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    return train(data, tmp_path_factory.mktemp("run"), TINY, progress=False)


@pytest.fixture(scope="module")
def scores(run):
    return score_run(run.out, WINDOWS)


def test_shipped_subset_is_real_pneumoniamnist(data):
    assert (len(data.train), len(data.val), len(data.test)) == (300, 100, 100)
    assert (data.n_channels, data.image_size, data.n_classes) == (1, 28, 2)
    assert np.bincount(data.train.labels).tolist() == [77, 223]  # the official 1214 : 3494 share
    with np.load(EXAMPLES / f"{FLAG}.npz") as z:
        assert len(np.unique(z["train_indices"])) == 300 and z["train_indices"].max() < 4708


def test_run_records_every_sample_every_epoch(run, data):
    store = run.store
    assert (store.n_samples, store.n_epochs) == (300, 4)
    np.testing.assert_array_equal(store.ids, np.arange(300))
    np.testing.assert_array_equal(store.groups, data.train.labels.astype(str))
    for name in SERIES:
        assert np.isfinite(store[name]).all(), name  # the final partial batch too: no NaN, no silent zero
    p, err, correct, margin = store["p_true"], store["error_norm"], store["correct"], store["margin"]
    assert set(np.unique(correct)) <= {0.0, 1.0} and 0 < correct.mean() < 1
    # two classes: ||p - onehot|| = sqrt(2) (1 - p_y) and margin = 2 p_y - 1, exactly
    np.testing.assert_allclose(err, np.sqrt(2) * (1 - p), atol=1e-5)
    np.testing.assert_allclose(margin, 2 * p - 1, atol=1e-5)
    np.testing.assert_array_equal(correct == 1, margin > 0)
    assert run.train_probs.shape == (300, 2) and np.allclose(run.train_probs.sum(1), 1, atol=1e-5)
    history = pd.read_csv(run.out / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2, 3]
    np.testing.assert_allclose(history["train_acc"], correct.mean(0), atol=1e-6)
    assert 0 <= run.final_test_acc <= 1 and 0 <= run.best_test_acc <= 1 and 0 <= run.best_val_epoch < 4
    assert run.iterations == 4 * 5


def test_scores_are_finite(scores):
    assert len(scores) == 300
    for column in ("eva", "el2n", "forgetting", "aum", "entropy"):
        assert np.isfinite(scores[column]).all(), column
    assert (scores["eva"] > 0).any() and (scores["entropy"] >= 0).all()


@pytest.mark.parametrize("method", METHODS)
def test_coresets_have_the_right_size_and_class_shares(scores, method):
    ids = select_coreset(scores, method, 0.1, seed=1)
    assert len(ids) == 30 and len(np.unique(ids)) == 30 and set(ids) <= set(range(300))
    if method != "ccs":
        balanced = select_coreset(scores, method, 0.1, class_balance=True, seed=1)
        counts = scores.set_index("id").loc[balanced, "group"].value_counts()
        assert len(balanced) == 30 and abs(counts["0"] - 30 * 77 / 300) <= 1 and abs(counts["1"] - 30 * 223 / 300) <= 1
    if method in ("eva", "el2n", "entropy"):  # keep the highest
        kept = scores["id"].isin(ids)
        assert scores.loc[kept, method].min() >= scores.loc[~kept, method].max()


def test_retraining_on_a_coreset_under_both_schedules(run, scores):
    ids = select_coreset(scores, "eva", 0.1)
    same_epochs = retrain(run.out, Coreset("eva", 0.1, 0, ids), progress=False)
    assert (same_epochs.n_train, same_epochs.epochs, same_epochs.iterations) == (30, 4, 4)
    same_iterations = retrain(run.out, Coreset("eva", 0.1, 0, ids), schedule="iterations", progress=False)
    assert (same_iterations.epochs, same_iterations.iterations) == (20, run.iterations)
    for result in (same_epochs, same_iterations):
        assert 0 <= result.final_test_acc <= 1 and 0 <= result.best_test_acc <= 1
        assert (result.out / "kept.txt").read_text().split() == [str(i) for i in ids]


def test_an_interrupted_run_resumes_to_the_same_dynamics(run, data, tmp_path):
    def stop_after_second_epoch(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path, TINY, progress=False, on_epoch=stop_after_second_epoch)
    resumed = train(data, tmp_path, TINY, progress=False)
    for name in SERIES:
        np.testing.assert_allclose(resumed.store[name], run.store[name], atol=1e-5)
    assert resumed.final_test_acc == run.final_test_acc
    with pytest.raises(DietError, match="other settings"):
        train(data, tmp_path, TrainConfig(epochs=5, batch_size=64, width=4, layers=(1, 1, 1, 1)), progress=False)


def test_missing_file_names_the_expected_file(tmp_path):
    with pytest.raises(DietError, match=r"organamnist_64\.npz.*not found"):
        load_medmnist(tmp_path, "organamnist", 64)


def _write(path, data, **changes):
    arrays = {f"{s}_{k}": getattr(getattr(data, s), k) for s in ("train", "val", "test") for k in ("images", "labels")}
    arrays = {k: (v[:, 0] if k.endswith("images") else v[:, None]) for k, v in arrays.items()}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def test_wrong_keys_and_shapes_are_clear_errors(data, tmp_path):
    _write(tmp_path / "nokeys.npz", data, val_labels=None)
    with pytest.raises(DietError, match="missing keys val_labels"):
        load_medmnist(tmp_path, "nokeys")
    _write(tmp_path / "multilabel.npz", data, train_labels=np.zeros((300, 14), np.uint8))
    with pytest.raises(DietError, match="multi-label"):
        load_medmnist(tmp_path, "multilabel")
    _write(tmp_path / "short.npz", data, test_labels=data.test.labels[:50, None])
    with pytest.raises(DietError, match=r"test_labels has shape \(50, 1\) for 100 images"):
        load_medmnist(tmp_path, "short")
    _write(tmp_path / "small_64.npz", data)  # 28 x 28 images under a 64 x 64 name
    with pytest.raises(DietError, match="expected square 64 x 64"):
        load_medmnist(tmp_path, "small", 64)


def test_rgb_and_multiclass_files_load(data, tmp_path):
    rgb = {f"{s}_images": np.repeat(getattr(data, s).images[:, 0, :, :, None], 3, axis=-1)
           for s in ("train", "val", "test")}
    _write(tmp_path / "rgb.npz", data, **rgb, train_labels=(np.arange(300) % 5)[:, None].astype(np.uint8))
    loaded = load_medmnist(tmp_path, "rgb")
    assert (loaded.n_channels, loaded.n_classes) == (3, 5)


@pytest.mark.parametrize("rate", [0, 1.5])
def test_rate_outside_the_open_unit_interval_is_an_error(scores, rate):
    with pytest.raises(DietError, match=r"rate must be in \(0, 1\)"):
        select_coreset(scores, "eva", rate)


def test_window_beyond_the_trained_epochs_is_an_error(run):
    with pytest.raises(DietError, match=r"dynamics\.npz: EVA late window \[3, 6\) needs 6 epochs but only 4"):
        score_run(run.out, ScoreConfig(eva_early=(0, 2), eva_late=(3, 6), el2n_window=(0, 2)))
    with pytest.raises(DietError, match=r"EVA early window \[0, 10\) needs 10 epochs"):
        score_run(run.out)  # the paper's default windows need a longer run


def test_command_line_train_select_coreset_bench(tmp_path, capsys):
    data_args = ["--flag", FLAG, "--root", str(EXAMPLES)]
    run = tmp_path / "run"
    assert main(["medmnist", "train", *data_args, *TINY_ARGS, "--out", str(run)]) == 0
    assert main(["medmnist", "select", "--run", str(run), "--method", "eva", "--rate", "0.05", *WINDOW_ARGS]) == 0
    assert len((run / "coresets" / "eva_0.05_seed0.txt").read_text().split()) == 15
    assert main(["medmnist", "coreset", "--run", str(run), "--method", "random", "--rate", "0.05",
                 "--class-balance", "--no-progress", *WINDOW_ARGS]) == 0
    table = pd.read_csv(run / "coresets" / "results.csv")
    assert list(table["method"]) == ["full", "random"] and table["n_kept"].tolist() == [300, 15]
    bench = tmp_path / "bench"
    assert main(["medmnist", "bench", *data_args, *TINY_ARGS, *WINDOW_ARGS, "--methods", "eva", "ccs",
                 "--rates", "0.1", "--seeds", "0", "--out", str(bench)]) == 0
    results = pd.read_csv(bench / "results.csv")
    assert list(results["method"]) == ["full", "eva", "ccs"] and results["n_kept"].tolist() == [300, 30, 30]
    assert "| eva |" in (bench / "results.md").read_text()
    assert results["share_0"].iloc[0] == pytest.approx(77 / 300, abs=1e-6)
    np.testing.assert_allclose(results["full_share_0"], 77 / 300, atol=1e-6)
    assert "kept share of each class" in (bench / "results.md").read_text()
    capsys.readouterr()
    assert main(["medmnist", "train", "--flag", "nothere", "--root", str(tmp_path), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothere.npz" in err[0] and "not found" in err[0]


def test_coreset_from_a_meddel_keep_list(tmp_path, capsys):
    data_args = ["--flag", FLAG, "--root", str(EXAMPLES)]
    run = tmp_path / "run"
    assert main(["medmnist", "train", *data_args, *TINY_ARGS, "--out", str(run)]) == 0
    assert main(["embed", "--npz", str(EXAMPLES / f"{FLAG}.npz"), "-o", str(tmp_path / "emb"), "--no-progress"]) == 0
    keep = tmp_path / "meddel.csv"
    assert main(["meddel", str(tmp_path / "emb"), "--fraction", "0.2", "-o", str(keep)]) == 0
    kept = pd.read_csv(keep).query("keep == 1")["id"].sort_values().tolist()
    assert main(["medmnist", "coreset", "--run", str(run), "--keep-list", str(keep), "--no-progress"]) == 0
    table = pd.read_csv(run / "coresets" / "results.csv")
    assert table["method"].tolist() == ["full", "keep-meddel"] and table["n_kept"].tolist() == [300, len(kept)]
    assert table["rate"].iloc[1] == pytest.approx(len(kept) / 300, abs=1e-6)
    folder = next((run / "coresets").glob("keep-meddel_*_seed0_epochs"))
    assert [int(v) for v in (folder / "kept.txt").read_text().split()] == kept
    capsys.readouterr()
    frame = pd.read_csv(keep)
    for name, bad, message in [("short.csv", frame.iloc[:-1], "lists 299 of the run's 300 training rows"),
                               ("words.csv", frame.assign(id=frame["id"].astype(str).str.replace("7", "x")),
                                "ids must be training-row indices"),
                               ("outside.csv", frame.assign(id=frame["id"] + 5), "id 300 is not a training row"),
                               ("none.csv", frame.assign(keep=0), "keeps no sample")]:
        bad.to_csv(tmp_path / name, index=False)
        assert main(["medmnist", "coreset", "--run", str(run), "--keep-list", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert name in err and message in err, err
    assert main(["medmnist", "coreset", "--run", str(run), "--keep-list", str(keep), "--method", "eva"]) == 2
    assert "without --method" in capsys.readouterr().err
    assert main(["medmnist", "coreset", "--run", str(run)]) == 2
    assert "--keep-list" in capsys.readouterr().err


def test_select_prints_the_class_distribution_and_warns_on_a_shift(run, capsys):
    # EL2N's 10 % of the tiny run keeps the hardest images: almost only class 0 (normal)
    args = ["medmnist", "select", "--run", str(run.out), "--method", "el2n", "--rate", "0.1", *WINDOW_ARGS]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "full set" in out and "77 ( 25.7 %)" in out and "223 ( 74.3 %)" in out
    (warning,) = err.strip().splitlines()
    assert warning.startswith("warning: class 1 keeps") and "74.3 % of the full set" in warning
    assert main([*args, "--class-balance", "auto"]) == 0
    out, err = capsys.readouterr()
    assert "class balance auto: classes raised to half their share" in out and err == ""
    assert "18 ( 60.0 %)" in out and "12 ( 40.0 %)" in out  # class 1 floored at ceil(0.5 x 30 x 223 / 300)


def test_auto_class_balance_keeps_the_papers_selection_when_nothing_shifts(scores):
    paper = select_coreset(scores, "eva", 0.1)
    assert not coreset_shift(scores, paper).shifted
    np.testing.assert_array_equal(select_coreset(scores, "eva", 0.1, class_balance="auto"), paper)
    shifted = select_coreset(scores, "el2n", 0.1)
    assert coreset_shift(scores, shifted).shifted == ("1",)
    floor = select_coreset(scores, "el2n", 0.1, class_balance="floor")
    assert not coreset_shift(scores, floor).shifted
    # the floor only swaps the lowest-ranked class-0 samples for the best class-1 ones
    assert len(np.intersect1d(floor, shifted)) == 30 - (12 - 1)
    # auto is the recommended floor (docs/medmnist.md): floor-prune
    np.testing.assert_array_equal(select_coreset(scores, "el2n", 0.1, class_balance="auto"),
                                  select_coreset(scores, "el2n", 0.1, class_balance="floor-prune"))
    ccs = select_coreset(scores, "ccs", 0.1)
    np.testing.assert_array_equal(select_coreset(scores, "ccs", 0.1, class_balance="auto"), ccs)
    with pytest.raises(DietError, match="class balance must be one of off, on, floor, floor-prune, floor-strata, auto"):
        select_coreset(scores, "eva", 0.1, class_balance="yes")


def test_class_norm_ranks_within_each_class(scores):
    # z-scored within its class, EL2N no longer keeps only the hard class
    plain = coreset_shift(scores, select_coreset(scores, "el2n", 0.3)).kept_share[0]
    normed = coreset_shift(scores, select_coreset(scores, "el2n", 0.3, class_norm="zscore")).kept_share[0]
    assert abs(normed - 77 / 300) < abs(plain - 77 / 300)
    with pytest.raises(DietError, match="not to ccs"):
        select_coreset(scores, "ccs", 0.1, class_norm="zscore")


def test_keep_list_that_drops_a_class_is_reported(run, tmp_path, capsys):
    labels = run.store.groups
    keep = pd.DataFrame({"id": np.arange(300), "keep": ((labels == "1") & (np.arange(300) < 60)).astype(int)})
    keep.to_csv(tmp_path / "pneumonia_only.csv", index=False)
    assert main(["medmnist", "coreset", "--run", str(run.out), "--keep-list", str(tmp_path / "pneumonia_only.csv"),
                 "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "warning: class 0 vanishes from the coreset (25.7 % of the full set)" in err
    table = pd.read_csv(run.out / "coresets" / "results.csv")
    row = table[table["method"] == "keep-pneumonia_only"].iloc[0]
    assert row["share_0"] == 0 and row["share_1"] == 1 and row["class_shift"] == "0 vanishes"


def test_select_reports_the_class_column_and_a_group_only_when_named(run, tmp_path, capsys):
    csv = tmp_path / "scores.csv"
    score_run(run.out, WINDOWS).to_csv(csv, index=False)  # id, group (here the label), scores
    assert main(["select", str(csv), "--method", "el2n", "--keep", "0.1"]) == 0
    out, err = capsys.readouterr()
    assert len(out.split()) == 30 and err == ""  # a group (an nnU-Net table's centre) is not taken as the class
    assert main(["select", str(csv), "--method", "el2n", "--keep", "0.1", "--class-column", "group"]) == 0
    out, err = capsys.readouterr()
    assert len(out.split()) == 30  # the ids alone on stdout
    assert "per group:" in err and "warning: group 1 keeps" in err and "class" not in err
    assert main(["select", str(csv), "--method", "eva", "--keep", "0.1", "--class-column", "colour"]) == 2
    assert "--class-column 'colour': no such column" in capsys.readouterr().err
    # the table 'medmnist select' writes names the label 'class': reported without being asked
    assert main(["medmnist", "select", "--run", str(run.out), "--method", "el2n", "--rate", "0.1", *WINDOW_ARGS]) == 0
    capsys.readouterr()
    written = pd.read_csv(run.out / "scores.csv")
    assert "class" in written.columns and "group" not in written.columns
    assert main(["select", str(run.out / "scores.csv"), "--method", "el2n", "--keep", "0.1"]) == 0
    err = capsys.readouterr().err
    assert "per class:" in err and "warning: class 1 keeps 3.3 % of the coreset against 74.3 %" in err
    assert main(["select", str(run.out / "scores.csv"), "--method", "el2n", "--keep", "0.1", "--class-column",
                 "none"]) == 0
    assert capsys.readouterr().err == ""
    written.loc[4, "class"] = np.nan
    written.to_csv(tmp_path / "blank.csv", index=False)
    assert main(["select", str(tmp_path / "blank.csv"), "--method", "el2n", "--keep", "0.1"]) == 2
    assert "blank.csv: blank 'class' on line 6" in capsys.readouterr().err


def test_floor_settings_change_only_a_shifted_coreset(scores):
    paper = select_coreset(scores, "eva", 0.1)  # not shifted on the tiny run
    for balance in ("floor", "floor-prune", "floor-strata", "auto"):
        ids = select_coreset(scores, "eva", 0.1, class_balance=balance)
        np.testing.assert_array_equal(ids, paper)
        assert resolve_floor(scores, "eva", 0.1, ids, balance) == "off"
        ids = select_coreset(scores, "el2n", 0.1, class_balance=balance)  # EL2N's 10 % is shifted
        assert not coreset_shift(scores, ids).shifted
        assert resolve_floor(scores, "el2n", 0.1, ids, balance) == (AUTO_BALANCE if balance == "auto" else balance)
    assert len({tuple(select_coreset(scores, "el2n", 0.1, class_balance=b)) for b in FLOORS[:3]}) == 3
    # random has no score to prune or stratify by: each floor setting is the floor over a uniform order
    floor = select_coreset(scores, "random", 0.1, class_balance="floor", seed=2)
    np.testing.assert_array_equal(select_coreset(scores, "random", 0.1, class_balance="floor-strata", seed=2), floor)
