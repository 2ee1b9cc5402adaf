"""Build PneumoniaMNIST subsets from the official 28 x 28 file.

Default: the shipped subset ``nnunet_diet/examples/pneumoniamnist_subset.npz``: 300 train, 100 val and
100 test images drawn with ``numpy.random.default_rng(0)``, each split stratified by class
(largest-remainder shares), kept in the official order.

``--train N --minority-share Q``: an imbalanced training set of N images of which ``round(Q N)`` are
of the minority class 0 ("normal", 25.8 % of the official training split) and the rest of class 1,
drawn uniformly within each class with ``default_rng(--seed)``; val and test are the whole official
splits (524 / 624 images). Used by benchmarks/medmnist_imbalanced.py.

Every file has MedMNIST's layout (``{split}_images`` uint8 N x 28 x 28, ``{split}_labels`` uint8 N x 1)
plus ``{split}_indices``: the rows of the official splits. MedMNIST is CC BY 4.0 (Yang et al.,
Scientific Data 2023); see nnunet_diet/examples/README.md.

    .venv/bin/python benchmarks/medmnist_make_subset.py
    .venv/bin/python benchmarks/medmnist_make_subset.py --train 550 --minority-share 0.1 --out /tmp/p10.npz
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


def stratified_rows(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` rows drawn uniformly within each class, every class at its share."""
    return select(None, n / len(labels), "random", groups=labels.reshape(-1), seed=seed, n=len(labels))


def imbalanced_rows(labels: np.ndarray, n: int, minority_share: float, seed: int = 0) -> np.ndarray:
    """``n`` sorted rows: ``round(minority_share n)`` of class 0, the rest of class 1, uniform within each."""
    labels = labels.reshape(-1)
    rng = np.random.default_rng(seed)
    n0 = round(minority_share * n)
    picks = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in ((0, n0), (1, n - n0))]
    return np.sort(np.concatenate(picks))


def write_subset(source: Path, out: Path, rows: dict[str, np.ndarray | None]) -> None:
    """Write the chosen rows of each split (None = the whole official split) in MedMNIST's layout."""
    arrays = {}
    with np.load(source) as z:
        for split, picked in rows.items():
            labels = z[f"{split}_labels"]
            picked = np.arange(len(labels)) if picked is None else picked
            arrays[f"{split}_images"] = z[f"{split}_images"][picked]
            arrays[f"{split}_labels"] = labels[picked]
            arrays[f"{split}_indices"] = picked.astype(np.int64)
            counts = np.bincount(labels[picked].reshape(-1)).tolist()
            print(f"{split}: {len(picked)} of {len(labels)}, per class {counts}")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=TARGET)
    parser.add_argument("--train", type=int, default=None, help="imbalanced training set of this size")
    parser.add_argument("--minority-share", type=float, default=0.25, help="share of class 0 with --train")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with np.load(args.source) as z:
        labels = {s: z[f"{s}_labels"] for s in SIZES}
    if args.train is None:
        rows = {s: stratified_rows(labels[s], n, args.seed) for s, n in SIZES.items()}
    else:
        rows = {"train": imbalanced_rows(labels["train"], args.train, args.minority_share, args.seed),
                "val": None, "test": None}
    write_subset(args.source, args.out, rows)


if __name__ == "__main__":
    main()
