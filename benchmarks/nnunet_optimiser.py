"""Which optimiser lets the short CPU schedules learn: nnU-Net's SGD vs the DAD paper's Adam.

In-process trainers on the shipped hippocampus cases (fold 0), each trained for ``--iterations``
steps on the same data; we report the mean training loss (nnU-Net's Dice + CE with deep supervision;
lower is better, about 0 means background only) over the last 25 steps and the time per step.

Run:  .venv/bin/python benchmarks/nnunet_optimiser.py [--iterations 150]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

RUNS = (  # (label, trainer class, base features, max features)
    ("SGD lr 1e-2 (nnU-Net default), features 8-64", "nnUNetTrainerDAD", 8, 64),
    ("Adam lr 3e-3 (DAD paper), features 8-64", "nnUNetTrainerDADAdam", 8, 64),
    ("SGD lr 1e-2, features 16-128", "nnUNetTrainerDAD", 16, 128),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/diet_bench"))
    parser.add_argument("--iterations", type=int, default=150)
    args = parser.parse_args()
    from inprocess import make_trainer

    print(f"| optimiser, lite plans | mean loss, steps {args.iterations - 24}-{args.iterations} | s per step |")
    print("|---|---|---|")
    for label, cls, base, top in RUNS:
        trainer = make_trainer(cls, args.work, features=base, max_features=top, num_epochs=1000)
        losses, t0 = [], time.perf_counter()
        for _ in range(args.iterations):
            losses.append(float(trainer.train_step(next(trainer.dataloader_train))["loss"]))
        step = (time.perf_counter() - t0) / args.iterations
        print(f"| {label} | {np.mean(losses[-25:]):.3f} | {step:.2f} |", flush=True)


if __name__ == "__main__":
    main()
