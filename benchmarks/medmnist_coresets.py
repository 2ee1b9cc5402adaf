"""EVA coresets on the real PneumoniaMNIST, CPU protocol: EVA, Random, Forgetting, Entropy, EL2N, AUM and
CCS at 5, 10 and 30 %, mean ± std over 3 seeds, and the full-data accuracy.

Runs ``nnunet-diet medmnist bench`` once per seed, each seed in its own single-threaded process (in
parallel: on a shared 2-core machine one thread per process is several times faster than two), then
merges the per-seed tables into ``OUT/results.csv`` and ``OUT/results.md``. Rerunning resumes.

CPU protocol (scaled from the paper's 200 epochs, batch 256, windows 0-10 / 100-110): ResNet with
width 8, one basic block per stage and a stride-2 stem; 20 epochs, batch 128, cosine to 1e-4 per
iteration; EVA windows [0, 3) and [10, 13) (start epochs scaled from 0 and 100 of 200; 3 epochs
rather than 1 so that a variance exists); EL2N over [0, 3); coresets retrained for the same 20 epochs.

    .venv/bin/python benchmarks/medmnist_coresets.py --out /tmp/medmnist_bench
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from nnunet_diet.medmnist.bench import write_tables

PROTOCOL = ["--epochs", "20", "--batch-size", "128", "--width", "8", "--layers", "1", "1", "1", "1",
            "--stem-stride", "2", "--eva-early", "0", "3", "--eva-late", "10", "13", "--el2n-window", "0", "3",
            "--threads", "1", "--no-progress"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/work/shared/data/medmnist")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", nargs="+", default=["0.05", "0.1", "0.3"])
    args, extra = parser.parse_known_args()  # extra: further 'medmnist bench' options, e.g. --methods
    procs = []
    for seed in args.seeds:
        cmd = [sys.executable, "-m", "nnunet_diet.cli.main", "medmnist", "bench", "--flag", "pneumoniamnist",
               "--root", args.root, "--seeds", str(seed), "--rates", *args.rates,
               "--out", str(args.out / f"seed{seed}"), *PROTOCOL, *extra]
        print(" ".join(cmd), flush=True)
        procs.append(subprocess.Popen(cmd))
    codes = [p.wait() for p in procs]
    tables = [args.out / f"seed{s}" / "results.csv" for s in args.seeds]
    results = pd.concat([pd.read_csv(t) for t in tables if t.is_file()], ignore_index=True)
    write_tables(results, args.out)
    print((args.out / "results.md").read_text())
    sys.exit(max(codes))


if __name__ == "__main__":
    main()
