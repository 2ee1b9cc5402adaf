"""EVA on small imbalanced PneumoniaMNIST subsets: why it keeps the minority class, and the remedies.

Builds 550-image training sets at a 25 / 75 and a 10 / 90 normal / pneumonia ratio from the official
28 x 28 file (benchmarks/medmnist_make_subset.py, seed 0; val and test are the whole official splits),
then per subset and seed: one full recorded run, the "why" figures from its dynamics (``why.csv``),
and for each rate and selection setting a coreset, retrained and tested (``results.csv``/``.md``
with the class shares of every coreset).

CPU protocol (docs/benchmarks.md, scaled to 40 epochs): ResNet width 8, one block per stage, stride-2
stem, batch 128, SGD lr 0.1 + Nesterov, cosine to 1e-4; EVA windows [0, 4) and [20, 24) (the paper's
0-10 / 100-110 of 200 with the starts scaled), paper convention; EL2N [0, 4); CCS 10 % hard pruning;
coresets retrained for the same 40 epochs; validation every 10 epochs (it does not change the training,
so the final test accuracy is that of every-epoch validation; the best-validation model is picked among
4 evaluations). One thread per process; ``--subsets`` picks the subsets
(run one process per subset to use two cores).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/medmnist_imbalanced.py --out /tmp/imb --subsets 25
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medmnist_make_subset import SOURCE, imbalanced_rows, write_subset
from nnunet_diet.core.classification import class_normalise, eva
from nnunet_diet.core.scores import ScoreConfig
from nnunet_diet.core.selection import select
from nnunet_diet.medmnist import TrainConfig, load_medmnist, score_run, train
from nnunet_diet.medmnist.bench import result_row, run_coreset, write_tables
from nnunet_diet.medmnist.selection import coreset_shift

PROTOCOL = TrainConfig(epochs=40, batch_size=128, width=8, layers=(1, 1, 1, 1), stem_stride=2, eval_every=10)
WINDOWS = ScoreConfig(eva_early=(0, 4), eva_late=(20, 24), el2n_window=(0, 4))
CODE = replace(WINDOWS, eva_ddof=1, eva_normalize=True, eva_weights=(0.5, 0.5))  # the EVA repository
LATER = replace(WINDOWS, eva_early=(2, 6))  # early window after the class-prior transient
# name: (method, tag, scores, class balance, class norm); the paper's default first
SETTINGS = {
    "eva": ("eva", "", WINDOWS, "off", None), "eva-on": ("eva", "", WINDOWS, "on", None),
    "eva-auto": ("eva", "", WINDOWS, "auto", None), "eva-floor": ("eva", "", WINDOWS, "floor", None),
    "eva-floor-prune": ("eva", "", WINDOWS, "floor-prune", None),
    "eva-floor-strata": ("eva", "", WINDOWS, "floor-strata", None), "eva-zscore": ("eva", "", WINDOWS, "off", "zscore"),
    "eva-mean": ("eva", "", WINDOWS, "off", "mean"), "eva-code": ("eva", "code", CODE, "off", None),
    "eva-w2-6": ("eva", "w2-6", LATER, "off", None), "random": ("random", "", WINDOWS, "off", None),
    "random-on": ("random", "", WINDOWS, "on", None), "ccs": ("ccs", "", WINDOWS, "off", None),
}
CORE = ("eva", "eva-on", "eva-auto", "random", "ccs")  # the settings --core-rates runs
KEY = ["method", "rate", "seed", "class_balance", "class_norm"]


def make_subset(folder: Path, share: int, n_train: int) -> str:
    """Write ``pneumonia{n}_{share}.npz`` (minority share in %) unless present; return its flag."""
    flag = f"pneumonia{n_train}_{share}"
    if not (folder / f"{flag}.npz").is_file():
        with np.load(SOURCE) as z:
            labels = z["train_labels"]
        write_subset(SOURCE, folder / f"{flag}.npz",
                     {"train": imbalanced_rows(labels, n_train, share / 100, seed=0), "val": None, "test": None})
    return flag


def _minority_share(scores: np.ndarray, groups: np.ndarray, rate: float, balance: bool = False) -> float:
    rows = select(scores, rate, "top", groups=groups if balance else None)
    return float((groups[rows] == "0").mean())


def why(run: Path, rates: list[float]) -> list[dict]:
    """Figures behind EVA's class shift, from one full run's dynamics: the error norm per class at the
    window epochs, each window's share of the summed variance, and class 0's share of the top-rate
    coreset under each EVA variant."""
    from nnunet_diet.core.store import DynamicsStore

    store = DynamicsStore.load(run / "dynamics.npz")
    e, g = store["error_norm"].astype(np.float64), store.groups.astype(str)
    out = []
    for epoch in (0, 1, 2, 3, 5, 10, 20, 23, 39):
        out.append({"what": f"mean error norm, epoch {epoch}", "class 0": e[g == "0", epoch].mean(),
                    "class 1": e[g == "1", epoch].mean()})
    early, late = eva(e, (0, 4), (20, 24), weights=(1, 0)), eva(e, (0, 4), (20, 24), weights=(0, 1))
    for name, v in (("V_e [0,4)", early), ("V_l [20,24)", late)):
        out.append({"what": f"mean {name}", "class 0": v[g == "0"].mean(), "class 1": v[g == "1"].mean(),
                    "sum": v.sum()})
    paper = early + late
    correct = store["correct"].astype(np.float64)
    for c in ("0", "1"):  # each class's top 10 % by EVA (what floor-prune sets aside) against the rest
        rows = np.flatnonzero(g == c)
        ranked = rows[np.argsort(-paper[rows], kind="stable")]
        top, rest = ranked[: int(0.1 * len(rows))], ranked[int(0.1 * len(rows)):]
        out.append({"what": f"class {c}, top 10 % EVA vs rest: error norm epoch 0",
                    "top": e[top, 0].mean(), "rest": e[rest, 0].mean()})
        for epoch in (3, 39):
            out.append({"what": f"class {c}, top 10 % EVA vs rest: misclassified at epoch {epoch}",
                        "top": 1 - correct[top, epoch].mean(), "rest": 1 - correct[rest, epoch].mean()})
    centred = e - np.stack([e[g == c].mean(0) for c in ("0", "1")])[(g == "1").astype(int)]
    variants = {"paper (V_e + V_l)": paper, "unbiased variance (ddof 1)": eva(e, (0, 4), (20, 24), ddof=1),
                "code (ddof 1, L1 per window, 0.5/0.5)": eva(e, (0, 4), (20, 24), ddof=1, normalize=True,
                                                             weights=(0.5, 0.5)),
                "early window only": early, "late window only": late,
                "early [2,6)": eva(e, (2, 6), (20, 24)), "early [4,8)": eva(e, (4, 8), (20, 24)),
                "late [30,34)": eva(e, (0, 4), (30, 34)),
                "class mean norm": class_normalise(paper, g, "mean"),
                "class zscore norm": class_normalise(paper, g, "zscore"),
                "class-centred error norm": eva(centred, (0, 4), (20, 24))}
    for name, s in variants.items():
        out.append({"what": f"class 0 share of the coreset: {name}",
                    **{f"{100 * r:g} %": _minority_share(s, g, r) for r in rates}})
    out.append({"what": "class 0 share of the coreset: class balance on",
                **{f"{100 * r:g} %": _minority_share(paper, g, r, True) for r in rates}})
    return out


def merge(path: Path, new: pd.DataFrame) -> pd.DataFrame:
    """Rows already in ``path`` (from runs with other ``--settings``) with ``new`` replacing equal keys."""
    if not path.is_file():
        return new
    old = pd.read_csv(path, dtype={"class_norm": str}).fillna({"class_norm": ""})
    keys = set(map(tuple, new[KEY].astype(str).to_numpy()))
    keep = [tuple(r) not in keys for r in old[KEY].astype(str).to_numpy()]
    return pd.concat([old[keep], new], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--subsets", type=int, nargs="+", default=[25, 10], help="minority shares in %%")
    parser.add_argument("--train", type=int, default=550)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--core-rates", type=float, nargs="*", default=[],
                        help="rates run only for the paper's EVA, EVA with class balance on / auto, random and CCS")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for share in args.subsets:
        flag = make_subset(args.out / "data", share, args.train)
        data = load_medmnist(args.out / "data", flag)
        folder = args.out / flag
        rows, why_rows = [], []
        for seed in args.seeds:
            start = time.perf_counter()
            run = folder / f"seed{seed}"
            full = train(data, run, replace(PROTOCOL, seed=seed), progress=False)
            frames = {tag: score_run(run, config) for _, tag, config, _, _ in SETTINGS.values()}
            base = frames[""]
            rows.append(result_row("full", 1.0, seed, full, "full", coreset_shift(base, base["id"].to_numpy())))
            why_rows += [{"seed": seed, **r} for r in why(run, args.rates + args.core_rates)]
            for rate in args.rates + args.core_rates:
                for name in args.settings:
                    method, tag, _, balance, norm = SETTINGS[name]
                    if rate in args.rates or name in CORE:
                        rows.append(run_coreset(run, frames[tag], method, rate, seed, class_balance=balance,
                                                class_norm=norm, tag=tag, progress=False,
                                                log=lambda line: print(f"{flag} {line}", flush=True)))
            write_tables(merge(folder / "results.csv", pd.DataFrame(rows)), folder)
            pd.DataFrame(why_rows).to_csv(folder / "why.csv", index=False, float_format="%.6g")
            print(f"{flag} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
        print((folder / "results.md").read_text())
    return None


if __name__ == "__main__":
    sys.exit(main())
