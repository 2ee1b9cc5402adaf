"""Label audit: do DAD's review queue and cleanlab put deliberately corrupted training labels first?

1. Corrupt ``--fraction`` (10 %) of the labels of a real raw dataset (``make_nnunet_datasets.py``), seeded; the
   clean dataset is left as it is and the corrupted copy is written under ``--work``. The corrupted cases
   take ``--types`` in turn, so one set of trainings per seed measures them all (per type: that type's
   corrupted cases against the clean ones; one type alone: ``--types erased``). Types: ``erased`` (no foreground),
   ``swapped`` (labels 1 and 2 exchanged; datasets with two foreground labels), ``translated`` (shifted by
   half the object's extent along its longest axis), ``dilated`` / ``eroded`` (by ``--radius`` voxels),
   ``half`` (the half beyond the centroid along the longest axis erased), ``partial:S`` (the share S of the
   foreground voxels farthest along the longest axis erased), ``mismatched`` (another case's
   label, centre-cropped / padded to this case's shape); ``dilated:R`` / ``eroded:R`` / ``partial:S`` give
   each case its own strength (the sensitivity curve: AP per strength against its Dice to the clean mask).
2. One scoring run: fold 0 of nnU-Net's own 5-fold split with ``nnUNetTrainerDADAdam_{E}epochs_{I}iters``
   (stop rule reporting only, exact mode every ``--exact-every`` epochs; nnU-Net's final validation with
   ``--npz`` only for ``--cleanlab``, which reads it; a fold trained without it is validated with ``--val``
   when ``--cleanlab`` comes later) -> DAD online and exact
   (at the end, at the stop-rule window and after ``--at`` shares of the schedule), EL2N and EL2Nx (exact
   series, all epochs and the first ``--at`` share), the AP of the DAD queue at every window.
3. ``--cleanlab``: folds 1-4 with the same trainer and schedule (``--npz``, no exact mode) -> cleanlab's
   ``get_label_quality_scores`` on every case's out-of-fold softmax (``nnunet_diet.nnunet.audit``).
   ``--jobs N``: the trainings of all seeds N at a time, the scoring runs first (one torch thread each on 2
   cores, as ``nnunet-diet pipeline`` runs its retrainings).
4. Scored on fold 0's training cases (what DAD sees): AUROC, average precision, recall in the first 10 % /
   20 % of the queue, training iterations each method needed; the epoch from which the first 10 % of the
   exact DAD queue no longer changes. Random order with the same seed as a floor. Also per bin of Dice to the
   clean mask (``DICE_BINS``; the sensitivity curve, plotted as ``<results>.png`` when ``--types`` give
   strengths) and, for a run stopped after every epoch, how early DAD, one epoch's Dice and EL2Nx reach AP
   >= 0.95 (``ap_by_epoch``). With only some of folds 1-4 trained, cleanlab's scores of the cases those folds
   validated (exactly those of the full run: one case at a time) and every queue cut to them
   (``cleanlab_subset``).
5. ``--monailabel``: ``nnunet-diet audit`` on the scoring fold, a real MONAI Label server (``monailabel_app``)
   and MONAI Label's own client asking for the next ``audit`` sample: corrupted cases among the first 10 % /
   20 % served.
6. Printed per run: the tables over all corrupted cases, AP per type and Dice bin, AUROC / AP / recall per type
   for the main methods (``MAIN_METHODS``), how early AP >= 0.95, and the training compute measured from
   nnU-Net's own epoch times (the scoring run to its end, stop and ``--at`` points against cleanlab's five
   plain trainings). ``--tables JSON ...`` prints the same from stored results without scoring anything;
   ``--tables JSON ... --per-type`` only the per-type table (runs of one type per dataset, pooled by type).

Run:  .venv/bin/python benchmarks/make_nnunet_datasets.py polyp -n 50 --max-side 32 -o /tmp/raw/Polyp100px32
      .venv/bin/python benchmarks/label_audit.py --raw /tmp/raw/Polyp100px32 --dataset-id 960 \
          --configuration 2d --epochs 10 --iterations 10 --window 2 --seeds 0 1 2 --cleanlab --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from nnunet_diet.cli.pipeline import BIN, _Job, _Slots, _step, training_threads
from nnunet_diet.core.audit import empty_labels, review_order
from nnunet_diet.core.classification import el2n
from nnunet_diet.core.dad import dad_trajectory
from nnunet_diet.core.store import DynamicsStore
from nnunet_diet.nnunet.audit import cleanlab_scores

from make_example_dynamics import centre_fit
from nnunet_runs import NnunetRuns

ROOT = Path(__file__).resolve().parents[1]
TYPES = ("erased", "swapped", "translated", "dilated", "eroded", "half", "partial", "mismatched")
# the sensitivity curve's bins of Dice(corrupted, clean) and the "subtle" cut (survives a quick look)
DICE_BINS = ((0.9, 1.0), (0.8, 0.9), (0.6, 0.8), (0.3, 0.6), (0.0, 0.3))
SUBTLE = 0.8
CLEANLAB = "cleanlab (5 folds, out-of-fold)"  # cleanlab's method name in the results and tables
# the rows of the per-type table: the audit's own order (exact DAD at the stop-rule window, else the last) and
# the scores it is compared with
MAIN_METHODS = ("DAD exact, stop", "DAD online, stop", "EL2N", "EL2Nx", CLEANLAB, "random")
# --tables --per-type (one corruption type per dataset): also the audit's own order (end) and the 30 % run
PER_TYPE_METHODS = ("DAD exact, end", "DAD exact, stop", "DAD exact, at 30%", "DAD online, end", "EL2N", "EL2Nx",
                    CLEANLAB, "random")


# ---------------------------------------------------------------------------- label files
def read_label(path: Path) -> tuple[np.ndarray, object]:
    if path.name.endswith(".nii.gz"):
        import nibabel as nib

        img = nib.load(str(path))
        return np.asarray(img.dataobj).round().astype(np.uint8), img
    from PIL import Image

    return np.asarray(Image.open(path)).astype(np.uint8), None


def write_label(path: Path, label: np.ndarray, ref: object) -> None:
    if path.name.endswith(".nii.gz"):
        import nibabel as nib

        nib.save(nib.Nifti1Image(label.astype(np.uint8), ref.affine, ref.header), str(path))
        return
    from PIL import Image

    Image.fromarray(label.astype(np.uint8)).save(path)


# ---------------------------------------------------------------------------- corruptions
def _longest_axis(fg: np.ndarray) -> tuple[int, int, float]:
    """Axis of the largest extent of the foreground, that extent (voxels) and the centroid on it."""
    coords = np.argwhere(fg)
    extent = coords.max(0) - coords.min(0) + 1
    axis = int(np.argmax(extent))
    return axis, int(extent[axis]), float(coords[:, axis].mean())


def corruption_type(text: str) -> str:
    """``--types`` entry: a type, optionally with its strength (``dilated:3``, ``eroded:1``, ``partial:0.3``)."""
    kind, _, param = text.partition(":")
    if kind not in TYPES or (param and kind not in ("dilated", "eroded", "partial")):
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(TYPES)}; a strength only for dilated:R, "
                                         "eroded:R (voxels) and partial:S (share erased)")
    try:
        value = float(param) if param else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the strength {param!r} is not a number") from None
    if value is not None and (value <= 0 or (kind == "partial" and value >= 1) or (kind != "partial" and
                                                                                   value != int(value))):
        raise argparse.ArgumentTypeError(f"{text!r}: a radius is a whole number >= 1, a share is in (0, 1)")
    return text


def corrupt(label: np.ndarray, kind: str, radius: int, other: np.ndarray | None) -> np.ndarray:
    """One corrupted copy of ``label`` (integer classes, 0 = background); ``kind`` may carry its strength
    (``dilated:3``; without it ``radius`` for dilated / eroded and 0.5 for partial)."""
    kind, _, param = kind.partition(":")
    if param and kind in ("dilated", "eroded"):
        radius = int(float(param))
    fg = label > 0
    if kind == "erased":
        return np.zeros_like(label)
    if kind == "swapped":
        out = label.copy()
        out[label == 1], out[label == 2] = 2, 1
        return out
    if kind == "translated":
        axis, extent, _ = _longest_axis(fg)
        shift = max(1, extent // 2)
        out = np.zeros_like(label)
        src = [slice(None)] * label.ndim
        dst = [slice(None)] * label.ndim
        src[axis], dst[axis] = slice(0, label.shape[axis] - shift), slice(shift, None)
        out[tuple(dst)] = label[tuple(src)]
        return out
    if kind in ("dilated", "eroded"):
        out = np.zeros_like(label) if kind == "eroded" else label.copy()
        for value in np.unique(label[fg]):
            mask = label == value
            if kind == "dilated":
                grown = ndimage.binary_dilation(mask, iterations=radius) & (label == 0)
                out[grown & (out == 0)] = value
            else:
                out[ndimage.binary_erosion(mask, iterations=radius)] = value
        return out
    if kind == "half":
        axis, _, centre = _longest_axis(fg)
        index = np.indices(label.shape)[axis]
        out = label.copy()
        out[index > centre] = 0
        return out
    if kind == "partial":
        axis, _, _ = _longest_axis(fg)
        coord = np.indices(label.shape)[axis]
        cut = np.quantile(coord[fg], 1 - (float(param) if param else 0.5))
        out = label.copy()
        out[coord > cut] = 0
        return out
    if kind == "mismatched":
        return centre_fit(other, label.shape)
    raise ValueError(kind)


def mean_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over the foreground classes of either label of the per-class Dice (nnU-Net's foreground mean)."""
    values = [2 * np.sum((a == c) & (b == c)) / (np.sum(a == c) + np.sum(b == c))
              for c in np.union1d(np.unique(a[a > 0]), np.unique(b[b > 0]))]
    return float(np.mean(values)) if values else 1.0


