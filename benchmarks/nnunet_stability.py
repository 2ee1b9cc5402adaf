"""Ranking stability of nnUNetTrainerDAD and every stop rule, online vs exact mode, on reference runs.

Real ``nnUNetv2_train`` runs of ``nnUNetTrainerDADAdam_{E}epochs_{I}iters`` (lite plans, fold 0 and
``--repeats - 1`` copies of it: the same cases trained again; nnU-Net does not seed its runs) with the stop
rule reporting only (``NNUNET_DIET_STOP=0``) and exact mode on (``NNUNET_DIET_EXACT_EVERY=k``), so both
modes are recorded in the same run. Each recorded run is then evaluated offline, for each mode and each
stop-rule setting of ``benchmarks/stop_rule.py`` (the same core functions the trainer calls): where the
rule fires, the compute used by then, and how the DAD ranking at the stop window compares with the ranking
at the last window of the run (top-40 % overlap, kept-set overlap of keep-ambiguous pruning at 0.4,
Spearman). Also: the ranking at fixed budgets, how well two runs' last windows agree (run against run), and how close online DAD is to exact DAD window by window
(Spearman, cases unscored online). Finished trainings are reused; exact mode's cost comes from the logs.

Run:  .venv/bin/python benchmarks/nnunet_stability.py --raw nnunet_diet/examples/hippocampus40 --dataset-id 990 \\
          [--configuration 3d_fullres --epochs 50 --iterations 10 --window 5 --exact-every 1 --repeats 2]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nnunet_runs import NnunetRuns  # noqa: E402
from stop_rule import SETTINGS, TABLE_HEAD, compare, evaluate, fixed_budget, table_row  # noqa: E402

from nnunet_diet.core import DynamicsStore, dad_windows  # noqa: E402
from nnunet_diet.core.stop_rules import spearman  # noqa: E402

MODES = (("online", "dice", 1), ("exact", "dice_exact", 1))  # (name, series, every k-th recorded epoch)
BUDGETS = (0.2, 0.3, 0.5)


def series(store: DynamicsStore, name: str, every: int = 1) -> np.ndarray:
    """The recorded series ``name``, or only its every ``every``-th epoch (epochs k-1, 2k-1, ...; the others
    NaN): what exact mode every ``every`` epochs (``NNUNET_DIET_EXACT_EVERY``) would have recorded."""
    values = store[name]
    if every == 1:
        return values
    out = np.full_like(values, np.nan)
    out[:, every - 1::every] = values[:, every - 1::every]
    return out


def _mean(values: list[float]) -> str:
    finite = [v for v in values if np.isfinite(v)]
    return f"{np.mean(finite):.2f} ({min(finite):.2f})" if finite else "-"


def online_vs_exact(store: DynamicsStore, window: int) -> tuple[float, float]:
    """Mean over windows of Spearman(online DAD, exact DAD) and of the share of cases without an online DAD."""
    online, exact = dad_windows(store["dice"], window)[0], dad_windows(store["dice_exact"], window)[0]
    rho, unscored = [], []
    for a, b in zip(online, exact):
        seen = np.isfinite(a) & np.isfinite(b)
        unscored.append(1 - np.isfinite(a).mean())
        if seen.sum() >= 3:
            rho.append(spearman(a[seen], b[seen]))
    return float(np.nanmean(rho)), float(np.mean(unscored))


def best_within(values: np.ndarray, window: int, share: float) -> float:
    """The highest top-40 % overlap with the last window among the windows ending within ``share`` of the
    recorded epochs (an oracle's stop: the ceiling of any stop rule at that budget)."""
    dad = dad_windows(values, window)[0]
    last = max(1, int(share * values.shape[1] // window))
    return max(compare(dad[w], dad[-1])[0] for w in range(last))


def recorded_epochs(store: DynamicsStore) -> int:
    """Epochs up to the last one with any recorded value (a run cut before the end of its schedule)."""
    seen = np.flatnonzero(np.isfinite(np.stack([store[n] for n in store.names])).any(axis=(0, 1)))
    return int(seen[-1]) + 1 if len(seen) else 0


def over_the_run(stores: list[DynamicsStore], window: int, points: int = 6) -> list[str]:
    """Consecutive-window Spearman of online and exact DAD, and online vs exact DAD of the same window, at
    ``points`` windows spread over the run (mean over the runs): does longer training settle online DAD?"""
    n = min(len(dad_windows(s["dice"], window)[0]) for s in stores)
    marks = sorted({int(round(x)) for x in np.linspace(1, n - 1, points)})
    rows = {"online, window w-1 vs w": [], "exact, window w-1 vs w": [], "online vs exact, window w": []}
    for s in stores:
        on, ex = dad_windows(s["dice"], window)[0], dad_windows(s["dice_exact"], window)[0]
        rows["online, window w-1 vs w"].append([_rho(on[w - 1], on[w]) for w in marks])
        rows["exact, window w-1 vs w"].append([_rho(ex[w - 1], ex[w]) for w in marks])
        rows["online vs exact, window w"].append([_rho(on[w], ex[w]) for w in marks])
    lines = ["", "### Over the run: Spearman, mean over the runs", "",
             "| window ending at epoch | " + " | ".join(str((w + 1) * window - 1) for w in marks) + " |",
             "|---|" + "---|" * len(marks)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in np.nanmean(values, axis=0)) + " |")
    return lines


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    seen = np.isfinite(a) & np.isfinite(b)
    return spearman(a[seen], b[seen]) if seen.sum() >= 3 else np.nan


def report(stores: list[DynamicsStore], window: int, modes: tuple = MODES) -> list[str]:
    lines = ["### Every run", "", *TABLE_HEAD]
    outcomes = {}
    for r, store in enumerate(stores):
        for mode, name, every in modes:
            for setting in SETTINGS:
                out = evaluate(series(store, name, every), window, setting)
                outcomes.setdefault((mode, str(setting)), []).append(out)
                lines.append(table_row(f"repeat {r}, {mode} | {setting}", out))
    lines += ["", f"### Over the {len(stores)} runs: mean (worst); fired = runs where the rule fired", "",
              "| mode | rule | fired | stop epoch | compute used | top-40 % overlap | kept overlap | Spearman |",
              "|---|---|---|---|---|---|---|---|"]
    for (mode, setting), outs in outcomes.items():
        fired = [o for o in outs if o.stop_epoch is not None]
        stops = ", ".join(str(o.stop_epoch) if o.stop_epoch is not None else "never" for o in outs)
        lines.append(f"| {mode} | {setting} | {len(fired)}/{len(outs)} | {stops} | "
                     f"{_mean([o.used for o in outs])} | {_mean([o.top for o in outs])} | "
                     f"{_mean([o.kept for o in outs])} | {_mean([o.rho for o in outs])} |")
    lines += ["", "### Fixed budgets: top-40 % overlap with the end, mean (worst) over the runs", "",
              "| budget | " + " | ".join(m for m, _, _ in modes) + " |", "|---|" + "---|" * len(modes)]
    for share in BUDGETS:
        cells = []
        for _, name, every in modes:
            tops = [fixed_budget(series(s, name, every), window, share)[1][0] for s in stores]
            best = [best_within(series(s, name, every), window, share) for s in stores]
            cells.append(f"{_mean(tops)}; best {_mean(best)}")
        lines.append(f"| {share:.0%} (epoch {fixed_budget(stores[0]['dice'], window, share)[0]}) | "
                     + " | ".join(cells) + " |")
    lines.append("(best: the window with the highest overlap among those ending within the budget, chosen "
                 "knowing the end: what no stop rule can beat within that budget)")
    pairs = [online_vs_exact(s, window) for s in stores]
    lines += ["", "online vs exact DAD, window by window, mean over windows and runs: Spearman "
              f"{np.mean([p[0] for p in pairs]):.2f}; cases without an online DAD {np.mean([p[1] for p in pairs]):.0%}",
              "online at the end vs exact at the end: top-40 % overlap "
              + _mean([compare(dad_windows(s["dice"], window)[0][-1], dad_windows(s["dice_exact"], window)[0][-1])[0]
                       for s in stores])]
    return lines + run_against_run(stores, window, modes) + over_the_run(stores, window)


def run_against_run(stores: list[DynamicsStore], window: int, modes: tuple = MODES) -> list[str]:
    """How well the reference itself reproduces: the last window's DAD ranking of every pair of runs compared
    (top-40 % overlap, kept-set overlap, Spearman; mean (worst) over the pairs). A stop rule cannot agree
    with one run's end better than two runs' ends agree with each other."""
    if len(stores) < 2:
        return []
    lines = ["", "### Run against run: the last window of every pair of runs, mean (worst) over the pairs", "",
             "| mode | top-40 % overlap | kept overlap | Spearman |", "|---|---|---|---|"]
    for mode, name, every in modes:
        ends = [dad_windows(series(s, name, every), window)[0][-1] for s in stores]
        pairs = [compare(a, b) for i, a in enumerate(ends) for b in ends[i + 1:]]
        lines.append(f"| {mode} | " + " | ".join(_mean([p[k] for p in pairs]) for k in range(3)) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    NnunetRuns.add_arguments(parser, "3d_fullres", "/tmp/diet_stab", 50)
    parser.add_argument("--repeats", type=int, default=2, help="trainings of fold 0's cases (>= 1)")
    parser.add_argument("--no-train", action="store_true", help="only evaluate the runs already finished")
    parser.add_argument("--out", type=Path, help="also write the tables to this file")
    parser.add_argument("--include-cut", action="store_true",
                        help="also evaluate runs stopped before the end of their schedule (all runs are then "
                             "evaluated on the epochs every run recorded, in complete windows)")
    parser.add_argument("--exact-subsample", type=int, nargs="*", default=[], metavar="K",
                        help="also evaluate the exact series kept at every K-th epoch only (exact mode every K)")
    args = parser.parse_args()
    if any(k < 2 for k in args.exact_subsample):
        parser.error("--exact-subsample: every K must be >= 2")

    runs = NnunetRuns.from_args(args)
    stores, exact_s, dice = [], [], []
    for r in range(args.repeats):
        fold = 0 if r == 0 else runs.repeat(0, r)
        folder = runs.results / f"fold_{fold}"
        if not args.no_train:
            runs.train(fold, NNUNET_DIET_EXACT_EVERY=str(args.exact_every))
        finished = (folder / "dad" / "summary.json").is_file()
        if not finished and not (args.include_cut and (folder / "dad" / "dynamics.npz").is_file()):
            print(f"repeat {r} (fold {fold}): not finished, left out")
            continue
        stores.append(DynamicsStore.load(folder / "dad" / "dynamics.npz"))
        if not finished:
            print(f"repeat {r} (fold {fold}): cut, {recorded_epochs(stores[-1])} epochs recorded")
        text = "".join(p.read_text() for p in sorted(folder.glob("training_log_*.txt")))
        summary = folder / "validation" / "summary.json"
        if summary.is_file():
            dice.append(json.loads(summary.read_text())["foreground_mean"]["Dice"])
        exact_s += [float(s) for s in re.findall(r"evaluated on fixed patches in ([\d.]+) s", text)]
    if not stores:
        raise SystemExit("no finished run to evaluate")
    length = min(recorded_epochs(s) for s in stores) // args.window * args.window
    for s in stores:
        if s.n_epochs > length:
            s.truncate(length)  # every run on the same complete windows
    head = (f"{runs.name}, {runs.c}: {stores[0].n_samples} training cases, {stores[0].n_epochs} epochs x "
            f"{args.iterations} iterations, window {args.window}, exact mode every {args.exact_every} epoch(s); "
            f"{len(stores)} run(s)" + (f"; exact mode {np.median(exact_s):.2f} s per evaluation (median)"
                                       if exact_s else "")
            + (f"; nnU-Net validation Dice per run {', '.join(f'{d:.3f}' for d in dice)}" if dice else ""))
    modes = MODES + tuple((f"exact every {k}", "dice_exact", k) for k in args.exact_subsample)
    text = "\n".join([head, "", *report(stores, args.window, modes)])
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
