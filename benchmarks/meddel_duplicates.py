"""Does MedDEL find planted near-duplicates? Pair recall and false removals per embedding and duplicate type.

From real images (Kvasir-SEG colonoscopy frames, an image folder; PneumoniaMNIST chest X-rays, an
``.npz``), ``5 x m`` originals get one planted copy each, ``m`` per type:

- ``zoom``: a crop of 60-90 % of each side (a 10-40 % zoom) at a random place, resized back;
- ``rotflip``: rotated by 3-10 degrees either way, half of them also mirrored left-right;
- ``jpeg``: re-encoded as JPEG at quality 15-40;
- ``intensity``: contrast x0.7-1.3 and brightness +-30 grey levels (clipped to 0-255);
- ``exact``: an identical copy;

plus ``5 x m`` unrelated images (an equal number). The images are written to disk (PNG folder / npz)
and embedded as a user would: the training-free intensities, the self-supervised ``contrastive`` and
``mae`` encoders trained on the planted set itself, the training-free ``vlad`` copy-detection
descriptor fitted on it, the training-free ``views`` zoom search (each image with its zoomed-in crops),
(PneumoniaMNIST, ``classifier``) the EVA harness classifier's features, and
(polyp, ``nnunet``) the pooled deepest encoder stage of a trained 2D nnU-Net (``--nnunet-model``), fed
through nnU-Net's own preprocessing after resizing the frames to ``--nnunet-size`` (the side the model
was trained on).
Each embedding runs in its own process: wall and CPU seconds (training included) and peak resident
memory of that process.

MedDEL then runs on the whole set and on each type's subset (its ``m`` pairs + ``m`` unrelated
images), at the fraction a perfect dedup keeps (2/3) and at fixed eta values, for each k-means K of
``--clusters`` (0: MedDEL's default ceil(sqrt(N)); 1: every pair compared) and each ``--probes``
(clusters each sample is compared in; 1: the paper's within-cluster pass). Per row: pair recall
(share of planted pairs with exactly one member removed), false removals (share of unrelated images
removed), and the pair recall a random removal of the same size gives (chance).

    python benchmarks/meddel_duplicates.py --out /tmp/bench_dup
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from nnunet_diet.embed.store import load_embeddings
from nnunet_diet.embed.table import run_meddel

TYPES = ("zoom", "rotflip", "jpeg", "intensity", "exact")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a)


def plant(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The planted near-duplicate of a uint8 H x W (x 3) image."""
    h, w = image.shape[:2]
    if kind == "zoom":
        keep = 1 - rng.uniform(0.1, 0.4)
        ch, cw = round(keep * h), round(keep * w)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        return np.asarray(_pil(image[y : y + ch, x : x + cw]).resize((w, h), Image.BILINEAR))
    if kind == "rotflip":
        angle = rng.uniform(3, 10) * rng.choice([-1, 1])
        out = np.asarray(_pil(image).rotate(angle, Image.BILINEAR))
        return out[:, ::-1].copy() if rng.random() < 0.5 else out
    if kind == "jpeg":
        buf = io.BytesIO()
        _pil(image).save(buf, format="JPEG", quality=int(rng.integers(15, 41)))
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    if kind == "intensity":
        return np.clip(rng.uniform(0.7, 1.3) * image.astype(float) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
    return image.copy()


def planted_set(pool: np.ndarray, m: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Originals, their copies and unrelated images (in that order) with a table: row, role, type, pair."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pool), size=10 * m, replace=False)
    originals, unrelated = pick[: 5 * m], pick[5 * m :]
    kinds = np.repeat(TYPES, m)
    copies = [plant(pool[i], k, rng) for i, k in zip(originals, kinds)]
    images = np.concatenate([pool[originals], np.stack(copies), pool[unrelated]])
    n = 5 * m
    table = pd.DataFrame({"row": np.arange(3 * n), "role": ["original"] * n + ["copy"] * n + ["unrelated"] * n,
                          "type": [*kinds, *kinds, *np.repeat(TYPES, m)],
                          "pair": [*range(n), *range(n), *([-1] * n)], "source_index": np.concatenate(
                              [originals, originals, unrelated])})
    return images, table


def write_dataset(name: str, images: np.ndarray, folder: Path, labels: np.ndarray | None) -> str:
    """PNG folder (colour frames) or MedMNIST-layout npz (grey 28 x 28); returns the source spec."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "polyp":
        for i, image in enumerate(images):
            _pil(image).save(folder / f"{i:05d}.png")
        return str(folder)
    np.savez(folder / "planted.npz", train_images=images, train_labels=labels,
             val_images=images[:50], val_labels=labels[:50], test_images=images[:50], test_labels=labels[:50])
    return str(folder / "planted.npz")


def _source(spec: str):
    from nnunet_diet.embed.sources import ImageFolder, NpzImages

    return NpzImages(spec) if spec.endswith(".npz") else ImageFolder(spec)


def _embed_one(encoder: str, spec: str, folder: str, epochs: int, queue, nnunet_model: str | None = None) -> None:
    """Child process: train (when needed) and embed; report wall, CPU seconds and peak RSS."""
    import torch

    from nnunet_diet.embed.encoders import IntensityEncoder, MedmnistEncoder
    from nnunet_diet.embed.pretrain import SelfSupervisedEncoder, pretrain
    from nnunet_diet.embed.run import embed
    from nnunet_diet.embed.sslconfig import SSLConfig
    from nnunet_diet.embed.vlad import VladConfig, VladEncoder, fit_vlad

    torch.set_num_threads(1)
    wall, cpu = time.perf_counter(), time.process_time()
    source = _source(spec)
    if encoder == "intensities":
        enc = IntensityEncoder(16)
    elif encoder == "classifier":
        from nnunet_diet.medmnist import TrainConfig, read_npz, train

        run = Path(folder) / "run"
        train(read_npz(spec), run, TrainConfig(epochs=epochs, width=8, layers=(1, 1, 1, 1), stem_stride=2,
                                               batch_size=128), record=False, progress=False)
        enc = MedmnistEncoder(run)
    elif encoder == "vlad":
        enc = VladEncoder(fit_vlad(source, folder, VladConfig(), progress=False))
    elif encoder == "views":
        from nnunet_diet.embed.views import ViewsEncoder

        enc = ViewsEncoder()
    elif encoder == "nnunet":
        from nnunet_diet.embed.encoders import NnunetEncoder, NnunetRawCases

        enc = NnunetEncoder(nnunet_model, 0)
        source = NnunetRawCases(source, enc)
    else:
        enc = SelfSupervisedEncoder(pretrain(source, folder, SSLConfig(objective=encoder, epochs=epochs)))
    embed(source, enc, folder, progress=False)
    queue.put({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def embed_in_child(encoder: str, spec: str, folder: Path, epochs: int, nnunet_model: str | None = None) -> dict:
    cost = folder / "cost.json"
    if cost.is_file():  # finished earlier: reuse
        return json.loads(cost.read_text())
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_embed_one, args=(encoder, spec, str(folder), epochs, queue, nnunet_model))
    proc.start()
    result = queue.get()
    proc.join()
    cost.write_text(json.dumps(result))
    return result


def chance_recall(n: int, removed: int) -> float:
    """P(exactly one of a given pair is removed) when ``removed`` of ``n`` are removed uniformly at random."""
    return 2 * removed * (n - removed) / (n * (n - 1))


def evaluate(emb, table: pd.DataFrame, subset: str, fraction: float | None, eta: float | None,
             clusters: int | None = None, epsilon: float | None = 0.9, probes: int = 1, seed: int = 0) -> dict:
    rows = table if subset == "all" else table[(table["type"] == subset)]
    vectors = np.asarray(emb.vectors)[rows["row"].to_numpy()]
    sub = type(emb)(emb.path, rows["row"].astype(str).to_numpy(), vectors, {"views": emb.meta.get("views", 1)})
    result = run_meddel(sub, fraction=fraction, eta=eta, clusters=clusters, epsilon=epsilon, seed=seed,
                        probes=min(probes, clusters or len(rows)))
    removed = pd.Series(~result.keep, index=rows["row"].to_numpy())
    pairs = rows[rows["pair"] >= 0].assign(removed=lambda t: removed[t["row"]].to_numpy())
    one = pairs.groupby("pair")["removed"].sum() == 1
    unrelated = removed[rows.loc[rows["role"] == "unrelated", "row"]]
    n, k = len(rows), int(removed.sum())
    return {"subset": subset, "clusters": clusters or "sqrt", "probes": result.probes, "kmeans_seed": seed,
            "epsilon": epsilon,
            "mode": "fraction 2/3" if fraction else f"eta {eta:g}", "n": n, "kept_fraction": 1 - k / n,
            "eta": result.eta, "pair_recall": float(one.mean()), "false_removals": float(unrelated.mean()),
            "chance_recall": chance_recall(n, k)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--datasets", nargs="+", choices=("polyp", "pneumonia"), default=["polyp", "pneumonia"])
    p.add_argument("--polyp", type=Path, default=SHARED / "polyp" / "Kvasir-SEG" / "images")
    p.add_argument("--npz", type=Path, default=SHARED / "medmnist" / "pneumoniamnist.npz")
    p.add_argument("--pairs-per-type", type=int, nargs=2, default=[60, 100], help="m for polyp, pneumonia")
    p.add_argument("--encoders", nargs="+", default=["intensities", "contrastive", "mae"],
                   choices=("intensities", "contrastive", "mae", "classifier", "vlad", "views", "nnunet"))
    p.add_argument("--nnunet-model", type=Path, default=None,
                   help="nnunet: a trained 2D trainer__plans__configuration folder (fold 0), for the polyp frames")
    p.add_argument("--nnunet-size", type=int, default=0,
                   help="nnunet: resize the planted frames to this side first (0: as they are)")
    p.add_argument("--epochs", type=int, default=30, help="self-supervised (and classifier) training epochs")
    p.add_argument("--etas", type=float, nargs="+", default=[0.9, 0.95, 0.98, 0.99])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clusters", type=int, nargs="+", default=[0],
                   help="MedDEL k-means K values to evaluate; 0: the default ceil(sqrt(N))")
    p.add_argument("--probes", type=int, nargs="+", default=[1],
                   help="MedDEL probes values to evaluate (1: the paper's within-cluster pass)")
    p.add_argument("--kmeans-seeds", type=int, nargs="+", default=[0], help="MedDEL k-means seeds to evaluate")
    p.add_argument("--epsilon", type=lambda v: None if v.lower() == "none" else float(v), default=0.9,
                   help="MedDEL epsilon filter (default 0.9, the paper's; 'none': off)")
    args = p.parse_args()

    rows, costs = [], []
    for name in args.datasets:
        m = dict(zip(("polyp", "pneumonia"), args.pairs_per_type))[name]
        if name == "polyp":
            files = sorted(args.polyp.glob("*.jpg"))
            pool, labels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]), None
        else:
            with np.load(args.npz) as z:
                pool, labels = z["train_images"], z["train_labels"]
        images, table = planted_set(pool, m, args.seed)
        base = args.out / name
        spec = write_dataset(name, images, base / "data",
                             None if labels is None else labels[table["source_index"].to_numpy()])
        table.to_csv(base / "planted.csv", index=False)
        for encoder in args.encoders:
            if (encoder == "classifier" and name != "pneumonia") or (encoder == "nnunet" and name != "polyp"):
                continue
            where = spec
            if encoder == "nnunet" and args.nnunet_size:
                where = str(base / f"data_{args.nnunet_size}px")
                write_dataset(name, np.stack([np.asarray(_pil(im).resize((args.nnunet_size,) * 2, Image.BOX))
                                              for im in images]), Path(where), None)
            cost = embed_in_child(encoder, where, base / f"emb_{encoder}", args.epochs,
                                  None if args.nnunet_model is None else str(args.nnunet_model))
            costs.append({"dataset": name, "encoder": encoder, "images": len(table), **cost})
            print(costs[-1], flush=True)
            emb = load_embeddings(base / f"emb_{encoder}")
            ids = [f"{i:05d}.png" if name == "polyp" else str(i) for i in range(len(table))]
            assert list(emb.ids) == ids, "embedding rows out of the planted order"
            for subset in ("all", *TYPES):
                for fraction, eta in [(2 / 3, None), *[(None, e) for e in args.etas]]:
                    for k in args.clusters:
                        for probes in args.probes:
                            if k == 1 and probes > 1:
                                continue  # one cluster: nothing to probe
                            for seed in args.kmeans_seeds:
                                rows.append({"dataset": name, "encoder": encoder, **evaluate(
                                    emb, table, subset, fraction, eta, k or None, args.epsilon, probes, seed)})
    results = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out / "results.csv", index=False, float_format="%.4f")
    pd.DataFrame(costs).to_csv(args.out / "costs.csv", index=False, float_format="%.1f")
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(pd.DataFrame(costs).to_string(index=False))
        print(results.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
