"""Ranking stability of nnUNetTrainerDAD: online vs exact mode, at the stop epoch vs a longer run.

One real ``nnUNetv2_train`` run of ``nnUNetTrainerDADAdam_{E}epochs_{I}iters`` on the shipped
hippocampus cases (fold 0, lite plans) with the stop rule reporting only (``NNUNET_DIET_STOP=0``) and
exact mode on (``NNUNET_DIET_EXACT_EVERY=k``), so that both modes are recorded in the same run. For
each mode: where the stop rule fires, the compute used by then, and how the DAD ranking at the stop
window compares with the ranking at the last window of the run (top-40 % overlap, kept-set overlap of
keep-ambiguous pruning at 0.4, Spearman) — ``benchmarks/stop_rule.py``'s measures. Exact mode's cost
comes from the training log.

Run:  .venv/bin/python benchmarks/nnunet_stability.py [--epochs 100 --iterations 10 --window 5 --exact-every 1]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stop_rule import compare  # noqa: E402

from nnunet_diet.cli.pipeline import BIN, nnunet_env, prepare  # noqa: E402
from nnunet_diet.core import DynamicsStore, dad_trajectory  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "nnunet_diet" / "examples" / "hippocampus40"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/diet_bench"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--exact-every", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=0.01)
    args = parser.parse_args()

    work = args.work.resolve()
    env = nnunet_env(work, NNUNET_DIET_STOP="0", NNUNET_DIET_WINDOW=str(args.window),
                     NNUNET_DIET_EXACT_EVERY=str(args.exact_every), nnUNet_n_proc_DA="0")
    name = prepare(EXAMPLE, 990, env, work / "logs")
    trainer = f"nnUNetTrainerDADAdam_{args.epochs}epochs_{args.iterations}iters"
    fold = Path(env["nnUNet_results"]) / name / f"{trainer}__nnUNetPlans_lite__3d_fullres" / "fold_0"
    if not (fold / "checkpoint_final.pth").is_file():
        t0 = time.time()
        with open(work / "logs" / f"{trainer}.log", "w") as log:
            subprocess.run([str(BIN / "nnUNetv2_train"), "990", "3d_fullres", "0", "-tr", trainer, "-p",
                            "nnUNetPlans_lite", "-device", "cpu"], env=env, stdout=log, stderr=subprocess.STDOUT,
                           check=True)
        print(f"training: {time.time() - t0:.0f} s")
    store = DynamicsStore.load(fold / "dad" / "dynamics.npz")
    text = "".join(p.read_text() for p in sorted(fold.glob("training_log_*.txt")))
    exact_s = [float(s) for s in re.findall(r"evaluated on fixed patches in ([\d.]+) s", text)]
    epoch_s = [float(s) for s in re.findall(r"Epoch time: ([\d.]+) s", text)]

    print(f"{store.n_samples} training cases, {store.n_epochs} epochs x {args.iterations} iterations, "
          f"window {args.window}, threshold {args.threshold}; exact mode every {args.exact_every} epoch(s)")
    print("| mode | stop epoch | compute used | top-40 % overlap | kept overlap | Spearman | cases unscored at stop |")
    print("|---|---|---|---|---|---|---|")
    for mode, series in (("online", "dice"), ("exact", "dice_exact")):
        traj = dad_trajectory(store[series], args.window, threshold=args.threshold)
        L = ", ".join(f"{v:.3g}" for v in traj.moving_distance[1:])
        if traj.stop is None:
            print(f"| {mode} | never | - | - | - | - | - |")
        else:
            top, kept, rho = compare(traj.dad[traj.stop], traj.dad[-1])
            unscored = int((~np.isfinite(traj.dad[traj.stop])).sum())
            print(f"| {mode} | {traj.stop_epoch} | {(traj.stop_epoch + 1) / store.n_epochs:.0%} | {top:.2f} | "
                  f"{kept:.2f} | {rho:.2f} | {unscored} |")
        print(f"  L ({mode}): {L}", file=sys.stderr)
    online, exact = (dad_trajectory(store[s], args.window) for s in ("dice", "dice_exact"))
    for share in (0.1, 0.2, 0.3, 0.5):  # fixed budgets, whatever the stop rule says
        w = max(1, round(share * len(online.dad))) - 1
        on, ex = compare(online.dad[w], online.dad[-1])[0], compare(exact.dad[w], exact.dad[-1])[0]
        print(f"at epoch {online.window_end_epochs[w]} ({share:.0%} of the run): top-40 % overlap with the end: "
              f"online {on:.2f}, exact {ex:.2f}")
    if exact_s and epoch_s:
        print(f"exact mode: {np.mean(exact_s):.2f} s per evaluation of {store.n_samples} cases; mean epoch time "
              f"(training + validation + exact) {np.mean(epoch_s):.2f} s")


if __name__ == "__main__":
    main()
