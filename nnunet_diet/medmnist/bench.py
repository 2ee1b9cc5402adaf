"""The EVA paper's table on one MedMNIST dataset: per seed, a full recorded run, then every method's
coreset at every rate, retrained and tested; results as CSV and a markdown table (mean ± std).

Per seed s: train on the full training split with seed s (its test accuracy is the full-data row),
score it, and for each rate and method select with seed s and retrain with seed s. Runs already
finished in ``out`` are picked up from their checkpoints, so an interrupted bench resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..core.atomic import atomic_write_text
from ..core.scores import ScoreConfig
from .coreset import Coreset, retrain
from .data import MedMNISTData
from .distributed import Context
from .selection import score_run, select_coreset
from .trainer import TrainConfig, TrainResult, train

__all__ = ["result_row", "markdown_table", "write_tables", "bench"]

ACCURACIES = {"final_test_acc": "final test accuracy", "best_test_acc": "test accuracy at the best-validation epoch"}


def result_row(method: str, rate: float, seed: int, result: TrainResult, schedule: str) -> dict:
    """One CSV row: who, how much, how long and how well."""
    return {"method": method, "rate": rate, "seed": seed, "schedule": schedule, "n_kept": result.n_train,
            "epochs": result.epochs, "iterations": result.iterations, "final_test_acc": result.final_test_acc,
            "best_val_epoch": result.best_val_epoch, "best_test_acc": result.best_test_acc,
            "train_seconds": round(result.train_seconds, 1)}


def _cell(values: pd.Series) -> str:
    v = 100 * values.to_numpy(float)
    if len(v) == 1:
        return f"{v[0]:.2f} (n=1)"
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def markdown_table(results: pd.DataFrame) -> str:
    """Methods x rates, test accuracy in % as mean ± sample std over seeds, for each accuracy kind."""
    parts = []
    for column, title in ACCURACIES.items():
        full = results[results["method"] == "full"]
        coresets = results[results["method"] != "full"]
        rates = sorted(coresets["rate"].unique())
        lines = [f"**{title}** (%, mean ± std over seeds)", ""]
        if len(full):
            n_full = int(full["n_kept"].iloc[0])
            lines += [f"Full data ({n_full} samples, {len(full)} seeds): {_cell(full[column])}", ""]
        lines += ["| method | " + " | ".join(f"{100 * r:g} %" for r in rates) + " |", "|---|" + "---|" * len(rates)]
        for method in dict.fromkeys(coresets["method"]):
            cells = [coresets[(coresets["method"] == method) & (coresets["rate"] == r)][column] for r in rates]
            lines.append(f"| {method} | " + " | ".join(_cell(c) if len(c) else "" for c in cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_tables(results: pd.DataFrame, out: Path) -> None:
    """``out/results.csv`` (one row per run) and ``out/results.md`` (the summary table)."""
    atomic_write_text(out / "results.csv", results.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "results.md", markdown_table(results))


def bench(data: MedMNISTData, out: str | Path, config: TrainConfig, *, methods: Sequence[str],
          rates: Sequence[float], seeds: Sequence[int], score_config: ScoreConfig = ScoreConfig(),
          schedule: str = "epochs", class_balance: bool = False, hard_prune: float = 0.1,
          progress: bool = True, ctx: Context | None = None,
          log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the whole table; the tables in ``out`` are rewritten after every run (partial results stay)."""
    out = Path(out)
    main = ctx is None or ctx.main
    rows: list[dict] = []
    for seed in seeds:
        run = out / f"seed{seed}"
        full = train(data, run, replace(config, seed=seed), record=True, progress=progress, ctx=ctx)
        rows.append(result_row("full", 1.0, seed, full, "full"))
        log(f"seed {seed}: full data ({full.n_train} samples) test accuracy {full.final_test_acc:.4f}")
        frame = score_run(run, score_config)
        for rate in rates:
            for method in methods:
                ids = select_coreset(frame, method, rate, class_balance=class_balance, hard_prune=hard_prune, seed=seed)
                result = retrain(run, Coreset(method, rate, seed, ids, class_balance), schedule=schedule,
                                 progress=progress, ctx=ctx)
                rows.append(result_row(method, rate, seed, result, schedule))
                log(f"seed {seed}: {method} {100 * rate:g} % ({len(ids)} samples, {result.epochs} epochs) "
                    f"test accuracy {result.final_test_acc:.4f} (at best val {result.best_test_acc:.4f})")
                if main:
                    write_tables(pd.DataFrame(rows), out)
    results = pd.DataFrame(rows)
    if main:
        write_tables(results, out)
    return results

