"""nnU-Net's ``splits_final.json``: read, create as nnU-Net would, prune a fold, write safely."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import atomic_write_text, backup
from ..core.errors import DietError, check_fraction
from ..core.scores import EASY_END
from ..core.selection import KEEP_MODES, select

SPLITS_FILE = "splits_final.json"


def case_identifiers(preprocessed: Path, data_identifier: str) -> list[str]:
    """Sorted case ids of a configuration's preprocessed data (nnU-Net's ``get_identifiers``)."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    data = preprocessed / data_identifier
    if not data.is_dir():
        raise DietError(f"{data}: no preprocessed data for this configuration")
    return sorted(infer_dataset_class(str(data)).get_identifiers(str(data)))


def read_splits(path: Path) -> list[dict]:
    """Load and check ``splits_final.json``: a list of {"train": [...], "val": [...]}."""
    try:
        splits = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DietError(f"{path}: malformed split file, not JSON ({exc})") from None
    ok = isinstance(splits, list) and all(
        isinstance(s, dict) and isinstance(s.get("train"), list) and isinstance(s.get("val"), list)
        and all(isinstance(i, str) for i in s["train"] + s["val"]) for s in splits)
    if not ok:
        raise DietError(f"{path}: malformed split file (expected a list of {{'train': [ids], 'val': [ids]}})")
    return splits


def load_or_create_splits(preprocessed: Path, identifiers: list[str]) -> tuple[list[dict], bool]:
    """The dataset's splits; created as nnU-Net's ``do_split`` would (5-fold KFold, seed 12345, over
    the sorted identifiers) when the file does not exist yet. Returns ``(splits, created)``."""
    path = preprocessed / SPLITS_FILE
    if path.is_file():
        return read_splits(path), False
    if path.exists():
        raise DietError(f"{path}: is not a file (a folder?); nnU-Net's split file must be a JSON file")
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    if len(identifiers) < 5:
        raise DietError(f"{preprocessed}: {len(identifiers)} cases; nnU-Net's 5-fold split needs at least 5")
    splits = generate_crossval_split(sorted(identifiers), seed=12345, n_splits=5)
    return [{"train": [str(i) for i in s["train"]], "val": [str(i) for i in s["val"]]} for s in splits], True


def write_splits(path: Path, splits: list[dict]) -> Path | None:
    """Write atomically; an existing file is first copied to ``<name>.<timestamp>.bak``. Returns the backup."""
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise DietError(f"{path.parent}: read-only folder, cannot write {path.name} (nothing written)")
    copy = backup(path)
    atomic_write_text(path, json.dumps(splits, indent=4))
    return copy


