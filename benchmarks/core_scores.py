"""Time and peak memory of the scoring core on large stores (N samples x 200 epochs).

Each (N, score) pair runs in a fresh process that fills a store the way a trainer does (one
``append_epoch`` per epoch) and then computes the score; we report the fill time, the score time
and the process's peak resident memory (store included). Scores: DAD (trajectory over Delta t = 10
windows, moving distance, stop rule, at one series ``dice``), EVA (paper defaults, ``error_norm``),
CCS (AUM from ``margin``, then coverage-centric selection of 10 %).

Run:  .venv/bin/python benchmarks/core_scores.py --sizes 100000 300000 1000000 --epochs 200
Writes a markdown table to stdout (and to --out if given).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SCORES = ("dad", "eva", "ccs")
SERIES = {"dad": "dice", "eva": "error_norm", "ccs": "margin"}


def _fill(n: int, epochs: int, name: str, dtype: str, seed: int):
    """A store with learning-curve-like values: each sample converges at its own rate, with noise
    and ~5 % of entries unseen (NaN), as with nnU-Net's sampling with replacement."""
    from nnunet_diet.core.store import DynamicsStore

    rng = np.random.default_rng(seed)
    store = DynamicsStore(np.arange(n), [name], dtype=dtype, capacity=epochs)
    rate = rng.uniform(0.01, 0.2, n).astype(np.float32)
    ceiling = rng.uniform(0.3, 1.0, n).astype(np.float32)
    for e in range(epochs):
        value = ceiling * (1 - np.exp(-rate * e)) + rng.normal(0, 0.05, n).astype(np.float32)
        if name == "error_norm":
            value = 1.3 - value
        elif name == "margin":
            value = 2 * value - 1
        value[rng.random(n) < 0.05] = np.nan
        store.append_epoch({name: value})
    return store


def _score(store, score: str) -> None:
    from nnunet_diet.core.classification import aum, eva
    from nnunet_diet.core.dad import dad_trajectory
    from nnunet_diet.core.selection import ccs

    if score == "dad":
        dad_trajectory(store["dice"], 10)
    elif score == "eva":
        eva(store["error_norm"], (0, 10), (100, 110))
    else:
        ccs(aum(store["margin"]), 0.1, hard_prune=0.1)


def run_one(n: int, epochs: int, score: str, dtype: str) -> dict:
    """Measure one configuration in this process (called in a child process)."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    store = _fill(n, epochs, SERIES[score], dtype, seed=0)
    t1 = time.perf_counter()
    _score(store, score)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"n": n, "epochs": epochs, "score": score, "dtype": dtype, "fill_s": t1 - t0, "score_s": t2 - t1,
            "store_mb": store.nbytes / 2**20, "peak_mb": peak / 1024, "interpreter_mb": base / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    p.add_argument("--child", nargs=3, metavar=("N", "SCORE", "DTYPE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        n, score, dtype = args.child
        print(json.dumps(run_one(int(n), args.epochs, score, dtype)))
        return
    rows = []
    for n in args.sizes:
        for score in SCORES:
            out = subprocess.run([sys.executable, __file__, "--epochs", str(args.epochs), "--child", str(n), score,
                                  args.dtype], check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out))
            print(rows[-1], file=sys.stderr)
    lines = [
        f"Machine: {platform.machine()}, {platform.python_version()}, numpy {np.__version__}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores; {time.strftime('%Y-%m-%d')}",
        "",
        "| N | epochs | score | dtype | store (MB) | fill (s) | score (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['epochs']} | {r['score']} | {r['dtype']} | {r['store_mb']:.0f} | "
                     f"{r['fill_s']:.1f} | {r['score_s']:.2f} | {r['peak_mb']:.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
