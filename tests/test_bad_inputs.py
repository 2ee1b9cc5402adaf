"""Bad input to every command, as a new user makes it: exit code 2, exactly one line on stderr naming the
file or option and the problem, no traceback, and nothing the user had changed (every file under the inputs'
folders hashed before and after; a failed command writes nothing at all).

The valid starting points are the shipped real files (nnunet_diet/examples): the hippocampus records, the
PneumoniaMNIST records and subset, the 40 hippocampus volumes, 10 of them planned and preprocessed by
nnU-Net's own CLI. Each case corrupts a copy. Commands run in this process (``main(argv)``, stderr read at
the file-descriptor level, so a C library's output would show too); the read-only cases run the console
script as an unprivileged user when the suite runs as root (root may write anywhere)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_diet.cli.main import main
from nnunet_diet.core.store import DynamicsStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "nnunet_diet" / "examples"
BIN = Path(sys.executable).parent
DATASET_ID, DATASET = "993", "Dataset993_hippo10"
NNUNET_VARS = {"nnUNet_raw": "raw", "nnUNet_preprocessed": "pre", "nnUNet_results": "res"}


# ------------------------------------------------------------------ the valid starting points
def _raw_subset(folder: Path, n: int | None = None) -> Path:
    """A copy of the shipped hippocampus40 raw dataset (its first ``n`` cases)."""
    src = EXAMPLES / "hippocampus40"
    cases = sorted(f.name[: -len(".nii.gz")] for f in (src / "labelsTr").iterdir())[:n]
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    for c in cases:
        shutil.copy(src / "labelsTr" / f"{c}.nii.gz", folder / "labelsTr")
        shutil.copy(src / "imagesTr" / f"{c}_0000.nii.gz", folder / "imagesTr")
    meta = json.loads((src / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps(dict(meta, numTraining=len(cases)), indent=2))
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Every valid input, in one folder whose files the tests hash."""
    w = tmp_path_factory.mktemp("world")
    os.chmod(w, 0o755)
    for name in ("hippocampus_dice.npz", "pneumoniamnist_dynamics.npz", "pneumoniamnist_subset.npz"):
        shutil.copy(EXAMPLES / name, w / name)
    _raw_subset(w / "raw" / DATASET, 10)
    env = dict(os.environ, OMP_NUM_THREADS="1", **{k: str(w / v) for k, v in NNUNET_VARS.items()})
    subprocess.run([BIN / "nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c", "3d_fullres", "-np", "1",
                    "-npfp", "1"], env=env, check=True, capture_output=True, timeout=600)
    assert main(["scores", str(w / "hippocampus_dice.npz"), "-o", str(w / "scores.csv")]) == 0
    cases = sorted(f.name[: -len(".nii.gz")] for f in (w / "raw" / DATASET / "labelsTr").iterdir())
    table = pd.read_csv(w / "scores.csv", dtype={"id": str})
    table[table["id"].isin(cases)].to_csv(w / "fold_scores.csv", index=False)
    assert main(["embed", "--npz", str(w / "pneumoniamnist_subset.npz"), "-o", str(w / "emb"), "--no-progress"]) == 0
    # a fold folder as nnUNetTrainerDAD leaves it (the shipped hippocampus records), for 'report'
    from nnunet_diet.nnunet.config import DADConfig
    from nnunet_diet.nnunet.outputs import write_outputs

    fold = w / "res" / "Dataset990_hippocampus40" / "nnUNetTrainerDAD__nnUNetPlans__3d_fullres" / "fold_0"
    store = DynamicsStore.load(w / "hippocampus_dice.npz")
    store.save(fold / "dad" / "dynamics.npz")
    write_outputs(store, DADConfig(), fold / "dad", num_epochs=100, stop_epoch=None)
    # a MedMNIST run folder (the harness layout) from the shipped records
    run = w / "run"
    DynamicsStore.load(w / "pneumoniamnist_dynamics.npz").save(run / "dynamics.npz")
    (run / "config.json").write_text(json.dumps({"data": str(w / "pneumoniamnist_subset.npz"), "n_train": 800}))
    shutil.copy(w / "pneumoniamnist_subset.npz", w / "pneumoniamnist.npz")  # --root of 'medmnist train'
    return w


