"""Value of MedDEL on real data: PneumoniaMNIST coresets kept by MedDEL vs. random at 5 / 10 / 20 / 50 %,
retrained with the EVA harness, test accuracy and NormDEL side by side.

1. Train one classifier on the full training split (the 100 % reference; its penultimate features are
   one of the MedDEL embeddings).
2. Embed the training images (``--encoders``): training-free intensities, the classifier's features and
   the training-free ``vlad`` copy-detection descriptor (fitted on the training images, ``vlad.npz``)
   and the paper's objective, ``mae`` (the self-supervised encoder of ``embed --source mae`` trained on them).
3. For each fraction and seed: MedDEL keep-lists (target-fraction mode) from each embedding, and a
   random subset of the size of the first embedding's list; retrain each with the full run's settings
   (``epochs`` schedule).
4. Write ``results.csv`` / ``results.md`` (test accuracy in % of the final model and of the
   best-validation model, NormDEL x 100 of each at the actual kept fraction, alpha = 1; mean ± sample
   std over the seeds).

Finished runs are reused, so an interrupted benchmark continues. CPU-sized defaults (a narrow ResNet,
20 epochs); ``--width 64 --layers 2 2 2 2 --epochs 200`` is the EVA paper's protocol.

    python benchmarks/meddel_value.py --npz ../shared/data/medmnist/pneumoniamnist.npz --out bench_meddel
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from nnunet_diet.core.normdel import normdel
from nnunet_diet.embed.encoders import IntensityEncoder, MedmnistEncoder
from nnunet_diet.embed.pretrain import SelfSupervisedEncoder, pretrain
from nnunet_diet.embed.sslconfig import SSLConfig
from nnunet_diet.embed.vlad import VladConfig, VladEncoder, fit_vlad
from nnunet_diet.embed.run import embed
from nnunet_diet.embed.sources import NpzImages
from nnunet_diet.embed.store import load_embeddings
from nnunet_diet.embed.table import run_meddel
from nnunet_diet.medmnist import Coreset, TrainConfig, TrainResult, read_npz, retrain, train


def _done(folder: Path) -> TrainResult | None:
    return TrainResult.load(folder) if (folder / "result.json").is_file() else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz", type=Path, required=True, help="pneumoniamnist.npz (MedMNIST layout)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--layers", type=int, nargs=4, default=[1, 1, 1, 1])
    p.add_argument("--stem-stride", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--encoders", nargs="+", default=["intensities", "classifier", "vlad"],
                   choices=("intensities", "classifier", "vlad", "mae"),
                   help="MedDEL embeddings (the first sizes random); mae: the self-supervised encoder of "
                        "`embed --source mae`, default settings, trained on the training images")
    args = p.parse_args()

    data = read_npz(args.npz)
    config = TrainConfig(epochs=args.epochs, width=args.width, layers=tuple(args.layers),
                         stem_stride=args.stem_stride, batch_size=args.batch_size)
    full_dir = args.out / "full"
    full = _done(full_dir) or train(data, full_dir, config, record=False, progress=False)
    rows = [{"method": "full", "target": 1.0, "fraction": 1.0, "n_kept": full.n_train, "seed": 0, "eta": np.nan,
             "test_acc_final": full.final_test_acc, "test_acc_best": full.best_test_acc}]
    source = NpzImages(args.npz)
    make = {"intensities": lambda folder: IntensityEncoder(16), "classifier": lambda folder: MedmnistEncoder(full_dir),
            "vlad": lambda folder: VladEncoder(fit_vlad(source, folder, VladConfig(), progress=False)),
            "mae": lambda folder: SelfSupervisedEncoder(pretrain(source, folder, SSLConfig(objective="mae"),
                                                                 progress=False))}
    embeddings = {}
    for encoder in args.encoders:
        name, folder = f"meddel-{encoder}", args.out / f"emb_meddel-{encoder}"
        if not (folder / "embeddings.npy").is_file():
            embed(source, make[encoder](folder), folder, progress=False)
        embeddings[name] = load_embeddings(folder)
    n = len(data.train)
    for seed in args.seeds:
        for fraction in args.fractions:
            picks = {}
            for name, emb in embeddings.items():
                result = run_meddel(emb, fraction=fraction, seed=seed)
                picks[name] = (emb.ids[result.keep].astype(np.int64), result.eta)
            size = len(picks[f"meddel-{args.encoders[0]}"][0])
            picks["random"] = (np.sort(np.random.default_rng(seed).choice(n, size, replace=False)), np.nan)
            for method, (ids, eta) in picks.items():
                coreset = Coreset(method, fraction, seed, np.sort(ids))
                folder = full_dir / "coresets" / f"{coreset.name}_epochs"
                res = _done(folder) or retrain(full_dir, coreset, progress=False)
                rows.append({"method": method, "target": fraction, "fraction": len(ids) / n, "n_kept": len(ids),
                             "seed": seed, "eta": eta, "test_acc_final": res.final_test_acc,
                             "test_acc_best": res.best_test_acc})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    for col in ("final", "best"):
        table[f"normdel_{col}"] = 100 * normdel(table[f"test_acc_{col}"].to_numpy(), table["fraction"].to_numpy())
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "results.csv", index=False, float_format="%.4f")
    grouped = table.groupby(["method", "target"], sort=False)
    columns = ["test_acc_final", "test_acc_best", "normdel_final", "normdel_best"]
    summary = grouped[["fraction", *columns]].mean().reset_index()
    for col in columns:  # mean ± sample std over the seeds
        scale = 100 if col.startswith("test") else 1
        std = grouped[col].std().fillna(0).to_numpy()
        summary[col] = [f"{scale * m:.2f} ± {scale * s:.2f}" for m, s in zip(summary[col], std)]
    summary.insert(3, "n", grouped.size().to_numpy())
    summary["fraction"] = summary["fraction"].map(lambda v: f"{100 * v:.1f} %")
    lines = ["| " + " | ".join(summary.columns) + " |", "|" + "---|" * len(summary.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in summary.itertuples(index=False)]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
