"""When does each DAD stop rule fire, and how stable is the ranking it fires on?

For a recorded dynamics store and each stop-rule setting (``nnunet_diet.core.stop_rules``: the paper's
signed or absolute moving distance L, the ranking rules ``spearman`` / ``kept``, the ``noise`` floor;
thresholds, patience) we report the stop epoch, the share of the recorded epochs it uses, and how close
the DAD ranking at the stop window is to the ranking at the last window of the run:

- top-40 % overlap: |top 40 % by DAD at stop  n  top 40 % at the end| / |top 40 %|;
- kept overlap: the same for the cases kept by the default pruning (ambiguous middle, rate 0.4);
- Spearman's rho between the two DAD vectors.

Without arguments: the shipped real stores ``hippocampus_dice.npz`` (MONAI U-Net, 40 cases x 100 epochs,
series ``dice``) and ``pneumoniamnist_dynamics.npz`` (ResNet, 800 images x 40 epochs; DAD on ``p_true``,
the classification analogue of the foreground Dice). ``benchmarks/nnunet_stability.py`` applies the same
evaluation to nnU-Net reference runs.

Run:  .venv/bin/python benchmarks/stop_rule.py  [--out table.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nnunet_diet.core import DynamicsStore, dad_trajectory, select
from nnunet_diet.core.stop_rules import spearman

EXAMPLES = Path(__file__).resolve().parents[1] / "nnunet_diet" / "examples"
RUNS = (  # (file, series, windows)
    ("hippocampus_dice.npz", "dice", (5, 10)),
    ("pneumoniamnist_dynamics.npz", "p_true", (2, 5)),
)
RATE = 0.4


class Setting(NamedTuple):
    rule: str
    threshold: float
    patience: int = 1
    absolute: bool = False

    def __str__(self) -> str:
        name = "paper, |L|" if self.absolute else self.rule
        return f"{name} {self.threshold:g}" + (f" p{self.patience}" if self.patience > 1 else "")


SETTINGS = (  # the paper's default first
    Setting("paper", 0.01), Setting("paper", 0.01, 2), Setting("paper", 0.05), Setting("paper", 0.1),
    Setting("paper", 0.01, 1, True), Setting("paper", 0.05, 1, True), Setting("paper", 0.05, 2, True),
    Setting("spearman", 0.8), Setting("spearman", 0.85), Setting("spearman", 0.9), Setting("spearman", 0.8, 2),
    Setting("spearman", 0.9, 2), Setting("spearman", 0.95), Setting("spearman", 0.95, 2),
    Setting("kept", 0.8), Setting("kept", 0.9), Setting("kept", 0.8, 2), Setting("kept", 0.9, 2),
    Setting("noise", 1.0), Setting("noise", 1.5), Setting("noise", 2.0), Setting("noise", 1.5, 2),
)


class Outcome(NamedTuple):
    stop_epoch: int | None
    used: float            # share of the recorded epochs up to and including the stop epoch
    top: float             # top-40 % overlap with the last window
    kept: float            # kept-set overlap (keep-ambiguous at RATE)
    rho: float             # Spearman with the last window
    unscored: int          # cases without a DAD at the stop window


def compare(dad_stop: np.ndarray, dad_end: np.ndarray) -> tuple[float, float, float]:
    """Top-40 % overlap, kept-set overlap (keep-ambiguous at RATE) and Spearman's rho; cases unseen
    in either window are left out."""
    seen = np.isfinite(dad_stop) & np.isfinite(dad_end)
    a, b = dad_stop[seen], dad_end[seen]
    top = select(a, 0.4, "top"), select(b, 0.4, "top")
    kept = select(a, 1 - RATE, "middle"), select(b, 1 - RATE, "middle")
    overlap = [len(np.intersect1d(x, y)) / max(len(x), 1) for x, y in (top, kept)]
    return overlap[0], overlap[1], spearman(a, b)


def evaluate(values: np.ndarray, window: int, setting: Setting) -> Outcome:
    """Where ``setting`` stops on one recorded series, and the ranking there against the last window's."""
    traj = dad_trajectory(values, window, rule=setting.rule, threshold=setting.threshold,
                          patience=setting.patience, absolute=setting.absolute, rate=RATE)
    if traj.stop is None:
        return Outcome(None, np.nan, np.nan, np.nan, np.nan, 0)
    top, kept, rho = compare(traj.dad[traj.stop], traj.dad[-1])
    return Outcome(traj.stop_epoch, (traj.stop_epoch + 1) / values.shape[1], top, kept, rho,
                   int((~np.isfinite(traj.dad[traj.stop])).sum()))


def fixed_budget(values: np.ndarray, window: int, share: float) -> tuple[int, tuple[float, float, float]]:
    """The last window ending within ``share`` of the recorded epochs, and its ranking against the end."""
    traj = dad_trajectory(values, window)
    w = max(1, int(share * values.shape[1] // window)) - 1
    return int(traj.window_end_epochs[w]), compare(traj.dad[w], traj.dad[-1])


def table_row(label: str, out: Outcome) -> str:
    if out.stop_epoch is None:
        return f"| {label} | never | - | - | - | - |"
    return f"| {label} | {out.stop_epoch} | {out.used:.0%} | {out.top:.2f} | {out.kept:.2f} | {out.rho:.2f} |"


TABLE_HEAD = ["| run | rule | stop epoch | compute used | top-40 % overlap | kept overlap | Spearman |",
              "|---|---|---|---|---|---|---|"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = list(TABLE_HEAD)
    for name, series, windows in RUNS:
        values = DynamicsStore.load(EXAMPLES / name)[series]
        for window in windows:
            for setting in SETTINGS:
                lines.append(table_row(f"{name} (window {window}) | {setting}", evaluate(values, window, setting)))
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
