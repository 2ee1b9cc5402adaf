"""What ``nnUNetTrainerDAD`` leaves in ``<fold>/dad/``: scores, plots and a summary."""

from __future__ import annotations

from pathlib import Path

from ..core.store import DynamicsStore
from ..report.plots import write_dad_plots
from ..report.tables import write_score_table
from .config import DADConfig


def write_outputs(store: DynamicsStore, config: DADConfig, folder: Path, *, num_epochs: int,
                  stop_epoch: int | None, seconds: dict | None = None) -> dict:
    """``scores.csv`` (id, group, dad, sigma, region, dad_rank, el2n, el2nx), ``summary.json``,
    ``moving_distance.png`` and ``data_map.png``; returns the summary. ``seconds``: wall time of the
    trained epochs and of exact mode's evaluations in them (``{"epochs": ..., "exact_mode": ...}``),
    written as ``summary["seconds"]`` so that what the stop saved can be stated in time too."""
    trained = store.n_epochs
    extra = {
        "epochs_trained": trained,
        "num_epochs": num_epochs,
        "stopped_early": stop_epoch is not None and trained < num_epochs,
        "compute_saved": round(1 - trained / num_epochs, 4),
        "settings": vars(config),
    }
    if seconds is not None:
        extra["seconds"] = {k: round(float(v), 2) for k, v in seconds.items()}
    table, summary = write_score_table(store, config.score_config(), folder / "scores.csv",
                                       folder / "summary.json", extra)
    write_dad_plots(table, summary, folder, config.window, config.threshold if config.stop_rule == "paper" else None)
    return summary