def corrupt_dataset(clean: Path, out: Path, seed: int, fraction: float, types: list[str], radius: int) -> dict:
    """Copy ``clean`` to ``out`` with ``fraction`` of its labels corrupted; returns ``case -> {type, dice}``.
    Written under a temporary name and renamed when complete, so a run killed here leaves no half-corrupted
    ``out`` behind that a later run would take for done."""
    if out.exists():
        return json.loads((out / "corruption.json").read_text())
    meta = json.loads((clean / "dataset.json").read_text())
    ending = meta["file_ending"]
    n_fg = sum(1 for v in meta["labels"].values() if v > 0)
    types = [t for t in types if t != "swapped" or n_fg >= 2]
    if not types:
        raise SystemExit(f"{clean / 'dataset.json'}: 'swapped' needs two foreground labels")
    cases = sorted(p.name.removesuffix(ending) for p in (clean / "labelsTr").glob(f"*{ending}"))
    labels = {c: read_label(clean / "labelsTr" / f"{c}{ending}") for c in cases}
    rng = np.random.default_rng(seed)
    candidates = [c for c in cases if (labels[c][0] > 0).any()]
    chosen = sorted(rng.choice(candidates, int(round(fraction * len(cases))), replace=False))
    part = out.with_name(out.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    shutil.copytree(clean, part)
    manifest = {}
    for i, case in enumerate(chosen):
        kind = types[i % len(types)]
        label, ref = labels[case]
        other = labels[str(rng.choice([c for c in candidates if c != case]))][0]
        bad = corrupt(label, kind, radius, other)
        write_label(part / "labelsTr" / f"{case}{ending}", bad, ref)
        manifest[case] = {"type": kind, "dice_to_clean": round(mean_dice(bad, label), 4)}
    (part / "corruption.json").write_text(json.dumps(manifest, indent=2))
    part.rename(out)
    return manifest


# ---------------------------------------------------------------------------- methods
def _at(store: DynamicsStore, series: str, window: int, where: str | float) -> tuple[np.ndarray, int | None]:
    """DAD of every case at the last window (``end``), at the stop-rule window (``stop``, if it fired; else
    the last) or at the last window that ends within the first ``where`` share of the schedule (a float)."""
    traj = dad_trajectory(store[series], window)
    if isinstance(where, float):
        w = max(0, int(np.searchsorted(traj.window_end_epochs, budget_epochs(store, where))) - 1)
    else:
        w = len(traj.dad) - 1 if where == "end" or traj.stop is None else traj.stop
    return traj.dad[w], int(traj.window_end_epochs[w])


def budget_epochs(store: DynamicsStore, share: float) -> int:
    """Epochs in the first ``share`` of the recorded schedule (at least one)."""
    return max(1, int(np.floor(share * store.n_epochs + 1e-9)))


def suspicion(order: np.ndarray) -> np.ndarray:
    """Queue position -> a score where higher = reviewed earlier."""
    s = np.empty(len(order))
    s[order] = -np.arange(len(order), dtype=float)
    return s


def methods(store: DynamicsStore, window: int, iterations: int, seed: int, cleanlab: dict | None,
            shares: tuple[float, ...] = ()) -> dict:
    """``name -> (suspicion per case of store.ids, training iterations it needed, last epoch of the scoring run
    it read or None)``; ``shares``: also DAD, EL2N and EL2Nx from a run stopped after that share of the schedule."""
    ids = store.ids
    first = empty_labels(store, "el2n_exact", "el2nx_exact")
    out = {}
    wheres = ["stop", "end", *shares]
    for series, label in (("dice", "online"), ("dice_exact", "exact")):
        for where in wheres:
            dad, epoch = _at(store, series, window, where)
            name = f"DAD {label}, " + (f"at {where:.0%}" if isinstance(where, float) else where)
            out[name] = (suspicion(review_order(dad, ids, first)), (epoch + 1) * iterations, epoch)
    for share in [1.0, *shares]:
        E = budget_epochs(store, share)
        for name, series in (("EL2N", "el2n_exact"), ("EL2Nx", "el2nx_exact")):
            score = el2n(store[series], (0, E))
            if name == "EL2Nx":
                score = np.where(first, np.inf, score)  # an empty label has no EL2Nx: reviewed first
            name += "" if share == 1.0 else f", at {share:.0%}"
            out[name] = (suspicion(np.lexsort((ids, -np.nan_to_num(score, nan=-np.inf)))), E * iterations, E - 1)
    if cleanlab is not None:
        q = np.array([cleanlab[c] for c in ids])
        out[CLEANLAB] = (-q, 5 * store.n_epochs * iterations, None)
    rng = np.random.default_rng(seed)
    out["random"] = (suspicion(rng.permutation(len(ids))), 0, None)
    return out


def metrics(score: np.ndarray, bad: np.ndarray, subset: np.ndarray) -> dict:
    """AUROC and AP on ``subset``; recall of its positives in the first 10 % / 20 % of the whole queue."""
    y, s = bad[subset], score[subset]
    order = np.argsort(-score, kind="stable")
    out = {"AUROC": float(roc_auc_score(y, s)), "AP": float(average_precision_score(y, s))}
    for share in (0.1, 0.2):
        top = np.zeros(len(score), bool)
        top[order[: int(np.ceil(share * len(score)))]] = True
        out[f"R@{int(share * 100)}%"] = float((top & bad & subset).sum() / (bad & subset).sum())
    return out


def dice_subsets(dice: np.ndarray, bad: np.ndarray) -> dict[str, np.ndarray]:
    """Corrupted cases grouped by their Dice to the clean mask: ``DICE_BINS`` (``[lo, hi)``, the last bin
    closed at 1) and ``Dice >= SUBTLE``; only groups that hold a case."""
    groups = {f"Dice {lo:.1f}-{hi:.1f}": bad & (dice >= lo) & ((dice < hi) | (hi == 1.0)) for lo, hi in DICE_BINS}
    groups[f"Dice >= {SUBTLE}"] = bad & (dice >= SUBTLE)
    return {name: mask for name, mask in groups.items() if mask.any()}


def stable_from(store: DynamicsStore, window: int, share: float = 0.1) -> int | None:
    """First epoch from which the first ``share`` of the exact DAD queue is the set it is at the end."""
    traj = dad_trajectory(store["dice_exact"], window)
    first = empty_labels(store, "el2n_exact", "el2nx_exact")
    k = int(np.ceil(share * store.n_samples))
    sets = [set(review_order(d, store.ids, first)[:k]) for d in traj.dad]
    w = len(sets) - 1
    while w > 0 and sets[w - 1] == sets[-1]:
        w -= 1
    return int(traj.window_end_epochs[w])


def ap_by_window(store: DynamicsStore, window: int, bad: np.ndarray) -> dict:
    """Average precision of the DAD queue (online and exact) at every window: ``series -> [[end epoch, AP]]``,
    to read how early in the schedule the corrupted labels come first."""
    first = empty_labels(store, "el2n_exact", "el2nx_exact")
    out = {}
    for series in ("dice", "dice_exact"):
        traj = dad_trajectory(store[series], window)
        out[series] = [[int(e), round(float(average_precision_score(bad, suspicion(review_order(d, store.ids,
                                                                                                first)))), 4)]
                       for e, d in zip(traj.window_end_epochs, traj.dad)]
    return out


def early_scores(store: DynamicsStore, window: int, epoch: int) -> dict[str, np.ndarray]:
    """Suspicion per case (higher = reviewed earlier, empty labels first) from the exact series of a run
    stopped after ``epoch``: DAD at the last complete window (Eq. 3), the Dice of that epoch alone (DAD with a
    one-epoch window) and EL2Nx over epochs 0..``epoch``."""
    first = empty_labels(store, "el2n_exact", "el2nx_exact")
    out = {"Dice, that epoch": suspicion(review_order(store["dice_exact"][:, epoch], store.ids, first))}
    if (epoch + 1) // window:
        dad = dad_trajectory(store["dice_exact"][:, : (epoch + 1) // window * window], window).dad[-1]
        out = {"DAD": suspicion(review_order(dad, store.ids, first)), **out}
    x = np.where(first, np.inf, np.nan_to_num(el2n(store["el2nx_exact"], (0, epoch + 1)), nan=-np.inf))
    out["EL2Nx, epochs 0..E"] = suspicion(np.lexsort((store.ids.astype(str), -x)))
    return out


def ap_by_epoch(store: DynamicsStore, window: int, bad: np.ndarray, kinds: np.ndarray, goal: float = 0.95) -> dict:
    """How early each score of :func:`early_scores` finds the corrupted labels: ``score -> {group -> {"ap":
    [AP per stopping epoch], "first": first epoch with AP >= goal, "stays": epoch from which AP stays >= goal}}``,
    group ``all`` and each type; an epoch before the first complete DAD window has AP None."""
    groups = {"all": (bad, np.ones(len(bad), bool))}
    groups.update({k: (bad & (kinds == k), ~bad | (kinds == k)) for k in sorted(set(kinds[bad]))})
    out: dict = {}
    for epoch in range(store.n_epochs):
        for name, score in early_scores(store, window, epoch).items():
            for group, (y, subset) in groups.items():
                row = out.setdefault(name, {}).setdefault(group, {"ap": [None] * store.n_epochs})
                row["ap"][epoch] = round(float(average_precision_score(y[subset], score[subset])), 4)
    for rows in out.values():
        for row in rows.values():
            ok = [a is not None and a >= goal for a in row["ap"]]
            row["first"] = ok.index(True) if any(ok) else None
            row["stays"] = next((e for e in range(len(ok)) if all(ok[e:])), None)
    return out


# ---------------------------------------------------------------------------- runs
def run_folder(args: argparse.Namespace, raw: Path, dataset_id: int) -> tuple[str, Path]:
    """Dataset name and nnU-Net run folder of one seed (as :class:`NnunetRuns` names them)."""
    name = f"Dataset{dataset_id:03d}_{raw.name}"
    trainer = f"nnUNetTrainerDADAdam_{args.epochs}epochs_{args.iterations}iters"
    return name, args.work / "nnUNet_results" / name / f"{trainer}__nnUNetPlans_lite__{args.configuration}"


def trained(folder: Path, validated: bool = True) -> bool:
    """The fold's training finished and, if ``validated``, nnU-Net's final validation (softmax ``.npz``) too."""
    return (folder / "checkpoint_final.pth").is_file() and (
        not validated or (folder / "validation" / "summary.json").is_file())


def fold_job(runs: NnunetRuns, fold: int, exact_every: int, validate: bool, threads: str | None) -> _Job | None:
    """The command that finishes ``fold``, None when it is done; ``validate``: with nnU-Net's final validation
    (``--npz``, what cleanlab reads), else without (``NNUNET_DIET_FINAL_VALIDATION=0``: a scoring run whose
    validation nothing reads; 5.5 of 20 min per 3D run). A fold trained without it is validated later by
    ``nnUNetv2_train --val``. ``threads``: torch threads of the training (None: the environment's)."""
    folder = runs.results / f"fold_{fold}"
    cmd = [BIN / "nnUNetv2_train", runs.d, runs.c, str(fold), "-tr", runs.trainer, "-p", "nnUNetPlans_lite",
           "-device", "cpu", "--npz"]
    log = runs.work / "logs" / f"{runs.name}_fold{fold}.log"
    env = runs.env if threads is None else dict(runs.env, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    if not trained(folder, validated=False):
        env = dict(env, NNUNET_DIET_STOP="0", NNUNET_DIET_EXACT_EVERY=str(exact_every),
                   NNUNET_DIET_FINAL_VALIDATION=str(int(validate)))
        return _Job(log.stem, f"train fold {fold} of {runs.name}", cmd, env, log)
    if validate and not trained(folder):
        log = log.with_name(f"{log.stem}_val.log")
        return _Job(log.stem, f"validate fold {fold} of {runs.name}", [*cmd, "--val"], env, log)
    return None


def train_seeds(args: argparse.Namespace) -> None:
    """Every seed's trainings, at most ``--jobs`` at a time (then one torch thread each on 2 cores, as
    ``nnunet-diet pipeline`` shares the machine), the scoring runs first: fold 0 (exact mode) and, with
    ``--cleanlab``, folds 1-4 (no exact mode). Trainings that are done are skipped."""
    threads = training_threads(args.jobs, dict(os.environ))
    jobs = []
    for seed in args.seeds:
        raw = args.work / "raw" / f"{args.raw.name}_s{seed}"
        corrupt_dataset(args.raw, raw, seed, args.fraction, args.types, args.radius)
        runs = NnunetRuns(raw, args.dataset_id + seed, args.configuration, args.work, args.epochs,
                          args.iterations, args.window)
        for fold in range(5) if args.cleanlab else range(1):
            job = fold_job(runs, fold, args.exact_every if fold == 0 else 0, args.cleanlab, threads)
            jobs += [(fold > 0, job)] if job else []
    slots = _Slots(args.jobs)
    try:
        for _, job in sorted(jobs, key=lambda j: j[0]):
            slots.submit(job)
        for job in slots.jobs:
            job.check()
    finally:
        slots.stop()  # after a failure or Ctrl-C nothing trains on unseen


def served_first(runs: NnunetRuns, raw: Path, fold: Path, k: int) -> tuple[list[str], list[str]]:
    """The product end to end: ``nnunet-diet audit`` on the scoring fold, then a real MONAI Label server
    (``monailabel_app``, the ``audit`` strategy) on a copy of the corrupted raw dataset, asked for the next
    sample ``k`` times by MONAI Label's own client (what 3D Slicer's "Next Sample" calls); each served case
    is saved back as ``final`` (its label unchanged) so the queue moves on as it does for an annotator.
    Returns (the ids served, the first ``k`` ids of the audit table)."""
    import pandas as pd
    from monailabel.client.client import MONAILabelClient

    table = fold / "dad" / "audit.csv"
    env = dict(runs.env, PYTHONPATH=os.pathsep.join([str(ROOT), runs.env.get("PYTHONPATH", "")]))
    _step("nnunet-diet audit", [sys.executable, "-m", "nnunet_diet.cli.main", "audit", fold, "--raw", raw,
                                "-o", table], env)
    review = runs.work / "review" / raw.name  # the raw layout: studies imagesTr/, labels in ../labelsTr
    shutil.rmtree(review, ignore_errors=True)
    shutil.copytree(raw, review)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = runs.work / "logs" / f"monailabel_{raw.name}.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "monailabel.main", "start_server", "--app",
                                   ROOT / "monailabel_app", "--studies", review / "imagesTr", "--conf", "dad_scores",
                                   table, "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            if server.poll() is not None:
                raise RuntimeError(f"MONAI Label server exited with {server.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{url}/info/", timeout=5):
                    break
            except OSError:
                time.sleep(0.5)
        client = MONAILabelClient(url)
        ending = json.loads((raw / "dataset.json").read_text())["file_ending"]
        served = []
        for _ in range(k):
            sample = client.next_sample("audit", {})
            served.append(sample["case_id"])
            client.save_label(sample["id"], str(review / "labelsTr" / f"{sample['case_id']}{ending}"), tag="final")
    finally:
        server.terminate()
        server.wait(timeout=30)
    first = list(pd.read_csv(table, dtype={"id": str}).sort_values("audit_rank")["id"][:k])
    return served, first


def one_seed(args: argparse.Namespace, seed: int) -> dict:
    raw = args.work / "raw" / f"{args.raw.name}_s{seed}"
    manifest = corrupt_dataset(args.raw, raw, seed, args.fraction, args.types, args.radius)
    name, results = run_folder(args, raw, args.dataset_id + seed)
    store = DynamicsStore.load(results / "fold_0" / "dad" / "dynamics.npz")
    cl, cl_part, done = None, None, [f for f in range(1, 5) if trained(results / f"fold_{f}")]
    ids = [str(i) for i in store.ids]
    ending = json.loads((raw / "dataset.json").read_text())["file_ending"]
    label = {i: raw / "labelsTr" / f"{i}{ending}" for i in ids}
    if args.cleanlab and len(done) == 4:
        cl = dict(zip(ids, cleanlab_scores(results, ids, label, name).tolist()))
    elif args.cleanlab and done:  # some folds: cleanlab's exact scores of the cases those folds validated
        splits = json.loads((args.work / "nnUNet_preprocessed" / name / "splits_final.json").read_text())
        covered = [i for i in ids if any(i in splits[f]["val"] for f in done)]
        cl_part = dict(zip(covered, cleanlab_scores(results, covered, label, name).tolist()))
    bad = np.array([i in manifest for i in ids])
    kinds = np.array([manifest[i]["type"] if i in manifest else "" for i in ids])
    dice = np.array([manifest[i]["dice_to_clean"] if i in manifest else np.nan for i in ids])
    result = {"seed": seed, "dataset": name, "cases": len(ids), "corrupted": int(bad.sum()),
              "stable_top10_from_epoch": stable_from(store, args.window),
              "stop_epoch": dad_trajectory(store["dice_exact"], args.window).stop_epoch, "methods": {},
              "corrupted_cases": {i: manifest[i] for i in ids if i in manifest}}
    result["epoch_seconds"] = {str(f): epoch_seconds(results / f"fold_{f}") for f in range(5)
                               if trained(results / f"fold_{f}", validated=False)}
    result["ap_by_window"] = ap_by_window(store, args.window, bad)
    result["ap_by_epoch"] = ap_by_epoch(store, args.window, bad, kinds)
    if args.monailabel:
        runs = NnunetRuns(raw, args.dataset_id + seed, args.configuration, args.work, args.epochs,
                          args.iterations, args.window)
        k = int(np.ceil(0.2 * len(ids)))
        served, first = served_first(runs, runs.work / "nnUNet_raw" / name, results / "fold_0", k)
        result["monailabel"] = {
            "served": served, "same_as_table": served == first,
            **{f"corrupted_in_first_{n}": sum(c in manifest for c in served[:n])
               for n in (int(np.ceil(0.1 * len(ids))), k)}}
    for method, (score, iters, epoch) in methods(store, args.window, args.iterations, seed, cl,
                                                 tuple(args.at)).items():
        result["methods"][method] = {"iterations": iters, "epoch": epoch,
                                     "metrics": score_groups(score, bad, kinds, dice),
                                     "corrupted_ranks": corrupted_ranks(score, ids, bad)}
    if cl_part is not None:
        # every method on the cases with an out-of-fold softmax so far, each queue cut to those cases
        keep = np.array([i in cl_part for i in ids])
        q = {i: cl_part.get(i, np.nan) for i in ids}
        result["cleanlab_subset"] = {"folds": done, "cases": int(keep.sum()), "corrupted": int(bad[keep].sum()),
                                     "methods": {}}
        for method, (score, iters, epoch) in methods(store, args.window, args.iterations, seed, q,
                                                     tuple(args.at)).items():
            result["cleanlab_subset"]["methods"][method] = {
                "iterations": iters, "epoch": epoch,
                "metrics": score_groups(score[keep], bad[keep], kinds[keep], dice[keep])}
    return result


def corrupted_ranks(score: np.ndarray, ids: list[str], bad: np.ndarray) -> dict[str, int]:
    """Queue position (1 = reviewed first) of every corrupted case, as the queue orders ``score``."""
    rank = np.empty(len(score), int)
    rank[np.argsort(-score, kind="stable")] = np.arange(1, len(score) + 1)
    return {i: int(rank[k]) for k, i in enumerate(ids) if bad[k]}


def epoch_seconds(fold: Path) -> list[float]:
    """nnU-Net's own epoch times of a training (``Epoch time: X s`` in its newest ``training_log_*.txt`` that has
    any: a later ``nnUNetv2_train --val`` writes a log of its own without epochs; the log names are not
    zero-padded, hence by modification time)."""
    for log in sorted(fold.glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime, reverse=True):
        seconds = [float(x) for x in re.findall(r"Epoch time: ([\d.]+) s", log.read_text())]
        if seconds:
            return seconds
    return []


def score_groups(score: np.ndarray, bad: np.ndarray, kinds: np.ndarray, dice: np.ndarray) -> dict:
    """:func:`metrics` on all corrupted cases, on each type and on each Dice bin (against the clean cases)."""
    rows = {"all": metrics(score, bad, np.ones(len(score), bool))}
    for kind in sorted(set(kinds[bad])):
        rows[kind] = metrics(score, bad & (kinds == kind), ~bad | (kinds == kind))
    for group, mask in dice_subsets(dice, bad).items():
        rows[group] = metrics(score, mask, ~bad | mask)
    return rows


def ms(values: list[float]) -> str:
    """Mean ± (population) std over seeds, or the one value."""
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def groups_of(results: list[dict]) -> set[str]:
    """The groups of :func:`score_groups` scored in any seed but ``all``: corruption types and Dice bins."""
    return {k for r in results for m in r["methods"].values() for k in m["metrics"] if k != "all"}


def kinds_of(results: list[dict]) -> list[str]:
    """The corruption types scored in any seed (the per-type groups of :func:`score_groups`)."""
    return sorted(k for k in groups_of(results) if not k.startswith("Dice"))


def table(results: list[dict]) -> str:
    """Markdown: per method, mean ± std over seeds of each metric on all corrupted cases, then AP per type."""
    names = list(results[0]["methods"])
    groups = groups_of(results)
    kinds = kinds_of(results)
    bins = [k for k in (*(f"Dice {lo:.1f}-{hi:.1f}" for lo, hi in DICE_BINS), f"Dice >= {SUBTLE}") if k in groups]

    lines = ["| method | iterations | AUROC | AP | recall first 10 % | recall first 20 % |",
             "|---|---|---|---|---|---|"]
    for n in names:
        m = [r["methods"][n]["metrics"]["all"] for r in results]
        iters = sorted({r["methods"][n]["iterations"] for r in results})
        cells = " | ".join(ms([x[k] for x in m]) for k in ("AUROC", "AP", "R@10%", "R@20%"))
        lines.append(f"| {n} | {'/'.join(map(str, iters))} | {cells} |")
    for columns in (kinds, bins):
        if not columns:
            continue
        lines += ["", "| method | " + " | ".join(f"AP {k}" for k in columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for n in names:
            cells = []
            for k in columns:
                vals = [r["methods"][n]["metrics"][k]["AP"] for r in results if k in r["methods"][n]["metrics"]]
                cells.append(ms(vals) if vals else "-")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def type_table(results: list[dict], names: tuple[str, ...] = MAIN_METHODS) -> str:
    """Markdown: per corruption type and method (``names`` the results have), AUROC, AP and recall in the first
    10 % / 20 % of the whole queue of that type's corrupted training cases against the clean ones
    (:func:`score_groups`), mean ± std over the seeds that have the type among their training cases."""
    names = tuple(n for n in names if all(n in r["methods"] for r in results))
    lines = ["| type (cases per seed) | method | AUROC | AP | recall first 10 % | recall first 20 % |",
             "|---|---|---|---|---|---|"]
    for kind in kinds_of(results):
        have = [r for r in results if kind in next(iter(r["methods"].values()))["metrics"]]
        cases = " / ".join(str(sum(c["type"] == kind for c in r["corrupted_cases"].values())) for r in have)
        label = f"{kind} ({cases}; seed{'s' if len(have) > 1 else ''} {', '.join(str(r['seed']) for r in have)})"
        for n in names:
            m = [r["methods"][n]["metrics"][kind] for r in have]
            cells = " | ".join(ms([x[k] for x in m]) for k in ("AUROC", "AP", "R@10%", "R@20%"))
            lines.append(f"| {label} | {n} | {cells} |")
            label = ""
    return "\n".join(lines)


def compute_table(results: list[dict]) -> str:
    """Markdown: the training compute each seed's DAD points needed, measured as the sum of nnU-Net's epoch
    times (:func:`epoch_seconds`): the scoring run (fold 0, exact mode) to its end, to the exact stop-rule window
    and to each ``--at`` point, and each against cleanlab's five plain trainings (its fold 0 would be a plain
    one too: five times the mean of folds 1-4). Wall time under whatever load the runs had, not a timing."""
    points = [n for n in results[0]["methods"] if n in ("DAD exact, end", "DAD exact, stop")
              or n.startswith("DAD exact, at ")]
    lines = ["| seed | plain folds 1-4 (s) | " + " | ".join(f"{p} (s; of cleanlab's)" for p in points) + " |",
             "|---" * (len(points) + 2) + "|"]
    for r in results:
        secs = r.get("epoch_seconds", {})
        plain = [sum(secs[f]) for f in ("1", "2", "3", "4") if secs.get(f)]
        if not secs.get("0"):
            continue
        cells = []
        for p in points:
            used = sum(secs["0"][: r["methods"][p]["epoch"] + 1])
            cells.append(f"{used:.0f}" + (f" ({used / (5 * np.mean(plain)):.2f})" if len(plain) == 4 else ""))
        lines.append(f"| {r['seed']} | {', '.join(f'{x:.0f}' for x in plain) or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def report(results: list[dict]) -> str:
    """Every table of the results (seeds in order): overall and per type, per type in full, the
    ``cleanlab_subset`` of the last seed, how early AP >= 0.95, the measured compute."""
    out = [table(results), "", "per type (that type's corrupted training cases against the clean ones):",
           type_table(results)]
    if "cleanlab_subset" in results[-1]:
        part = results[-1]["cleanlab_subset"]
        out += ["", f"cleanlab from folds {part['folds']} of 1-4 only: the {part['cases']} training cases they "
                    f"validated ({part['corrupted']} corrupted), every queue cut to them:", table([part])]
    if all("ap_by_epoch" in r for r in results):
        out += ["", "first epoch with AP >= 0.95 / from which it stays (a run stopped there; per seed):",
                early_table(results)]
    compute = compute_table(results)
    if compute:
        out += ["", "training compute (sums of nnU-Net's epoch times):", compute]
    return "\n".join(out)


def load_results(paths: list[Path]) -> list[dict]:
    """The seeds of stored results files (``label_audit*.json``), in the order given; bad input: SystemExit(2)
    with one line naming the file."""
    results = []
    for path in paths:
        try:
            seeds = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(_bad(f"{path}: cannot read a results file ({e.__class__.__name__}: {e})"))
        if not isinstance(seeds, list) or not seeds or not all(isinstance(r, dict) and "methods" in r for r in seeds):
            raise SystemExit(_bad(f"{path}: not a results file of label_audit.py (a list of seeds with 'methods')"))
        results += seeds
    return results


def _bad(line: str) -> int:
    print(f"label_audit.py: {line}", file=sys.stderr)
    return 2


def early_table(results: list[dict]) -> str:
    """Markdown: per score of :func:`ap_by_epoch` and group, the first stopping epoch with AP >= 0.95 and the
    epoch from which it stays there ("-": never), one cell per seed."""
    scores = list(results[0]["ap_by_epoch"])
    groups = list(results[0]["ap_by_epoch"][scores[0]])
    lines = ["| score (exact series) | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    for s in scores:
        cells = []
        for g in groups:
            per_seed = [r["ap_by_epoch"][s].get(g) for r in results]
            cells.append(", ".join("-" if c is None else f"{'-' if c['first'] is None else c['first']}/"
                                   f"{'-' if c['stays'] is None else c['stays']}" for c in per_seed))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bin_dice(results: list[dict]) -> list[tuple[str, float, int]]:
    """``(bin, mean Dice to the clean mask, cases)`` of every ``DICE_BINS`` bin holding a corrupted training
    case, over all seeds, most similar to the clean mask first (the x axis of the sensitivity curve)."""
    out = []
    for lo, hi in DICE_BINS:
        d = [c["dice_to_clean"] for r in results for c in r["corrupted_cases"].values()
             if lo <= c["dice_to_clean"] < hi or (hi == 1.0 and c["dice_to_clean"] == 1.0)]
        if d:
            out.append((f"Dice {lo:.1f}-{hi:.1f}", float(np.mean(d)), len(d)))
    return out


def plot_sensitivity(results: list[dict], path: Path) -> None:
    """The sensitivity curve: AP of each method on the corrupted cases of each Dice bin (against the clean
    cases) at the bin's mean Dice to the clean mask, mean over seeds; random order as the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = bin_dice(results)
    shown = [n for n in results[0]["methods"]
             if n in ("DAD exact, end", "DAD online, stop", "EL2N", "EL2Nx", "random") or n.startswith("cleanlab")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in shown:
        ap = [np.mean([r["methods"][n]["metrics"][k]["AP"] for r in results if k in r["methods"][n]["metrics"]])
              for k, _, _ in xs]
        ax.plot([x for _, x, _ in xs], ap, "k--" if n == "random" else "o-", label=n)
    ax.axvline(SUBTLE, color="grey", lw=0.8, ls=":")
    ax.set_xticks([x for _, x, _ in xs], [f"{x:.2f}\n({n} cases)" for _, x, n in xs], fontsize=7)
    ax.set_xlabel(f"Dice of the corrupted to the clean mask (mean of the bins {', '.join(k[5:] for k, _, _ in xs)};"
                  f" dotted: {SUBTLE})", fontsize=8)
    ax.set_ylabel("average precision (bin vs clean cases)")
    ax.set_xlim(1.0, min(0.9, min(x for _, x, _ in xs) - 0.05))  # left: corrupted labels closest to clean
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Label audit sensitivity: {results[0]['dataset'].rsplit('_s', 1)[0]}, corruption seed(s) "
                 f"{', '.join(str(r['seed']) for r in results)}", fontsize=9)
    ax.legend(fontsize=7, loc="best")  # where it hides no line
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    NnunetRuns.add_arguments(parser, configuration="2d", work="/tmp/diet_label_audit", epochs=10, required=False)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="corruption seeds")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of labels corrupted")
    parser.add_argument("--types", nargs="+", default=[t for t in TYPES if t != "partial"], type=corruption_type,
                        help="corruption types, in turn over the corrupted cases; dilated:R, eroded:R, partial:S "
                             "give a strength (the sensitivity curve)")
    parser.add_argument("--radius", type=int, default=2, help="dilation / erosion in voxels")
    parser.add_argument("--at", type=float, nargs="*", default=[0.3],
                        help="also score from a run stopped after these shares of the schedule")
    parser.add_argument("--cleanlab", action="store_true", help="train folds 1-4 too and score cleanlab")
    parser.add_argument("--monailabel", action="store_true",
                        help="serve the audit order through a real MONAI Label server; count corrupted cases "
                             "among the first 10 %% / 20 %% served")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at a time (over seeds and folds; > 1: one torch thread each on 2 cores "
                             "unless OMP_NUM_THREADS is set)")
    parser.add_argument("--analyse-only", action="store_true", help="train nothing: score the finished folds")
    parser.add_argument("--tables", type=Path, nargs="+", metavar="JSON",
                        help="train and score nothing: print the tables of stored results (label_audit.json / "
                             "label_audit_partial.json of earlier runs; their seeds in the order given)")
    parser.add_argument("--per-type", action="store_true",
                        help="with --tables: only the per-type table, for runs of one corruption type per dataset "
                             "(each type's seeds pooled; methods: PER_TYPE_METHODS)")
    args = parser.parse_args()
    if args.tables:
        results = load_results(args.tables)
        print(type_table(results, PER_TYPE_METHODS) if args.per_type else report(results))
        return
    if args.raw is None or args.dataset_id is None:
        parser.error("--raw and --dataset-id are required (unless --tables)")
    args.work = args.work.resolve()
    results = []
    out = args.work / ("label_audit_partial.json" if args.analyse_only else "label_audit.json")
    if not args.analyse_only:
        train_seeds(args)
    for seed in args.seeds:
        results.append(one_seed(args, seed))
        out.write_text(json.dumps(results, indent=2))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "methods"}, indent=1))
        print(report(results), flush=True)
    if any(":" in t for t in args.types):
        plot_sensitivity(results, out.with_suffix(".png"))
        print(f"sensitivity curve: {out.with_suffix('.png')}")
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
