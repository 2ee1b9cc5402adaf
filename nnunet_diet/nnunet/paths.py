"""Locating a dataset's folders through nnU-Net's own environment variables and name lookup."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import DietError


def _env_folder(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        raise DietError(f"environment variable {name} is not set (nnU-Net needs nnUNet_raw, nnUNet_preprocessed "
                        "and nnUNet_results)")
    return Path(value)


def dataset_name(dataset: str | int) -> str:
    """``4`` / ``Dataset004_Hippocampus`` -> ``Dataset004_Hippocampus`` (nnU-Net's lookup)."""
    _env_folder("nnUNet_preprocessed")
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(str(dataset))
    except (RuntimeError, ValueError):  # nnU-Net's message spans five lines and lists the folders
        folders = ", ".join(f"{k}={os.environ.get(k) or '(unset)'}" for k in ("nnUNet_raw", "nnUNet_preprocessed",
                                                                           "nnUNet_results"))
        raise DietError(f"unknown dataset {dataset!r}: nnU-Net finds no dataset with this id or name in "
                        f"{folders}") from None


def preprocessed_folder(dataset: str | int) -> Path:
    folder = _env_folder("nnUNet_preprocessed") / dataset_name(dataset)
    if not folder.is_dir():
        raise DietError(f"{folder}: no preprocessed dataset (run nnUNetv2_plan_and_preprocess first)")
    return folder


def results_fold_folder(dataset: str | int, trainer: str, plans: str, configuration: str, fold: int | str) -> Path:
    run = f"{trainer}__{plans}__{configuration}"
    return _env_folder("nnUNet_results") / dataset_name(dataset) / run / f"fold_{fold}"
