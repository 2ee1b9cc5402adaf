"""The EVA paper's table on one MedMNIST dataset: per seed, a full recorded run, then every method's
coreset at every rate, retrained and tested; results as CSV and a markdown table (mean ± std).

Per seed s: train on the full training split with seed s (its test accuracy is the full-data row),
score it, and for each rate and method select with seed s and retrain with seed s. Runs already
finished in ``out`` are picked up from their checkpoints, so an interrupted bench resumes. Every row
carries its class distribution (``share_<c>``, ``full_share_<c>``, ``class_shift``: the classes below
half their full-data share) and the selection setting (``class_balance``, ``class_norm``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..core.atomic import atomic_write_text
from ..core.class_shift import ClassShift
from ..core.scores import ScoreConfig
from .coreset import Coreset, retrain
from .data import MedMNISTData
from .distributed import Context
from .selection import FLOORS, balance_setting, coreset_shift, resolve_floor, score_run, select_coreset
from .trainer import TrainConfig, TrainResult, train

__all__ = ["result_row", "setting_label", "markdown_table", "write_tables", "run_coreset", "bench"]

ACCURACIES = {"final_test_acc": "final test accuracy", "best_test_acc": "test accuracy at the best-validation epoch",
              "final_val_acc": "final validation accuracy"}


def result_row(method: str, rate: float, seed: int, result: TrainResult, schedule: str,
               shift: ClassShift | None = None, class_balance: str = "off", class_norm: str | None = None) -> dict:
    """One CSV row: who (method and selection setting), how much, how long, how well, which classes."""
    row = {"method": method, "rate": rate, "seed": seed, "schedule": schedule, "class_balance": class_balance,
           "class_norm": class_norm or "", "n_kept": result.n_train, "epochs": result.epochs,
           "iterations": result.iterations, "final_val_acc": result.final_val_acc, "final_test_acc": result.final_test_acc,
           "best_val_epoch": result.best_val_epoch, "best_test_acc": result.best_test_acc,
           "train_seconds": round(result.train_seconds, 1)}
    return {**row, **(shift.columns() if shift is not None else {})}


def setting_label(row: pd.Series | dict) -> str:
    """``method`` plus its selection setting, e.g. ``eva (balance auto, zscore norm)`` (auto is one
    setting whatever it resolved to in each seed)."""
    balance = str(row.get("class_balance", "") or "").split(":")[0]
    norm = str(row.get("class_norm", "") or "")
    parts = ([f"balance {balance}"] if balance not in ("", "off", "nan") else []) + \
        ([f"{norm} norm"] if norm not in ("", "nan") else [])
    return row["method"] + (f" ({', '.join(parts)})" if parts else "")


def _cell(values: pd.Series) -> str:
    v = 100 * values.dropna().to_numpy(float)
    if len(v) == 0:
        return ""
    if len(v) == 1:
        return f"{v[0]:.2f} (n=1)"
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def _shares(rows: pd.DataFrame, classes: list[str]) -> str:
    """Mean kept share of each class, e.g. ``0: 80.0 / 1: 20.0``, with the shifted seeds counted."""
    text = " / ".join(f"{c}: {100 * rows[f'share_{c}'].mean():.1f}" for c in classes)
    shifted = int((rows["class_shift"].fillna("").astype(str) != "").sum()) if "class_shift" in rows else 0
    return text + (f" (shifted in {shifted}/{len(rows)})" if shifted else "")


def markdown_table(results: pd.DataFrame) -> str:
    """Methods (with their selection setting) x rates, test accuracy in % as mean ± sample std over
    seeds for each accuracy kind, then the mean kept share of each class."""
    results = results.assign(label=[setting_label(r) for _, r in results.iterrows()])
    full = results[results["method"] == "full"]
    coresets = results[results["method"] != "full"]
    rates = sorted(coresets["rate"].unique())
    classes = [c.removeprefix("share_") for c in results.columns if c.startswith("share_")]
    tables = {column: (f"**{title}** (%, mean ± std over seeds)", lambda rows, c=column: _cell(rows[c]))
              for column, title in ACCURACIES.items()}
    if classes:
        tables["shares"] = ("**kept share of each class** (%, mean over seeds)", lambda rows: _shares(rows, classes))
    parts = []
    for title, cell in tables.values():
        lines = [title, ""]
        if len(full):
            lines += [f"Full data ({int(full['n_kept'].iloc[0])} samples, {len(full)} seeds): {cell(full)}", ""]
        lines += ["| method | " + " | ".join(f"{100 * r:g} %" for r in rates) + " |", "|---|" + "---|" * len(rates)]
        for label in dict.fromkeys(coresets["label"]):
            picked = [coresets[(coresets["label"] == label) & (coresets["rate"] == r)] for r in rates]
            lines.append(f"| {label} | " + " | ".join(cell(p) if len(p) else "" for p in picked) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_tables(results: pd.DataFrame, out: Path) -> None:
    """``out/results.csv`` (one row per run) and ``out/results.md`` (the summary table)."""
    atomic_write_text(out / "results.csv", results.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "results.md", markdown_table(results))


def run_coreset(run: Path, frame: pd.DataFrame, method: str, rate: float, seed: int, *, schedule: str = "epochs",
                class_balance: bool | str = "off", class_norm: str | None = None, hard_prune: float = 0.1,
                tag: str = "", progress: bool = True, ctx: Context | None = None,
                log: Callable[[str], None] = print) -> dict:
    """Select one coreset of a scored run, log its class shift, retrain and return its result row.
    ``tag`` names a scoring variant (e.g. other EVA windows): the row's method and folder become
    ``method-tag``."""
    options = dict(class_norm=class_norm, hard_prune=hard_prune, seed=seed)
    requested = balance_setting(class_balance)
    ids = select_coreset(frame, method, rate, class_balance=requested, **options)
    floor = requested in FLOORS and method != "ccs"
    done = resolve_floor(frame, method, rate, ids, requested, **options) if floor else requested
    shift = coreset_shift(frame, ids)
    name = f"{method}-{tag}" if tag else method
    result = retrain(run, Coreset(name, rate, seed, ids, done, class_norm), schedule=schedule,
                     progress=progress, ctx=ctx)
    setting = f"{requested}: {done}" if floor else done
    row = result_row(name, rate, seed, result, schedule, shift, setting, class_norm)
    log(f"seed {seed}: {setting_label(row)} {100 * rate:g} % ({len(ids)} samples, {result.epochs} epochs) "
        f"test accuracy {result.final_test_acc:.4f} (at best val {result.best_test_acc:.4f})")
    for line in shift.warnings():
        log(f"seed {seed}: {setting_label(row)} {100 * rate:g} %: {line}")
    return row


def bench(data: MedMNISTData, out: str | Path, config: TrainConfig, *, methods: Sequence[str],
          rates: Sequence[float], seeds: Sequence[int], score_config: ScoreConfig = ScoreConfig(),
          schedule: str = "epochs", class_balance: bool | str = "off", class_norm: str | None = None,
          hard_prune: float = 0.1, progress: bool = True, ctx: Context | None = None,
          log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the whole table; the tables in ``out`` are rewritten after every run (partial results stay).
    Class-shift warnings go to ``log`` after each coreset."""
    out = Path(out)
    main = ctx is None or ctx.main
    rows: list[dict] = []
    for seed in seeds:
        run = out / f"seed{seed}"
        full = train(data, run, replace(config, seed=seed), record=True, progress=progress, ctx=ctx)
        frame = score_run(run, score_config)
        rows.append(result_row("full", 1.0, seed, full, "full", coreset_shift(frame, frame["id"].to_numpy())))
        log(f"seed {seed}: full data ({full.n_train} samples) test accuracy {full.final_test_acc:.4f}")
        for rate in rates:
            for method in methods:
                ranked = method not in ("random", "ccs")  # CCS stratifies by score; random has no score
                row = run_coreset(run, frame, method, rate, seed, schedule=schedule,
                                  class_balance=class_balance if method != "ccs" else "off",
                                  class_norm=class_norm if ranked else None,
                                  hard_prune=hard_prune, progress=progress, ctx=ctx, log=log)
                rows.append(row)
                if main:
                    write_tables(pd.DataFrame(rows), out)
    results = pd.DataFrame(rows)
    if main:
        write_tables(results, out)
    return results

