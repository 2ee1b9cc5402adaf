"""When does the DAD stop rule fire, and how stable is the ranking it fires on?

For each shipped real dynamics store and each stop-rule setting (signed vs absolute moving distance
L, patience 1-3, threshold), we report the stop epoch, the share of the recorded epochs it uses, and
how close the DAD ranking at the stop window is to the ranking at the last window of the run:

- top-40 % overlap: |top 40 % by DAD at stop  n  top 40 % at the end| / |top 40 %|;
- kept overlap: the same for the cases kept by the default pruning (ambiguous middle, rate 0.4);
- Spearman's rho between the two DAD vectors.

Stores: ``hippocampus_dice.npz`` (MONAI U-Net, 40 cases x 100 epochs, series ``dice``) and
``pneumoniamnist_dynamics.npz`` (ResNet, 800 images x 40 epochs; DAD on ``p_true``, the
classification analogue of the foreground Dice: the same core function serves both).

Run:  .venv/bin/python benchmarks/stop_rule.py  [--out table.md]
"""

from __future__ import annotations

import argparse
from itertools import product
from pathlib import Path

import numpy as np

from nnunet_diet.core import DynamicsStore, dad_trajectory, select

EXAMPLES = Path(__file__).resolve().parents[1] / "nnunet_diet" / "examples"
RUNS = (  # (file, series, windows to try)
    ("hippocampus_dice.npz", "dice", (5, 10)),
    ("pneumoniamnist_dynamics.npz", "p_true", (2, 5)),
)
RATE = 0.4


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return len(np.intersect1d(a, b)) / max(len(a), 1)


def compare(dad_stop: np.ndarray, dad_end: np.ndarray) -> tuple[float, float, float]:
    """Top-40 % overlap, kept-set overlap (keep-ambiguous at RATE) and Spearman's rho; cases unseen
    in either window are left out."""
    seen = np.isfinite(dad_stop) & np.isfinite(dad_end)
    a, b = dad_stop[seen], dad_end[seen]
    top = select(a, 1 - 0.6, "top"), select(b, 1 - 0.6, "top")
    kept = select(a, 1 - RATE, "middle"), select(b, 1 - RATE, "middle")
    rho = float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])
    return _overlap(*top), _overlap(*kept), rho


def rows(threshold: float) -> list[str]:
    out = []
    for (name, series, windows) in RUNS:
        store = DynamicsStore.load(EXAMPLES / name)
        values = store[series]
        n_epochs = values.shape[1]
        for window, absolute, patience in product(windows, (False, True), (1, 2, 3)):
            traj = dad_trajectory(values, window, absolute=absolute, threshold=threshold, patience=patience)
            end_dad = traj.dad[-1]
            if traj.stop is None:
                out.append(f"| {name} | {window} | {'absolute' if absolute else 'signed'} | {patience} | "
                           f"never | - | - | - | - |")
                continue
            top, kept, rho = compare(traj.dad[traj.stop], end_dad)
            used = (traj.stop_epoch + 1) / n_epochs
            out.append(f"| {name} | {window} | {'absolute' if absolute else 'signed'} | {patience} | "
                       f"{traj.stop_epoch} | {used:.0%} | {top:.2f} | {kept:.2f} | {rho:.2f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = []
    for threshold in args.threshold:
        lines += [f"\nthreshold {threshold}:\n",
                  "| store | window | L | patience | stop epoch | epochs used | top-40 % overlap | "
                  "kept overlap | Spearman |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += rows(threshold)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
