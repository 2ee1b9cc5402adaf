"""The DAD paper's Fig. 1 question on real two-centre data: does training on both centres help each
centre, and does DAD pruning of the combined set hurt one centre more than the other?

Kvasir-SEG + CVC-ClinicDB (``benchmarks/make_nnunet_datasets.py polyp``), 2D nnU-Net, lite plans, fold 0
of nnU-Net's own 5-fold split (both centres in training and validation):

1. Scoring run on the combined training list (``nnUNetTrainerDADAdam_{E}epochs_{I}iters``, stop rule
   reporting only, exact mode every ``--exact-every`` epochs) -> ``dad/scores.csv``; it is also the
   "both centres" row.
2. Each centre alone: ``nnunet-diet prune --keep-list`` keeps that centre's training cases of fold 0.
3. DAD pruning of the combined list at each ``--rates``: keep-ambiguous without and with per-centre
   stratification (``--stratify --centres``), and random (``--seeds``).
4. Every fold validates on fold 0's validation cases; the table splits nnU-Net's per-case Dice by centre.

Run:  .venv/bin/python benchmarks/nnunet_multicentre.py --raw /tmp/raw/Polyp300 --dataset-id 994 \
          --epochs 30 --iterations 10 --rates 0.2 0.4 0.6 --seeds 0 1
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nnunet_runs import NnunetRuns, foreground_dice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    NnunetRuns.add_arguments(parser, configuration="2d", work="/tmp/diet_multicentre", epochs=30)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.2, 0.4, 0.6])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the random pruning")
    parser.add_argument("--centres", default="^(kvasir|cvc)_", help="regex whose first group is the centre")
    parser.add_argument("--output", type=Path, default=None, help="results CSV (default: <work>/multicentre.csv)")
    args = parser.parse_args()

    runs = NnunetRuns.from_args(args)
    t0 = time.time()
    _, dad = runs.score(args.exact_every)
    train0 = runs.splits()[0]["train"]
    centre = {i: re.search(args.centres, i).group(1) for i in train0}
    centres = sorted(set(centre.values()))

    plan: list[tuple[str, float, int, int]] = [("both centres", 0.0, 0, 0)]  # (method, rate, seed, fold)
    for name in centres:
        keep = runs.work / f"keep_{name}.csv"
        pd.DataFrame({"id": train0, "keep": [int(centre[i] == name) for i in train0]}).to_csv(keep, index=False)
        plan.append((f"{name} alone", 0.0, 0, runs.prune(f"{name} alone", ["--keep-list", str(keep)])))
    for rate in args.rates:
        common = ["--rate", str(rate), "--score", "dad"]
        plan.append(("DAD ambiguous", rate, 0, runs.prune(f"DAD ambiguous {rate}", [*common, "--mode", "ambiguous"])))
        plan.append(("DAD ambiguous, stratified", rate, 0, runs.prune(
            f"DAD ambiguous stratified {rate}", [*common, "--mode", "ambiguous", "--stratify", "--centres",
                                                 args.centres])))
        for seed in args.seeds:
            plan.append(("random", rate, seed, runs.prune(f"random {rate} seed {seed}",
                                                          [*common, "--mode", "random", "--seed", str(seed)])))

    splits = runs.splits()
    rows = []
    for method, rate, seed, fold in plan:
        summary = runs.train(fold)
        kept = splits[fold]["train"]
        row = {"method": method, "rate": rate, "seed": seed, "fold": fold, "cases": len(kept)}
        for name in centres:
            row[f"{name} cases"] = sum(centre[i] == name for i in kept)
        for name in centres:
            row[f"Dice {name}"] = foreground_dice(summary, rf"^{name}_")
        row["Dice all"] = summary["foreground_mean"]["Dice"]
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    out = args.output or runs.work / "multicentre.csv"
    table.to_csv(out, index=False, float_format="%.4f")

    value_cols = [c for c in table.columns if c.startswith("Dice")]
    grouped = table.groupby(["method", "rate"], sort=False)
    mean, std, n = grouped[value_cols].mean(), grouped[value_cols].std(), grouped.size()
    counts = grouped[["cases", *[f"{c} cases" for c in centres]]].first()
    val = splits[0]["val"]
    print(f"\n{runs.name}, {runs.c}, lite plans, {runs.trainer}; DAD window {args.window}, scored at epoch "
          f"{dad['dad_scored_at_epoch']} (stop rule: {dad['stop_epoch']}); validation: fold 0, "
          + ", ".join(f"{sum(re.search(args.centres, i).group(1) == c for i in val)} {c}" for c in centres)
          + f"; total {time.time() - t0:.0f} s; {out}")
    print("| training list | removed | cases (" + " / ".join(centres) + ") | "
          + " | ".join(f"val Dice {c}" for c in centres) + " | val Dice all |")
    print("|---|---|---|" + "---|" * (len(centres) + 1))
    for key in mean.index:
        cells = []
        for col in value_cols:
            m, s = mean.loc[key, col], std.loc[key, col]
            cells.append(f"{m:.4f}" + (f" ± {s:.4f} (n={n[key]})" if n[key] > 1 and np.isfinite(s) else ""))
        c = counts.loc[key]
        print(f"| {key[0]} | {key[1]:.0%} | {c['cases']} (" + " / ".join(str(c[f'{x} cases']) for x in centres)
              + ") | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