def _tree(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders`` (and the folders themselves, so that a new one shows)."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


# ------------------------------------------------------------------ corrupt copies
def _store_with(tmp: Path, change) -> Path:
    """The shipped hippocampus records with ``change(arrays)`` applied (recording does not check values:
    loading does)."""
    real = DynamicsStore.load(EXAMPLES / "hippocampus_dice.npz")
    arrays = {name: real[name].copy() for name in ("dice", "el2n")}
    change(arrays)
    store = DynamicsStore(real.ids, list(arrays), metadata=real.metadata)
    for e in range(arrays["dice"].shape[1]):
        store.record(e, None, {name: a[:, e] for name, a in arrays.items()})
    return store.save(tmp / "bad.npz")


def _set(key, rows, value):
    def change(a):
        a[key][rows] = value
    return change


def _no_epochs(a):
    a["dice"], a["el2n"] = a["dice"][:, :0], a["el2n"][:, :0]


def _duplicate_ids(tmp: Path) -> Path:
    """A store file whose ids repeat (the constructor refuses them, so the arrays are written directly)."""
    path = _store_with(tmp, lambda a: None)
    with np.load(path) as z:
        arrays = dict(z)
    arrays["ids"][1] = arrays["ids"][0]
    np.savez(path, **arrays)
    return path


def _csv(tmp: Path, world: Path, name: str, edit) -> Path:
    table = pd.read_csv(world / name, dtype={"id": str})
    table = edit(table)
    out = tmp / f"bad_{name}"
    table.to_csv(out, index=False)
    return out


def _text_in(column):
    def edit(t):
        t[column] = t[column].astype(object)
        t.loc[3, column] = "high"  # (pandas reads "n/a", "NA", "-" ... as blank: those are unscored)
        return t
    return edit


def _keep_list(tmp: Path, world: Path, values) -> Path:
    cases = pd.read_csv(world / "fold_scores.csv", dtype={"id": str})["id"]
    out = tmp / "keep.csv"
    pd.DataFrame({"id": cases, "keep": [values(i) for i in range(len(cases))]}).to_csv(out, index=False)
    return out


def _raw_copy(tmp: Path, edit=None) -> Path:
    raw = _raw_subset(tmp / "rawcopy", 8)
    if edit:
        edit(raw)
    return raw


def _label_without_image(raw: Path):
    next(iter(sorted((raw / "imagesTr").iterdir()))).unlink()


def _image_without_label(raw: Path):
    next(iter(sorted((raw / "labelsTr").iterdir()))).unlink()


def _other_grid(raw: Path):
    labels = sorted((raw / "labelsTr").iterdir())
    shutil.copy(EXAMPLES / "hippocampus40" / "labelsTr" / "hippocampus_064.nii.gz", labels[0])  # another shape


def _pre_copy(tmp: Path, world: Path) -> Path:
    pre = tmp / "pre"
    shutil.copytree(world / "pre", pre)
    return pre


def _results_table(tmp: Path, rows: str) -> Path:
    out = tmp / "results.csv"
    out.write_text("method,fraction,metric\n" + rows)
    return out


def _embedding_npz(tmp: Path, vectors) -> Path:
    out = tmp / "emb.npz"
    np.savez(out, ids=np.arange(len(vectors)).astype(str), embeddings=vectors)
    return out


def _meddel_other_dataset(tmp: Path) -> Path:
    out = tmp / "keep_other.csv"
    pd.DataFrame({"id": np.arange(300), "keep": 1}).to_csv(out, index=False)
    return out


def _folder(tmp: Path, name: str = "existing") -> Path:
    (tmp / name).mkdir()
    return tmp / name


def _file(tmp: Path, name: str = "a_file") -> Path:
    (tmp / name).write_text("not a folder\n")
    return tmp / name


FOLD = "{w}/res/Dataset990_hippocampus40/nnUNetTrainerDAD__nnUNetPlans__3d_fullres/fold_0"
PRUNE = ["prune", "-d", DATASET_ID, "-f", "0", "-c", "3d_fullres", "--scores", "{w}/fold_scores.csv"]

# (id, argv with {w} = the world folder and {t} = this test's folder, setup(t, w) -> extra fields, words on stderr)
CASES = [
    # the top level and argparse: one line each
    ("no-command", [], None, ["required", "COMMAND"]),
    ("unknown-command", ["bogus"], None, ["invalid choice", "bogus"]),
    ("trainer-path-extra", ["trainer-path", "x"], None, ["unrecognized arguments", "x"]),
    # scores
    ("scores-missing", ["scores", "{t}/missing.npz"], None, ["missing.npz", "no such dynamics file"]),
    ("scores-not-npz", ["scores", "{w}/scores.csv", "-o", "{t}/o.csv"], None, ["scores.csv", "cannot read"]),
    ("scores-inf", ["scores", "{bad}", "-o", "{t}/o.csv"], lambda t, w: {"bad": _store_with(t, _set("dice", (2, 5),
                                                                                                   np.inf))},
     ["bad.npz", "'dice'", "not finite"]),
    ("scores-minus-inf-el2n", ["scores", "{bad}", "-o", "{t}/o.csv"],
     lambda t, w: {"bad": _store_with(t, _set("el2n", (0, 0), -np.inf))}, ["bad.npz", "'el2n'", "not finite"]),
    ("scores-dice-above-1", ["scores", "{bad}", "-o", "{t}/o.csv"],
     lambda t, w: {"bad": _store_with(t, _set("dice", (3, 7), 1.5))}, ["bad.npz", "in [0, 1]", "1.5"]),
    ("scores-all-nan", ["scores", "{bad}", "-o", "{t}/o.csv"],
     lambda t, w: {"bad": _store_with(t, _set("dice", slice(None), np.nan))}, ["bad.npz", "NaN"]),
    ("scores-duplicate-ids", ["scores", "{bad}", "-o", "{t}/o.csv"],
     lambda t, w: {"bad": _duplicate_ids(t)},
     ["bad.npz", "duplicate sample ids"]),
    ("scores-zero-epochs", ["scores", "{bad}", "-o", "{t}/o.csv"], lambda t, w: {"bad": _store_with(t, _no_epochs)},
     ["bad.npz", "no data"]),
    ("scores-output-is-input", ["scores", "{w}/hippocampus_dice.npz", "-o", "{w}/hippocampus_dice.npz"], None,
     ["hippocampus_dice.npz", "is the input"]),
    ("scores-output-folder", ["scores", "{w}/hippocampus_dice.npz", "-o", "{d}"], lambda t, w: {"d": _folder(t)},
     ["existing", "is a folder"]),
    ("scores-output-under-file", ["scores", "{w}/hippocampus_dice.npz", "-o", "{f}/o.csv"],
     lambda t, w: {"f": _file(t)}, ["a_file", "is a file, not a folder"]),
    ("scores-el2n-window-beyond", ["scores", "{w}/hippocampus_dice.npz", "-o", "{t}/o.csv", "--el2n-window", "0",
                                   "200"], None, ["hippocampus_dice.npz", "--el2n-window", "only 100"]),
    ("scores-window-0", ["scores", "{w}/hippocampus_dice.npz", "-o", "{t}/o.csv", "--window", "0"], None,
     ["hippocampus_dice.npz", "window", ">= 1"]),
    ("scores-rate-1.5", ["scores", "{w}/hippocampus_dice.npz", "-o", "{t}/o.csv", "--rate", "1.5"], None,
     ["rate", "(0, 1)", "1.5"]),
    ("scores-threshold-2", ["scores", "{w}/hippocampus_dice.npz", "-o", "{t}/o.csv", "--threshold", "2"], None,
     ["threshold", "(0, 1)"]),
    ("scores-no-exact-series", ["scores", "{w}/hippocampus_dice.npz", "-o", "{t}/o.csv", "--dad-series",
                                "dice_exact"], None, ["hippocampus_dice.npz", "no series 'dice_exact'"]),
    ("scores-window-text", ["scores", "{w}/hippocampus_dice.npz", "--window", "ten"], None,
     ["--window", "invalid int value"]),
    ("scores-unknown-option", ["scores", "{w}/hippocampus_dice.npz", "--bogus"], None,
     ["unrecognized arguments", "--bogus"]),
    # select
    ("select-missing", ["select", "{t}/nope.csv", "--method", "dad", "--keep", "0.5"], None,
     ["nope.csv", "no such score table"]),
    ("select-unknown-method", ["select", "{w}/scores.csv", "--method", "vog", "--keep", "0.5"], None,
     ["unknown method 'vog'", "scores.csv"]),
    ("select-keep-1.5", ["select", "{w}/scores.csv", "--method", "dad", "--keep", "1.5"], None,
     ["keep fraction", "1.5"]),
    ("select-keep-0", ["select", "{w}/scores.csv", "--method", "dad", "--keep", "0"], None, ["keep fraction", "0"]),
    ("select-stratify-unknown", ["select", "{w}/scores.csv", "--method", "dad", "--keep", "0.5", "--stratify",
                                 "centre"], None, ["--stratify 'centre'", "no such column"]),
    ("select-header-only", ["select", "{bad}", "--method", "dad", "--keep", "0.5"],
     lambda t, w: {"bad": _csv(t, w, "scores.csv", lambda x: x.iloc[:0])}, ["bad_scores.csv", "no rows"]),
    ("select-text-in-score", ["select", "{bad}", "--method", "dad", "--keep", "0.5"],
     lambda t, w: {"bad": _csv(t, w, "scores.csv", _text_in("dad"))}, ["bad_scores.csv", "'dad'", "'high'", "line 5"]),
    ("select-output-is-input", ["select", "{w}/scores.csv", "--method", "dad", "--keep", "0.5", "-o",
                                "{w}/scores.csv"], None, ["scores.csv", "is the input"]),
    ("select-output-folder", ["select", "{w}/scores.csv", "--method", "dad", "--keep", "0.5", "-o", "{d}"],
     lambda t, w: {"d": _folder(t)}, ["existing", "is a folder"]),
    ("select-no-id", ["select", "{bad}", "--method", "dad", "--keep", "0.5"],
     lambda t, w: {"bad": _csv(t, w, "scores.csv", lambda x: x.rename(columns={"id": "case_name"}))},
     ["bad_scores.csv", "no 'id' column"]),
    ("select-duplicate-ids", ["select", "{bad}", "--method", "dad", "--keep", "0.5"],
     lambda t, w: {"bad": _csv(t, w, "scores.csv", lambda x: pd.concat([x, x.iloc[:1]]))},
     ["bad_scores.csv", "duplicate ids"]),
    ("select-not-text", ["select", "{bad}", "--method", "dad", "--keep", "0.5"],
     lambda t, w: {"bad": (t / "bin.csv", (t / "bin.csv").write_bytes(b"\xff\xfe\x00\x81" * 50))[0]},
     ["bin.csv", "not a readable CSV"]),
    ("select-missing-keep", ["select", "{w}/scores.csv", "--method", "dad"], None, ["--keep", "required"]),
    ("select-bad-mode", ["select", "{w}/scores.csv", "--method", "dad", "--keep", "0.5", "--mode", "centre"], None,
     ["--mode", "invalid choice"]),
    # normdel, normdel-table
    ("normdel-percent", ["normdel", "--metric", "79.38", "--retained", "0.05"], None, ["divide percentages"]),
    ("normdel-retained-0", ["normdel", "--metric", "0.79", "--retained", "0"], None, ["retained fraction"]),
    ("normdel-text", ["normdel", "--metric", "high", "--retained", "0.1"], None, ["--metric", "invalid float"]),
    ("normdel-table-missing", ["normdel-table", "{t}/none.csv"], None, ["none.csv", "no such results file"]),
    ("normdel-table-no-column", ["normdel-table", "{r}", "--metric-column", "miou"],
     lambda t, w: {"r": _results_table(t, "dad,0.5,0.8\n")}, ["results.csv", "no column 'miou'"]),
    ("normdel-table-text", ["normdel-table", "{r}"], lambda t, w: {"r": _results_table(t, "dad,0.5,good\n")},
     ["results.csv", "'metric'", "'good'", "line 2"]),
    ("normdel-table-percent", ["normdel-table", "{r}"], lambda t, w: {"r": _results_table(t, "a,0.5,0.8\nb,0.1,81\n")},
     ["results.csv", "divide percentages", "81"]),
    ("normdel-table-header-only", ["normdel-table", "{r}"], lambda t, w: {"r": _results_table(t, "")},
     ["results.csv", "no rows"]),
    ("normdel-table-output-is-input", ["normdel-table", "{r}", "-o", "{r}"],
     lambda t, w: {"r": _results_table(t, "a,0.5,0.8\n")}, ["results.csv", "is the input"]),
    ("normdel-table-output-folder", ["normdel-table", "{r}", "-o", "{d}"],
     lambda t, w: {"r": _results_table(t, "a,0.5,0.8\n"), "d": _folder(t)}, ["existing", "is a folder"]),
    # meddel
    ("meddel-missing", ["meddel", "{t}/noemb", "--fraction", "0.5"], None, ["noemb", "no such embedding folder"]),
    ("meddel-clusters-0", ["meddel", "{w}/emb", "--fraction", "0.5", "--clusters", "0"], None,
     ["number of clusters", "got 0"]),
    ("meddel-fraction-1.5", ["meddel", "{w}/emb", "--fraction", "1.5"], None, ["target fraction", "1.5"]),
    ("meddel-eta-2", ["meddel", "{w}/emb", "--eta", "2"], None, ["eta", "[-1, 1]"]),
    ("meddel-fraction-and-eta", ["meddel", "{w}/emb", "--fraction", "0.5", "--eta", "0.9"], None,
     ["--eta", "not allowed with"]),
    ("meddel-epsilon-5", ["meddel", "{w}/emb", "--fraction", "0.5", "--epsilon", "5"], None, ["epsilon", "[0, 2]"]),
    ("meddel-below-one-per-cluster", ["meddel", "{w}/emb", "--fraction", "0.01", "--clusters", "100", "--kmeans",
                                      "faiss"], None, ["below one sample per cluster"]),
    ("meddel-output-folder", ["meddel", "{w}/emb", "--fraction", "0.5", "-o", "{d}"], lambda t, w: {"d": _folder(t)},
     ["existing", "is a folder"]),
    ("meddel-npz-without-arrays", ["meddel", "{w}/pneumoniamnist_subset.npz", "--fraction", "0.5"], None,
     ["pneumoniamnist_subset.npz", "'ids' and 'embeddings'"]),
    ("meddel-nan-vectors", ["meddel", "{e}", "--fraction", "0.5"],
     lambda t, w: {"e": _embedding_npz(t, np.where(np.eye(20, 8) > 0, np.nan, 1.0))}, ["emb.npz", "NaN"]),
    ("meddel-centres-no-group", ["meddel", "{w}/emb", "--fraction", "0.5", "--centres", "^[0-9]"], None,
     ["centre pattern", "needs one group"]),
    # embed
    ("embed-npz-missing", ["embed", "--npz", "{t}/none.npz", "-o", "{t}/e"], None, ["none.npz", "no such .npz"]),
    ("embed-npz-split", ["embed", "--npz", "{w}/pneumoniamnist_subset.npz", "--split", "dev", "-o", "{t}/e"], None,
     ["pneumoniamnist_subset.npz", "no array 'dev_images'"]),
    ("embed-raw-missing", ["embed", "--raw", "{t}/noraw", "-o", "{t}/e"], None, ["noraw", "no such raw dataset"]),
    ("embed-raw-label-without-image", ["embed", "--raw", "{raw}", "-o", "{t}/e", "--no-progress"],
     lambda t, w: {"raw": _raw_copy(t, _label_without_image)}, ["labelsTr", "label without an image"]),
    ("embed-raw-bad-json", ["embed", "--raw", "{raw}", "-o", "{t}/e"],
     lambda t, w: {"raw": _raw_copy(t, lambda r: (r / "dataset.json").write_text("{labels: 1"))},
     ["dataset.json", "not valid JSON"]),
    ("embed-preprocessed-empty", ["embed", "--preprocessed", "{d}", "-o", "{t}/e"], lambda t, w: {"d": _folder(t)},
     ["existing", "no preprocessed cases"]),
    ("embed-output-is-file", ["embed", "--npz", "{w}/pneumoniamnist_subset.npz", "-o", "{f}"],
     lambda t, w: {"f": _file(t)}, ["a_file", "not a folder"]),
    ("embed-output-is-input", ["embed", "--raw", "{w}/raw/" + DATASET, "-o", "{w}/raw/" + DATASET], None,
     [DATASET, "is the input"]),
    ("embed-finished-other-settings", ["embed", "--npz", "{w}/pneumoniamnist_subset.npz", "--grid", "8", "-o",
                                       "{w}/emb", "--no-progress"], None, ["emb", "other settings", "grid"]),
    ("embed-finished-other-settings-no-resume", ["embed", "--npz", "{w}/pneumoniamnist_subset.npz", "--dtype",
                                                 "float32", "-o", "{w}/emb", "--no-resume", "--no-progress"], None,
     ["emb", "other settings", "dtype"]),
    ("embed-finished-other-dataset", ["embed", "--npz", "{w}/pneumoniamnist_subset.npz", "--split", "val", "-o",
                                      "{w}/emb", "--no-progress"], None, ["emb", "holds a finished embedding"]),
    ("embed-torch-without-model", ["embed", "--npz", "{w}/pneumoniamnist_subset.npz", "--source", "torch", "-o",
                                   "{t}/e"], None, ["--source torch needs --model"]),
    ("embed-batch-0", ["embed", "--npz", "{w}/pneumoniamnist_subset.npz", "--batch-size", "0", "-o", "{t}/e",
                       "--no-progress"], None, ["batch size", ">= 1"]),
    # report
    ("report-missing", ["report", "{t}/nofold"], None, ["nofold", "no such folder"]),
    ("report-not-a-fold", ["report", "{d}"], lambda t, w: {"d": _folder(t)}, ["existing", "neither an nnU-Net"]),
    ("report-rate-2", ["report", FOLD, "--rate", "2", "-o", "{t}/r.html"], None, ["--rate", "(0, 1)"]),
    ("report-thumbs-0", ["report", FOLD, "--thumbs", "0", "-o", "{t}/r.html"], None, ["--thumbs", ">= 1"]),
    ("report-meddel-other-dataset", ["report", FOLD, "--meddel", "{k}", "-o", "{t}/r.html"],
     lambda t, w: {"k": _meddel_other_dataset(t)}, ["keep_other.csv", "none of its 300 ids"]),
    ("report-meddel-no-keep", ["report", FOLD, "--meddel", "{w}/scores.csv", "-o", "{t}/r.html"], None,
     ["scores.csv", "missing column(s) keep"]),
    ("report-meddel-keep-2", ["report", FOLD, "--meddel", "{k}", "-o", "{t}/r.html"],
     lambda t, w: {"k": _keep_list(t, w, lambda i: 2)}, ["keep.csv", "keep must be", "got 2"]),
    ("report-output-folder", ["report", FOLD, "-o", "{d}"], lambda t, w: {"d": _folder(t)}, ["existing",
                                                                                             "is a folder"]),
    ("report-output-markdown", ["report", FOLD, "-o", "{t}/r.md"], None, ["r.md", ".html"]),
    ("report-output-is-scores", ["report", FOLD, "-o", FOLD + "/dad/scores.csv"], None,
     ["scores.csv", "is the input"]),
    ("report-output-under-file", ["report", FOLD, "-o", "{f}/r.html"], lambda t, w: {"f": _file(t)},
     ["a_file", "is a file, not a folder"]),
    # prune
    ("prune-unknown-dataset", ["prune", "-d", "55", "-f", "0"], None, ["unknown dataset '55'", "nnUNet_raw="]),
    ("prune-fold-9", [*PRUNE[:4], "9", *PRUNE[5:]], None, ["fold 9 does not exist", "splits_final.json"]),
    ("prune-rate-1.5", [*PRUNE, "--rate", "1.5"], None, ["rate", "(0, 1)", "1.5"]),
    ("prune-keep-list-all-zero", [*PRUNE[:-2], "--keep-list", "{k}"], lambda t, w: {"k": _keep_list(t, w, lambda i: 0)},
     ["keep.csv", "keeps none"]),
    ("prune-keep-list-2", [*PRUNE[:-2], "--keep-list", "{k}"], lambda t, w: {"k": _keep_list(t, w, lambda i: 2)},
     ["keep.csv", "keep must be", "got 2"]),
    ("prune-keep-list-misses-cases", [*PRUNE[:-2], "--keep-list", "{k}"],
     lambda t, w: {"k": _csv(t, w, "fold_scores.csv", lambda x: x.assign(keep=1).iloc[:3])},
     ["bad_fold_scores.csv", "not in the keep list"]),
    ("prune-unscored-remove-blank", [*PRUNE[:-1], "{s}", "--unscored", "remove"],
     lambda t, w: {"s": _csv(t, w, "fold_scores.csv", lambda x: x.assign(dad=np.nan))}, ["no training case left"]),
    ("prune-text-score", [*PRUNE[:-1], "{s}"], lambda t, w: {"s": _csv(t, w, "fold_scores.csv", _text_in("dad"))},
     ["bad_fold_scores.csv", "'dad'", "'high'"]),
    ("prune-unknown-ids", [*PRUNE[:-1], "{w}/scores.csv"], None, ["scores.csv", "not cases of " + DATASET]),
    ("prune-no-such-column", [*PRUNE, "--score", "vog"], None, ["fold_scores.csv", "no score column 'vog'"]),
    ("prune-stratify-without-centres", [*PRUNE[:-1], "{s}", "--stratify"],
     lambda t, w: {"s": _csv(t, w, "fold_scores.csv", lambda x: x.drop(columns="group", errors="ignore"))},
     ["--stratify needs --centres"]),
    ("prune-unpreprocessed-configuration", [*PRUNE[:5], "-c", "2d", *PRUNE[7:]], None,
     ["nnUNetPlans_2d", "no preprocessed data"]),
    ("prune-no-env", [*PRUNE], "no-env", ["nnUNet_preprocessed is not set"]),
    ("prune-splits-is-folder", [*PRUNE], "splits-folder", ["splits_final.json", "is not a file"]),
    ("prune-splits-not-json", [*PRUNE], "splits-garbage", ["splits_final.json", "not JSON"]),
    # lite-plans
    ("lite-plans-outside", ["lite-plans", "-d", DATASET_ID, "-o", "../../x"], None, ["'../../x'", "a plain name"]),
    ("lite-plans-json-name", ["lite-plans", "-d", DATASET_ID, "-o", "mine.json"], None, ["'mine.json'", "no .json"]),
    ("lite-plans-no-source", ["lite-plans", "-d", DATASET_ID, "-p", "nnUNetResEncPlans"], None,
     ["nnUNetResEncPlans.json", "no such plans file"]),
    ("lite-plans-features-0", ["lite-plans", "-d", DATASET_ID, "--features", "0"], None, ["base_features"]),
    ("lite-plans-same-name", ["lite-plans", "-d", DATASET_ID, "-o", "nnUNetPlans"], None, ["a name of their own"]),
    # pipeline: every argument checked before any work
    ("pipeline-rate-1.5", ["pipeline", "--rate", "1.5", "-o", "{t}/out"], None, ["--rate", "1.5"]),
    ("pipeline-raw-missing", ["pipeline", "--raw", "{t}/noraw", "-o", "{t}/out"], None, ["noraw", "no such raw"]),
    ("pipeline-label-without-image", ["pipeline", "--raw", "{raw}", "-o", "{t}/out"],
     lambda t, w: {"raw": _raw_copy(t, _label_without_image)}, ["labelsTr", "label without an image"]),
    ("pipeline-image-without-label", ["pipeline", "--raw", "{raw}", "-o", "{t}/out"],
     lambda t, w: {"raw": _raw_copy(t, _image_without_label)}, ["labelsTr", "missing, the label of case"]),
    ("pipeline-shapes-differ", ["pipeline", "--raw", "{raw}", "-o", "{t}/out"],
     lambda t, w: {"raw": _raw_copy(t, _other_grid)}, ["labelsTr", "case hippocampus_001", "not on one voxel grid"]),
    ("pipeline-num-training", ["pipeline", "--raw", "{raw}", "-o", "{t}/out"],
     lambda t, w: {"raw": _raw_copy(t, lambda r: (r / "dataset.json").write_text(json.dumps(
         dict(json.loads((r / "dataset.json").read_text()), numTraining=40))))}, ["dataset.json", "numTraining"]),
    ("pipeline-window-0", ["pipeline", "--window", "0", "-o", "{t}/out"], None, ["--window", "got 0"]),
    ("pipeline-output-is-file", ["pipeline", "-o", "{f}"], lambda t, w: {"f": _file(t)}, ["a_file", "not a folder"]),
    ("pipeline-epochs-7", ["pipeline", "--epochs", "7"], None, ["--epochs", "invalid choice"]),
    ("pipeline-dataset-id-1000", ["pipeline", "--dataset-id", "1000", "-o", "{t}/out"], None,
     ["--dataset-id", "1000"]),
    ("pipeline-threshold-1.5", ["pipeline", "--threshold", "1.5", "-o", "{t}/out"], None,
     ["--threshold", "spearman", "(0, 1]", "1.5"]),
    ("pipeline-patience-0", ["pipeline", "--patience", "0", "-o", "{t}/out"], None, ["--patience", "got 0"]),
    ("pipeline-exact-every-negative", ["pipeline", "--exact-every", "-1", "-o", "{t}/out"], None,
     ["--exact-every", "got -1"]),
    ("pipeline-stop-rule-unknown", ["pipeline", "--stop-rule", "loss"], None, ["--stop-rule", "invalid choice"]),
    # medmnist
    ("medmnist-train-no-file", ["medmnist", "train", "--flag", "pathmnist", "--root", "{w}", "--out", "{t}/r"], None,
     ["pathmnist.npz", "not found"]),
    ("medmnist-train-size", ["medmnist", "train", "--flag", "pneumoniamnist", "--size", "100", "--out", "{t}/r"],
     None, ["--size", "invalid choice"]),
    ("medmnist-train-out-is-file", ["medmnist", "train", "--flag", "pneumoniamnist", "--root", "{w}", "--out", "{f}"],
     lambda t, w: {"f": _file(t)}, ["--out", "a_file", "not a folder"]),
    ("medmnist-select-output-is-dynamics", ["medmnist", "select", "--run", "{w}/run", "--method", "eva", "--rate",
                                            "0.1", "-o", "{w}/run/dynamics.npz"], None, ["dynamics.npz",
                                                                                         "is the input"]),
    ("medmnist-select-output-folder", ["medmnist", "select", "--run", "{w}/run", "--method", "eva", "--rate", "0.1",
                                       "-o", "{d}"], lambda t, w: {"d": _folder(t)}, ["existing", "is a folder"]),
    ("medmnist-select-no-run", ["medmnist", "select", "--run", "{t}/norun", "--method", "eva", "--rate", "0.1"], None,
     ["norun", "dynamics.npz"]),
    ("medmnist-select-window-beyond", ["medmnist", "select", "--run", "{w}/run", "--method", "el2n", "--rate", "0.1",
                                       "--el2n-window", "0", "500"], None, ["dynamics.npz", "EL2N window", "500"]),
    ("medmnist-select-bad-method", ["medmnist", "select", "--run", "{w}/run", "--method", "dad", "--rate", "0.1"],
     None, ["--method", "invalid choice"]),
    ("medmnist-coreset-nothing", ["medmnist", "coreset", "--run", "{w}/run"], None, ["needs --method and --rate"]),
    ("medmnist-coreset-keep-list-and-method", ["medmnist", "coreset", "--run", "{w}/run", "--keep-list", "{k}",
                                               "--method", "eva"], lambda t, w: {"k": _keep_list(t, w, lambda i: 1)},
     ["--keep-list", "without --method"]),
    ("medmnist-coreset-keep-2", ["medmnist", "coreset", "--run", "{w}/run", "--keep-list", "{k}"],
     lambda t, w: {"k": (t / "k.csv", (t / "k.csv").write_text("id,keep\n" + "".join(f"{i},2\n" for i in
                                                                                    range(800))))[0]},
     ["k.csv", "keep must be", "got 2"]),
]


def _prepare(case_setup, tmp: Path, world: Path, monkeypatch) -> dict:
    """The case's extra files; string setups change the nnU-Net environment instead."""
    for key, folder in NNUNET_VARS.items():
        monkeypatch.setenv(key, str(world / folder))
    if case_setup is None:
        return {}
    if case_setup == "no-env":
        monkeypatch.delenv("nnUNet_preprocessed")
        return {}
    if case_setup in ("splits-folder", "splits-garbage"):
        pre = _pre_copy(tmp, world)
        splits = pre / DATASET / "splits_final.json"
        splits.unlink(missing_ok=True)
        splits.mkdir() if case_setup == "splits-folder" else splits.write_text("[{'train': ")
        monkeypatch.setenv("nnUNet_preprocessed", str(pre))
        return {}
    return case_setup(tmp, world)


@pytest.mark.parametrize("case_id, argv, setup, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case_id, argv, setup, words, world, tmp_path, capfd,
                                                          monkeypatch):
    extra = _prepare(setup, tmp_path, world, monkeypatch)
    args = [a.format(w=world, t=tmp_path, **extra) for a in argv]
    monkeypatch.chdir(tmp_path)
    before = _tree(world, tmp_path)
    capfd.readouterr()
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capfd.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("nnunet-diet")
    for word in words:
        assert word.format(w=world, t=tmp_path, **extra) in lines[0], lines[0]
    assert _tree(world, tmp_path) == before  # no input changed, nothing written


# ------------------------------------------------------------------ read-only folders (the OS refuses)
def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _read_only_run(folder: Path, argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """The console script with ``folder`` read-only: its permissions for a user, a read-only bind mount in
    a private mount namespace for root (whom permissions do not stop)."""
    cli = [str(BIN / "nnunet-diet"), *argv]
    if os.geteuid() == 0:
        if not _unshare_works():
            pytest.skip("running as root without user namespaces (unshare): no way to make a folder read-only")
        cli = ["unshare", "-rm", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
               str(folder), *cli]
    else:
        for p in [folder, *folder.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o555)
    try:
        return subprocess.run(cli, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    finally:
        for p in [folder, *folder.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o755)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_outputs_into_a_read_only_folder_are_refused(world, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(world / "hippocampus_dice.npz", ro / "dice.npz")
    shutil.copy(world / "scores.csv", ro / "scores.csv")
    before = _tree(ro)
    script = [["scores", str(ro / "dice.npz")], ["select", str(ro / "scores.csv"), "--method", "dad", "--keep", "0.5",
                                                  "-o", str(ro / "kept.txt")],
              ["embed", "--npz", str(world / "pneumoniamnist_subset.npz"), "-o", str(ro / "emb")]]
    for argv, word in zip(script, ["dice.scores.csv", "kept.txt", "emb"]):
        line = _one_line(_read_only_run(ro, argv))
        assert word in line and "cannot write in" in line, line
    assert _tree(ro) == before


def test_prune_on_a_read_only_dataset_folder_writes_nothing(world, tmp_path):
    pre = _pre_copy(tmp_path, world)
    before = _tree(pre)
    env = {k: str(world / v) for k, v in NNUNET_VARS.items()}
    line = _one_line(_read_only_run(pre, ["prune", "-d", DATASET_ID, "-f", "0", "--scores",
                                          str(world / "fold_scores.csv")], dict(env, nnUNet_preprocessed=str(pre))))
    assert "read-only folder" in line and DATASET in line, line
    assert _tree(pre) == before


# ------------------------------------------------------------------ nothing lost on success either
def test_lite_plans_over_a_hand_edited_file_keeps_a_backup(world, tmp_path, monkeypatch, capsys):
    pre = _pre_copy(tmp_path, world)
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    monkeypatch.setenv("nnUNet_raw", str(world / "raw"))
    monkeypatch.setenv("nnUNet_results", str(world / "res"))
    lite = pre / DATASET / "nnUNetPlans_lite.json"
    assert main(["lite-plans", "-d", DATASET_ID]) == 0
    assert main(["lite-plans", "-d", DATASET_ID]) == 0  # the same plans again: nothing to keep
    assert not list(lite.parent.glob("*.bak"))
    edited = json.loads(lite.read_text())
    edited["configurations"]["3d_fullres"]["batch_size"] = 7
    lite.write_text(json.dumps(edited))
    capsys.readouterr()
    assert main(["lite-plans", "-d", DATASET_ID]) == 0
    backups = list(lite.parent.glob("nnUNetPlans_lite.json.*.bak"))
    assert len(backups) == 1 and json.loads(backups[0].read_text()) == edited
    assert backups[0].name in capsys.readouterr().out
    assert json.loads(lite.read_text())["configurations"]["3d_fullres"]["batch_size"] == 2


def test_embed_into_its_own_finished_folder_is_left_as_it_is(world, tmp_path):
    emb = tmp_path / "emb"
    shutil.copytree(world / "emb", emb)
    before = _tree(emb)
    assert main(["embed", "--npz", str(world / "pneumoniamnist_subset.npz"), "-o", str(emb), "--no-progress"]) == 0
    assert _tree(emb) == before


def test_scores_rank_by_the_series_the_trainer_scored_with(tmp_path, capsys):
    """A store recorded in exact mode: 'scores' ranks by dice_exact (the trainer's), says so, and
    --dad-series dice chooses the online series."""
    real = DynamicsStore.load(EXAMPLES / "hippocampus_dice.npz")
    exact = DynamicsStore(real.ids, ["dice", "dice_exact"], metadata={
        "source": "nnUNetTrainerDAD", "dad": {"window": 5, "exact_every": 1, "rate": 0.4}}, capacity=real.n_epochs)
    online = real["dice"].copy()
    online[::2, ::3] = np.nan  # the online series misses draws
    for e in range(real.n_epochs):
        exact.record(e, None, {"dice": online[:, e], "dice_exact": real["dice"][:, e]})
    path = exact.save(tmp_path / "exact.npz")
    assert main(["scores", str(path), "-o", str(tmp_path / "a.csv")]) == 0
    printed = capsys.readouterr().out
    assert "DAD from series 'dice_exact'" in printed and "window=5" in printed
    assert main(["scores", str(path), "-o", str(tmp_path / "b.csv"), "--dad-series", "dice"]) == 0
    assert "DAD from series 'dice'" in capsys.readouterr().out
    from nnunet_diet.core.dad import dad_trajectory

    want = dad_trajectory(real["dice"], 5).at()[0]  # the trainer's ranking: exact Dice, its window
    got = pd.read_csv(tmp_path / "a.csv")
    np.testing.assert_allclose(got["dad"], want, rtol=1e-6)
    assert json.loads((tmp_path / "a.summary.json").read_text())["dad_series"] == "dice_exact"
    assert json.loads((tmp_path / "b.summary.json").read_text())["dad_series"] == "dice"


def test_pipeline_names_the_case_nnunets_integrity_check_rejects(world, tmp_path, capfd):
    """A label value dataset.json does not declare passes our checks (pairs, grids) and is caught by nnU-Net's
    own --verify_dataset_integrity, the first thing the preprocessing call runs: the error names the case."""
    import SimpleITK as sitk

    raw = _raw_copy(tmp_path)
    label_file = sorted((raw / "labelsTr").iterdir())[2]
    label = sitk.ReadImage(str(label_file))
    voxels = sitk.GetArrayFromImage(label)
    voxels[voxels == 2] = 5  # dataset.json has labels 0, 1, 2
    bad = sitk.GetImageFromArray(voxels)
    bad.CopyInformation(label)
    sitk.WriteImage(bad, str(label_file))
    before = _tree(raw)
    capfd.readouterr()
    rc = main(["pipeline", "--raw", str(raw), "-o", str(tmp_path / "out")])
    err = capfd.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "integrity check" in lines[0] and label_file.name in lines[0] and "Unexpected labels" in lines[0], lines[0]
    assert _tree(raw) == before


def test_prune_reports_the_rate_it_removed_when_unscored_cases_go_too(world, tmp_path, monkeypatch, capsys):
    for key, folder in NNUNET_VARS.items():
        monkeypatch.setenv(key, str(world / folder))
    # 6 of the 10 cases unscored: more than the 40 % that pruning removes, so removing them removes more
    scores = _csv(tmp_path, world, "fold_scores.csv", lambda x: x.assign(dad=x["dad"].where(x.index < 4)))
    assert main([*PRUNE[:-1], str(scores), "--unscored", "remove", "--dry-run"]) == 0
    out = capsys.readouterr().out
    removed = int(out.split("(removed ")[1].split(",")[0])
    train = 8  # fold 0 of 10 cases
    assert f"rate {removed / train:.3g} (asked 0.4)" in out and removed > 0.4 * train
