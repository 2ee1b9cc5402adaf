"""Pruning value with the real nnU-Net: validation Dice of the full training list vs 40 % pruned.

1. Plan and preprocess a raw dataset (``benchmarks/make_nnunet_datasets.py``), lite plans.
2. Scoring run: ``nnUNetTrainerDADAdam_{E}epochs_{I}iters`` on fold 0 (stop rule reporting only; exact
   mode every ``--exact-every`` epochs, default 1: with a few iterations per epoch online mode leaves
   most cases undrawn in a window) -> ``dad/scores.csv`` with DAD, EL2N, EL2Nx.
3. ``nnunet-diet prune`` fold 0 at ``--rate`` into new folds: DAD keep-ambiguous (the paper's default),
   DAD keep-easy, DAD keep-hard, random, EL2N and EL2Nx (keep the highest error, their papers' rule).
4. Train the full fold 0 and every pruned fold with the same trainer, epochs and iterations (stop rule
   off, no exact mode) and read nnU-Net's own final validation (``fold_X/validation/summary.json``, mean foreground
   Dice): every pruned fold keeps fold 0's validation cases, so all rows are scored on the same cases.

5. ``--repeat``: train some rows' folds once more (same lists, a new fold): how much one run varies.

Run:  .venv/bin/python benchmarks/nnunet_pruning_value.py --raw /tmp/raw/Hippocampus100 --dataset-id 993 \
          --configuration 3d_fullres --epochs 20 --iterations 10 --seeds 0 --repeat full "DAD ambiguous"
"""

from __future__ import annotations

import argparse
import statistics
import time

from nnunet_runs import NnunetRuns

METHODS = {  # label: nnunet-diet prune options
    "DAD ambiguous": ["--score", "dad", "--mode", "ambiguous"],
    "DAD easy": ["--score", "dad", "--mode", "easy"],
    "DAD hard": ["--score", "dad", "--mode", "hard"],
    "random": ["--score", "dad", "--mode", "random"],
    "EL2N": ["--score", "el2n", "--mode", "hard"],
    "EL2Nx": ["--score", "el2nx", "--mode", "hard"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    NnunetRuns.add_arguments(parser, configuration="3d_fullres", work="/tmp/diet_value", epochs=50)
    parser.add_argument("--rate", type=float, default=0.4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the random pruning")
    parser.add_argument("--centres", default=None, help="stratify every pruning by centre (regex or CSV)")
    parser.add_argument("--repeat", nargs="+", default=[], metavar="ROW", choices=["full", *METHODS],
                        help="train these rows' folds once more (a copy of the fold): run-to-run spread")
    args = parser.parse_args()

    runs = NnunetRuns.from_args(args)
    t0 = time.time()
    summary, dad_summary = runs.score(args.exact_every)
    full = summary["foreground_mean"]["Dice"]
    extra = ["--stratify", "--centres", args.centres] if args.centres else []
    folds: dict[str, list[int]] = {}
    for label, options in METHODS.items():
        for seed in (args.seeds if label == "random" else [0]):
            folds.setdefault(label, []).append(runs.prune(label, ["--rate", str(args.rate), "--seed", str(seed),
                                                                  *options, *extra]))
    splits = runs.splits()
    rows = [("full training list", len(splits[0]["train"]), f"{full:.4f}")]
    for label, fold_ids in folds.items():
        dice = [runs.train(f)["foreground_mean"]["Dice"] for f in fold_ids]
        value = f"{dice[0]:.4f}" if len(dice) == 1 else \
            f"{statistics.mean(dice):.4f} ± {statistics.stdev(dice):.4f} (n={len(dice)})"
        rows.append((f"{label} (keep {1 - args.rate:.0%})", len(splits[fold_ids[0]]["train"]), value))
    for label in args.repeat:
        fold = 0 if label == "full" else folds[label][0]
        again = runs.repeat(fold)
        rows.append((f"{label}, fold {fold} trained again (fold {again})", len(splits[fold]["train"]),
                     f"{runs.train(again)['foreground_mean']['Dice']:.4f}"))
    print(f"\n{runs.name}, {runs.c}, lite plans, {runs.trainer}; DAD window {args.window}; DAD scored at epoch "
          f"{dad_summary['dad_scored_at_epoch']} (stop rule: {dad_summary['stop_epoch']}); "
          f"total {time.time() - t0:.0f} s")
    print("| training list | cases | validation Dice (nnU-Net, mean foreground) |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
