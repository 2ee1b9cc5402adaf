"""Build the shipped PneumoniaMNIST subset ``nnunet_diet/examples/pneumoniamnist_subset.npz``.

From the official 28 x 28 file, draw 300 train, 100 val and 100 test images with
``numpy.random.default_rng(0)``, each split stratified by class (largest-remainder shares), and keep
them in the official order. The file has MedMNIST's layout (``{split}_images`` uint8 N x 28 x 28,
``{split}_labels`` uint8 N x 1) plus ``{split}_indices``: the rows of the official splits.
MedMNIST is CC BY 4.0 (Yang et al., Scientific Data 2023); see nnunet_diet/examples/README.md.

    .venv/bin/python benchmarks/medmnist_make_subset.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nnunet_diet.core.selection import select

REPO = Path(__file__).resolve().parent.parent
SOURCE = Path("/work/shared/data/medmnist/pneumoniamnist.npz")
TARGET = REPO / "nnunet_diet" / "examples" / "pneumoniamnist_subset.npz"
SIZES = {"train": 300, "val": 100, "test": 100}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    arrays = {}
    with np.load(args.source) as z:
        for split, n in SIZES.items():
            labels = z[f"{split}_labels"]
            rows = select(None, n / len(labels), "random", groups=labels.reshape(-1), seed=0, n=len(labels))
            arrays[f"{split}_images"] = z[f"{split}_images"][rows]
            arrays[f"{split}_labels"] = labels[rows]
            arrays[f"{split}_indices"] = rows.astype(np.int64)
            print(f"{split}: {len(rows)} of {len(labels)}, per class {np.bincount(labels[rows].reshape(-1)).tolist()}")
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