def read_scores(path: Path, column: str) -> pd.DataFrame:
    """A per-case table with an ``id`` (or ``case``) column and the score ``column``."""
    if not path.is_file():
        raise DietError(f"{path}: no such scores file")
    try:
        table = pd.read_csv(path, dtype={"id": str, "case": str, "group": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise DietError(f"{path}: not a readable CSV ({exc})") from None
    if "id" not in table.columns and "case" in table.columns:
        table = table.rename(columns={"case": "id"})
    if "id" not in table.columns:
        raise DietError(f"{path}: no 'id' (or 'case') column")
    dup = table["id"][table["id"].duplicated()]
    if len(dup):
        raise DietError(f"{path}: duplicate ids, e.g. {dup.iloc[0]}")
    if column != "random" and column not in table.columns:
        raise DietError(f"{path}: no score column {column!r} (columns: {', '.join(table.columns)})")
    if table.empty:
        raise DietError(f"{path}: no rows (only a header)")
    if column not in ("random", "keep"):
        table[column] = numeric_column(table, column, path)
    return table


def numeric_column(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """``table[column]`` as floats (blank = NaN, the mark of an unscored case); text or +-inf is an error
    naming the file, the column and the first bad row."""
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
    text = np.isnan(values) & table[column].notna().to_numpy()
    bad = text | np.isinf(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DietError(f"{path}: column {column!r} must hold numbers (blank for none), got "
                        f"{table[column].iloc[row]!r} on line {row + 2}")
    return values


@dataclass
class PruneResult:
    train: list[str]       # new training list, in the fold's order
    removed: list[str]
    table: pd.DataFrame     # per-case: id, group, score, kept


def prune_fold(train: list[str], scores: pd.DataFrame, column: str, rate: float, mode: str, *,
               groups: np.ndarray | None = None, easy_end: str | None = None, seed: int = 0,
               unscored: str = "keep") -> PruneResult:
    """Remove a fraction ``rate`` of the training cases.

    ``mode`` names what is kept: ``ambiguous`` (both tails q/2 removed, the DAD paper's default),
    ``easy`` (the hardest q removed), ``hard`` (the easiest q removed), ``random``. ``easy_end``
    says which end of ``column`` is easy (``high`` for DAD; ``low`` for EL2N / EL2Nx).
    ``unscored``: cases whose score is NaN (not drawn in the scoring window) are kept (``keep``,
    default: nothing is known against them), removed (``remove``) or an error (``error``).
    """
    rate = check_fraction(rate, "rate")
    if mode not in KEEP_MODES:
        raise DietError(f"unknown mode {mode!r}; choose one of {', '.join(KEEP_MODES)}")
    if len(set(train)) != len(train):
        raise DietError("the fold's training list has duplicate ids")
    by_id = scores.set_index("id")
    missing = [i for i in train if i not in by_id.index]
    if missing:
        raise DietError(f"{len(missing)} training case(s) have no score, e.g. {missing[0]}")
    values = None
    if mode != "random":
        easy_end = easy_end or EASY_END.get(column)
        if easy_end not in ("high", "low"):
            raise DietError(f"say which end of {column!r} is easy (--easy-end high|low)")
        values = by_id.loc[train, column].to_numpy(float)
        if unscored == "error" and not np.isfinite(values).all():
            bad = [i for i, v in zip(train, values) if not np.isfinite(v)]
            raise DietError(f"{len(bad)} training case(s) have no {column} value, e.g. {bad[0]}")
        easiness = values if easy_end == "high" else -values
    else:
        easiness = None
    selector = KEEP_MODES[mode]  # over the easiness: high = easy
    if unscored not in ("keep", "remove", "error"):
        raise DietError(f"unscored must be keep, remove or error, got {unscored!r}")
    kept_idx = select(easiness, 1 - rate, selector, groups=groups, seed=seed, n=len(train),
                      nan_policy="raise" if unscored == "error" else unscored)
    kept = np.zeros(len(train), bool)
    kept[kept_idx] = True
    if not kept.any():
        raise DietError(f"no training case left: all {len(train)} have no {column} value and unscored cases are "
                        "removed (--unscored remove); use --unscored keep or score them")
    table = pd.DataFrame({"id": train, "group": groups if groups is not None else "all",
                          "score": values if values is not None else np.nan, "kept": kept})
    return PruneResult([i for i, k in zip(train, kept) if k], [i for i, k in zip(train, kept) if not k], table)


KEEP_VALUES = {"1": True, "0": False, "1.0": True, "0.0": False, "true": True, "false": False, "yes": True,
               "no": False}


def keep_flags(values: pd.Series, path: Path | str) -> np.ndarray:
    """A keep table's ``keep`` column as booleans: 1 / 0, true / false, yes / no (any case); anything else
    (``2``, blank, text) is an error naming ``path`` and the row."""
    keep = values.astype(str).str.strip().str.lower().map(KEEP_VALUES)
    if keep.isna().any():
        row = int(np.flatnonzero(keep.isna().to_numpy())[0])
        raise DietError(f"{path}: keep must be 1/0, true/false or yes/no, got {values.iloc[row]!r} on line {row + 2}")
    return keep.to_numpy(bool)


def keep_fold(train: list[str], keep: pd.DataFrame, path: Path | str = "keep list") -> PruneResult:
    """Keep exactly the training cases whose ``keep`` value is 1 / true in a keep table (e.g. from
    ``nnunet-diet meddel``); every training case must be listed, and at least one kept."""
    flags = pd.Series(keep_flags(keep["keep"], path), index=keep["id"])
    missing = [i for i in train if i not in flags.index]
    if missing:
        raise DietError(f"{path}: {len(missing)} training case(s) are not in the keep list, e.g. {missing[0]}")
    kept = flags.loc[train].to_numpy(bool)
    if not kept.any():
        raise DietError(f"{path}: keeps none of the fold's {len(train)} training cases")
    table = pd.DataFrame({"id": train, "group": "all", "score": kept.astype(float), "kept": kept})
    return PruneResult([i for i, k in zip(train, kept) if k], [i for i, k in zip(train, kept) if not k], table)


def summary_table(result: PruneResult) -> pd.DataFrame:
    """Per group: cases before / after, mean score of kept and removed cases."""
    t = result.table
    rows = []
    parts = [*t.groupby("group", sort=True)] if t["group"].nunique() > 1 else []
    for group, part in [*parts, ("total", t)]:
        rows.append({"group": group, "before": len(part), "after": int(part["kept"].sum()),
                     "mean score kept": part.loc[part["kept"], "score"].mean(),
                     "mean score removed": part.loc[~part["kept"], "score"].mean()})
    return pd.DataFrame(rows)
