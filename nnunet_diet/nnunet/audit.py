"""The label audit of an nnU-Net fold: the files it reads (``<fold>/dad/``, the raw labels, the five folds'
validation ``.npz``) and cleanlab's label-quality score on out-of-fold predictions.

cleanlab (AGPL-3.0, an optional extra: ``pip install 'nnunet-diet[audit-cleanlab]'``) is imported only by
:func:`cleanlab_scores`. ``cleanlab.segmentation.rank.get_label_quality_scores`` takes 2D images
``(N, H, W)`` and probabilities ``(N, K, H, W)``; a 3D case ``(K, D0, D1, D2)`` is scored on its own as one
image of ``H = D0 * D1`` rows and ``W = D2`` columns (every axis but the last folded into the rows). Its
default "softmin" score is a softmin over all pixels of the image, each pixel's score the predicted
probability of its label, so this folding gives exactly the score of the whole volume and one case at a
time gives exactly the scores of one batched call.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.audit import AuditConfig, audit_table
from ..core.errors import DietError
from ..core.scores import ScoreConfig
from ..core.store import DynamicsStore
from .config import DADConfig
from .raw import check_grids, raw_cases, read_dataset_json

__all__ = ["AuditFold", "load_audit_fold", "audit_fold", "find_raw", "label_files",
           "out_of_fold_predictions", "cleanlab_scores"]

INSTALL_CLEANLAB = "pip install 'nnunet-diet[audit-cleanlab]' (cleanlab is AGPL-3.0; see docs/install.md)"


@dataclass
class AuditFold:
    """A fold trained with ``nnUNetTrainerDAD``: its dynamics, settings and where its dataset lives."""

    fold: Path
    dad: Path
    store: DynamicsStore
    config: ScoreConfig
    summary: dict
    dataset: str | None  # DatasetXXX_Name, from the results path

    @property
    def inputs(self) -> list[Path]:
        return [self.dad / n for n in ("dynamics.npz", "scores.csv", "summary.json", "state.json")]


def load_audit_fold(path: Path, mode: str = "auto") -> AuditFold:
    """Read ``<fold>/dad/dynamics.npz`` and the run's DAD settings (``summary.json``).

    ``mode``: ``auto`` (the fold's: exact mode when it was on), ``online`` or ``exact``.
    """
    path = path.expanduser()
    if not path.is_dir():
        raise DietError(f"{path}: no such fold folder")
    dad = path if path.name == "dad" else path / "dad"
    if not dad.is_dir():
        raise DietError(f"{path}: no dad/ folder; train this fold with nnUNetTrainerDAD (docs/nnunet.md) to audit it")
    if not (dad / "dynamics.npz").is_file():
        raise DietError(f"{dad / 'dynamics.npz'}: missing; the audit needs the per-epoch records of the DAD trainer")
    store = DynamicsStore.load(dad / "dynamics.npz")
    summary: dict = {}
    if (dad / "summary.json").is_file():
        try:
            summary = json.loads((dad / "summary.json").read_text())
        except ValueError as exc:
            raise DietError(f"{dad / 'summary.json'}: not JSON ({exc})") from None
    known = {f.name for f in fields(DADConfig)}
    settings = DADConfig(**{k: v for k, v in (summary.get("settings") or {}).items() if k in known})
    config = settings.score_config()
    if mode == "online" or (mode == "auto" and config.dad_series not in store):
        config = ScoreConfig(**{**vars(config), "dad_series": "dice"})
    elif mode == "exact":
        if "dice_exact" not in store:
            raise DietError(f"{dad / 'dynamics.npz'}: no exact-mode records (train with NNUNET_DIET_EXACT_EVERY=1)")
        config = ScoreConfig(**{**vars(config), "dad_series": "dice_exact"})
    fold = dad.parent
    run = fold.parent
    dataset = run.parent.name if run.parent.name.startswith("Dataset") else None
    return AuditFold(fold, dad, store, config, summary, dataset)


def _results_root(fold: Path) -> Path:
    return fold.parent.parent.parent


def find_raw(audit: AuditFold, raw: Path | None) -> Path | None:
    """The raw dataset folder: ``raw``, else ``$nnUNet_raw/<Dataset>``, else ``<results>/../nnUNet_raw/<Dataset>``."""
    if raw is not None:
        if not (raw / "dataset.json").is_file():
            raise DietError(f"{raw}: --raw is not an nnU-Net raw dataset folder (no dataset.json)")
        return raw
    if audit.dataset is None:
        return None
    for base in (os.environ.get("nnUNet_raw"), _results_root(audit.fold).parent / "nnUNet_raw"):
        if base and (Path(base) / audit.dataset / "dataset.json").is_file():
            return Path(base) / audit.dataset
    return None


def label_files(raw: Path, cases: list[str]) -> dict[str, dict]:
    """The raw dataset's files of the audited ``cases`` (``{"images": [...], "label": ...}``, as nnU-Net
    lists them, in the dataset's own file ending), each label on its image's voxel grid."""
    _, files = raw_cases(raw, need_labels=False)
    for case in cases:
        if case not in files:
            raise DietError(f"{raw / 'imagesTr'}: no image of case {case} (it is in the audited fold's training list)")
        if not Path(files[case]["label"]).is_file():
            raise DietError(f"{files[case]['label']}: missing (case {case} is in the audited fold's training list)")
    mine = {c: files[c] for c in cases}
    check_grids(mine)
    return mine


def out_of_fold_predictions(run: Path, cases: list[str], dataset: str | None) -> dict[str, Path]:
    """``case -> <run>/fold_k/validation/<case>.npz``, one per case, from the folds where it was validated."""
    run = run.expanduser()
    if not run.is_dir():
        raise DietError(f"{run}: --cleanlab is not a folder (expected an nnU-Net run folder with fold_0 ... fold_4)")
    if run.name.startswith("fold_"):
        raise DietError(f"{run}: --cleanlab takes the run folder that holds fold_0 ... fold_4, not one fold")
    other = run.parent.name
    if dataset and other.startswith("Dataset") and other != dataset:
        raise DietError(f"{run}: out-of-fold predictions of {other}, but the audited fold is of {dataset}")
    found: dict[str, Path] = {}
    folds = sorted(p for p in run.glob("fold_*") if p.is_dir())
    if not folds:
        raise DietError(f"{run}: no fold_* folders; train the five folds with nnUNetv2_train ... --npz")
    for fold in folds:
        for npz in sorted((fold / "validation").glob("*.npz")):
            case = npz.name.removesuffix(".npz")
            if case in found:
                raise DietError(f"{npz}: case {case} is validated in two folds ({found[case].parent.parent.name} "
                                "too): not one cross-validation")
            found[case] = npz
    foreign = sorted(set(found) - set(cases))
    if foreign and not set(found) & set(cases):
        raise DietError(f"{found[foreign[0]]}: case {foreign[0]} is not a case of the audited fold "
                        f"({len(foreign)} such files): predictions of another dataset?")
    missing = [c for c in cases if c not in found]
    if missing:
        raise DietError(f"{run}/fold_*/validation/{missing[0]}.npz: missing ({len(missing)} of {len(cases)} cases "
                        "have no out-of-fold prediction); train all five folds with nnUNetv2_train ... --npz "
                        "(or rerun a trained fold with --val --npz)")
    return {c: found[c] for c in cases}


def _reader_and_labels(run: Path):
    """nnU-Net's image reader of the run's plans, and its label manager (plain labels, no regions, no ignore)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    for name in ("plans.json", "dataset.json"):
        if not (run / name).is_file():
            raise DietError(f"{run / name}: missing; not an nnU-Net run folder")
    plans = PlansManager(str(run / "plans.json"))
    labels = plans.get_label_manager(read_dataset_json(run))
    if labels.has_regions or labels.has_ignore_label:
        raise DietError(f"{run / 'dataset.json'}: region-based or ignore-label training; cleanlab needs one "
                        "softmax over plain labels")
    return plans.image_reader_writer_class(), labels


def cleanlab_scores(run: Path, cases: list[str], labels: dict[str, Path], dataset: str | None) -> np.ndarray:
    """cleanlab's label-quality score (softmin, lower = more likely mislabeled) of each case, from the
    out-of-fold softmax nnU-Net wrote (``validation/<case>.npz``, key ``probabilities``, in the raw image's
    geometry) and the case's label file read with the same nnU-Net reader; 3D folded as the module says."""
    predictions = out_of_fold_predictions(run, cases, dataset)  # the file checks first: they need no cleanlab
    reader, label_manager = _reader_and_labels(run)
    try:
        from cleanlab.segmentation.rank import get_label_quality_scores
    except ImportError:
        raise DietError(f"--cleanlab needs cleanlab: {INSTALL_CLEANLAB}") from None
    n_classes = label_manager.num_segmentation_heads
    scores = np.empty(len(cases))
    for i, case in enumerate(cases):
        try:
            with np.load(predictions[case]) as npz:
                probs = np.asarray(npz["probabilities"], dtype=np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise DietError(f"{predictions[case]}: not an nnU-Net prediction with 'probabilities' ({exc})") from None
        seg = np.asarray(reader.read_seg(str(labels[case]))[0][0])
        if probs.shape[0] != n_classes:
            raise DietError(f"{predictions[case]}: {probs.shape[0]} classes, the dataset has {n_classes}: "
                            "predictions of another dataset?")
        if probs.shape[1:] != seg.shape:
            raise DietError(f"{labels[case]}: shape {seg.shape} does not match its image (the out-of-fold "
                            f"prediction {predictions[case].name} has {probs.shape[1:]})")
        if seg.min() < 0 or seg.max() >= n_classes:
            raise DietError(f"{labels[case]}: label values {seg.min()}..{seg.max()} outside 0..{n_classes - 1}")
        rows = int(np.prod(seg.shape[:-1]))
        image_scores, _ = get_label_quality_scores(seg.reshape(1, rows, seg.shape[-1]).astype(np.int64),
                                                   probs.reshape(1, n_classes, rows, seg.shape[-1]), verbose=False)
        scores[i] = float(image_scores[0])
    return scores


def audit_fold(audit: AuditFold, *, raw: Path | None = None, cleanlab_run: Path | None = None,
               thresholds: AuditConfig = AuditConfig()) -> tuple[pd.DataFrame, dict]:
    """The per-case audit table of a fold (review order), with the cleanlab column when ``cleanlab_run`` is
    given; checks every label against its image when the raw dataset is found. Returns (table, summary)."""
    cases = [str(c) for c in audit.store.ids]
    raw_dir = find_raw(audit, raw)
    files = label_files(raw_dir, cases) if raw_dir is not None else None
    extra = None
    if cleanlab_run is not None:
        if files is None:
            raise DietError(f"{audit.fold}: --cleanlab needs the labels: no raw dataset found for "
                            f"{audit.dataset or 'this fold'} (pass --raw DIR or set nnUNet_raw)")
        extra = {"cleanlab": cleanlab_scores(cleanlab_run, cases, {c: Path(f["label"]) for c, f in files.items()},
                                             audit.dataset)}
    cols, summary = audit_table(audit.store, audit.config, thresholds, extra)
    summary.update(raw=str(raw_dir) if raw_dir else None, cleanlab_run=str(cleanlab_run) if cleanlab_run else None,
                   labels_checked=files is not None)
    return pd.DataFrame(cols), summary
