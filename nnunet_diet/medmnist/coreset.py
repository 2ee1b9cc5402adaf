"""Retrain on a coreset of a recorded run and evaluate on the test split.

Schedules: ``epochs`` keeps the full run's epoch count, so a coreset of M samples gets about M/N of
the iterations (the EVA and DeepCore convention); ``iterations`` keeps the full run's iteration
count, ``ceil(E * ceil(N/B) / ceil(M/B))`` epochs (the CCS convention). Everything else (model,
optimiser, schedule shape, batch size) is the full run's; the seed is the coreset's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_write_text
from ..core.errors import DietError
from .config import SCHEDULES
from .data import read_npz
from .distributed import Context
from .trainer import CONFIG, TrainConfig, TrainResult, train

__all__ = ["SCHEDULES", "Coreset", "coreset_epochs", "keep_list_coreset", "run_config", "retrain"]


@dataclass(frozen=True)
class Coreset:
    """A coreset of a run: who chose it and the kept train rows."""

    method: str
    rate: float
    seed: int
    ids: np.ndarray
    class_balance: bool | str = False  # True / "on": every class at its share; "floor", "floor-prune", "floor-strata"
    class_norm: str | None = None

    @property
    def name(self) -> str:
        suffix = {True: "_balanced", "on": "_balanced", "floor": "_floor", "floor-prune": "_floorprune",
                  "floor-strata": "_floorstrata"}.get(self.class_balance, "")
        return (f"{self.method}_{self.rate:g}_seed{self.seed}" + suffix
                + (f"_{self.class_norm}norm" if self.class_norm else ""))


def keep_list_coreset(path: Path, n_train: int, seed: int = 0) -> Coreset:
    """The coreset a keep table names: ``id`` = training row, ``keep`` = 1/0, one row per training sample
    (e.g. ``nnunet-diet meddel`` on ``nnunet-diet embed --npz``). Its method is ``keep-<file stem>``."""
    import pandas as pd

    from ..nnunet.splits import keep_flags, read_scores

    table = read_scores(Path(path), "keep")
    rows = pd.to_numeric(table["id"], errors="coerce").to_numpy()
    bad = np.isnan(rows) | (rows != np.round(rows))
    if bad.any():
        raise DietError(f"{path}: ids must be training-row indices (integers), got {table['id'][bad].iloc[0]!r}")
    rows = rows.astype(np.int64)
    outside = rows[(rows < 0) | (rows >= n_train)]
    if len(outside):
        raise DietError(f"{path}: id {outside[0]} is not a training row (the run has rows 0-{n_train - 1})")
    if len(rows) != n_train:
        raise DietError(f"{path}: lists {len(rows)} of the run's {n_train} training rows; a keep list names every row")
    keep = keep_flags(table["keep"], path)
    if not keep.any():
        raise DietError(f"{path}: keeps no sample")
    return Coreset(f"keep-{Path(path).stem}", float(keep.mean()), seed, np.sort(rows[keep]))


def coreset_epochs(config: TrainConfig, n_full: int, n_kept: int, schedule: str, world: int = 1) -> int:
    """Epochs of the coreset run under ``schedule`` (see the module docstring)."""
    if schedule not in SCHEDULES:
        raise DietError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "epochs":
        return config.epochs
    full = config.epochs * config.iterations_per_epoch(n_full, world)
    return -(-full // config.iterations_per_epoch(n_kept, world))


def run_config(run: str | Path) -> dict:
    """``config.json`` of a run folder written by :func:`~nnunet_diet.medmnist.trainer.train`."""
    path = Path(run) / CONFIG
    if not path.is_file():
        raise DietError(f"{path}: missing; is {run} a run folder of 'nnunet-diet medmnist train'?")
    return json.loads(path.read_text())


def retrain(run: str | Path, coreset: Coreset, *, schedule: str = "epochs", progress: bool = True,
            ctx: Context | None = None) -> TrainResult:
    """Train from scratch on ``coreset.ids`` with the run's settings, in ``run/coresets/<name>_<schedule>/``."""
    info = run_config(run)
    data = read_npz(info["data"])
    base = TrainConfig(**info["train"])
    world = ctx.world if ctx else 1
    config = replace(base, seed=coreset.seed,
                     epochs=coreset_epochs(base, info["n_train"], len(coreset.ids), schedule, world))
    out = Path(run) / "coresets" / f"{coreset.name}_{schedule}"
    if ctx is None or ctx.main:
        atomic_write_text(out / "kept.txt", "\n".join(map(str, coreset.ids)) + "\n")
    return train(data, out, config, rows=coreset.ids, record=False, progress=progress, ctx=ctx)
