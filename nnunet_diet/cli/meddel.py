"""MedDEL / NormDEL commands: ``embed`` (images -> vectors on disk), ``meddel`` (near-duplicate removal
to a target fraction or at a fixed eta -> per-case keep table) and ``normdel-table``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import atomic_write_text, check_output
from ..core.errors import DietError
from ..core.meddel import VISITS
from ..core.normdel import normdel
from ..embed.cluster import BACKENDS
from ..embed.sslconfig import OBJECTIVES, PRESETS, SSLConfig
from ..embed.vladconfig import VladConfig
from ..embed.views import ViewsConfig

SOURCES = ("intensities", "nnunet", "medmnist", "torch", "mae", "contrastive", "vlad", "views")


def _epsilon(value: str) -> float | None:
    return None if value.lower() == "none" else float(value)


def _fold(value: str) -> int | str:
    if value != "all" and not value.isdigit():
        raise argparse.ArgumentTypeError(f"a fold number or 'all', got {value!r}")
    return value if value == "all" else int(value)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed images for MedDEL (sharded over torchrun ranks, resumable)",
                       description="Write OUT/embeddings.npy + ids.txt + meta.json. Under torchrun --nproc_per_node N "
                                   "each rank embeds every N-th image into its own shard; rank 0 merges.")
    p.add_argument("-o", "--output", type=Path, required=True, help="embedding folder")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--npz", type=Path, help="MedMNIST-layout .npz (ids: row indices of --split)")
    g.add_argument("--raw", type=Path, help="nnU-Net raw dataset folder (dataset.json, imagesTr)")
    g.add_argument("--preprocessed", type=Path, help="nnU-Net preprocessed configuration folder "
                   "(<nnUNet_preprocessed>/<dataset>/<data_identifier>)")
    g.add_argument("--images", type=Path, help="folder of PNG / JPEG / TIFF images (ids: relative paths)")
    p.add_argument("--split", default="train", help="split of --npz (default train)")
    p.add_argument("--source", choices=SOURCES, default="intensities",
                   help="intensities (training-free, default), nnunet (trained model folder; raw images go through "
                        "nnU-Net's preprocessing with its plans), medmnist (EVA "
                        "harness run folder), torch (TorchScript / saved module file), contrastive / mae (a "
                        "self-supervised encoder trained on these images, saved as OUT/encoder.pt), vlad "
                        "(training-free multi-scale patch VLAD fitted on these images, saved as OUT/vlad.npz: "
                        "finds zoomed, cropped and mirrored copies; 2D images only), views (training-free "
                        "zoom search: each image with its crops at 60-90 %% of each side, for zoomed copies of "
                        "small images such as 28 x 28 MedMNIST; compare with meddel --clusters 1; 2D only)")
    p.add_argument("--model", type=Path, help="model folder / run folder / module file for the chosen source; "
                   "contrastive / mae: an encoder.pt to reuse instead of training; vlad: a vlad.npz to reuse")
    p.add_argument("--grid", type=int, default=16, help="intensities: samples per spatial axis (default 16)")
    p.add_argument("--fold", type=_fold, default=0, help="nnunet: fold of the model (default 0)")
    p.add_argument("--checkpoint", default="checkpoint_final.pth", help="nnunet: checkpoint file name")
    p.add_argument("--weights", choices=("final", "best"), default="final", help="medmnist: which model")
    p.add_argument("--size", type=int, nargs="+", default=[224, 224], help="torch: input size (default 224 224)")
    p.add_argument("--channels", type=int, default=3, help="torch: input channels (grey is repeated; default 3)")
    s = p.add_argument_group("contrastive / mae training (see docs/meddel.md)")
    s.add_argument("--preset", choices=PRESETS, default="small", help="small (CPU, default) or base (GPU: ViT-B "
                   "768-d for mae, ResNet-18 widths for contrastive)")
    s.add_argument("--epochs", type=int, default=SSLConfig.epochs, help=f"default {SSLConfig.epochs}")
    s.add_argument("--train-batch-size", type=int, default=SSLConfig.batch_size,
                   help=f"default {SSLConfig.batch_size}")
    s.add_argument("--lr", type=float, default=SSLConfig.lr, help=f"AdamW peak learning rate (default {SSLConfig.lr})")
    s.add_argument("--input-size", type=int, default=None, help="side images are resized to (default: the "
                   "preset's, 64 in 2D / 32 in 3D for small, capped at the images' own size)")
    s.add_argument("--patch", type=int, default=None, help="mae: patch side (default 8 small, 16 base)")
    s.add_argument("--max-train-images", type=int, default=None,
                   help=f"train (vlad: fit) on a seeded sample of at most this many images (default "
                        f"{SSLConfig.max_images}; vlad {VladConfig.max_images})")
    s.add_argument("--seed", type=int, default=0, help="training / vlad fitting seed (default 0)")
    v = p.add_argument_group("vlad (see docs/meddel.md)")
    v.add_argument("--words", type=int, default=VladConfig.words, help=f"k-means words (default {VladConfig.words})")
    v.add_argument("--dim", type=int, default=VladConfig.dim, help=f"embedding dimensions (default {VladConfig.dim})")
    w = p.add_argument_group("views (see docs/meddel.md)")
    w.add_argument("--views-base", type=int, default=ViewsConfig.base,
                   help=f"side images are resampled to first (default {ViewsConfig.base})")
    w.add_argument("--views-grid", type=int, default=ViewsConfig.grid,
                   help=f"side each view is compared at (default {ViewsConfig.grid})")
    w.add_argument("--views-scales", type=int, default=ViewsConfig.scales,
                   help=f"crop scales from {ViewsConfig.smin} to {ViewsConfig.smax} of each side (default "
                        f"{ViewsConfig.scales})")
    w.add_argument("--views-offsets", type=int, default=ViewsConfig.offsets,
                   help=f"places per axis of each crop (default {ViewsConfig.offsets})")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="start over instead of resuming")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run_embed)

    p = sub.add_parser("meddel", help="MedDEL near-duplicate removal to a target fraction (paper 002)",
                       description="k-means the embeddings once, then per cluster drop members farther than "
                                   "epsilon from the centroid and greedily drop members whose cosine similarity "
                                   "to a kept member exceeds eta; with --fraction, eta is found by bisection.")
    p.add_argument("embeddings", type=Path, help="folder from 'nnunet-diet embed' or .npz with ids + embeddings")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--fraction", type=float, help="target kept fraction in (0, 1], e.g. 0.05")
    g.add_argument("--eta", type=float, help="fixed cosine-similarity threshold in [-1, 1] (paper: 0.7-0.9)")
    p.add_argument("--clusters", type=int, default=None, help="k-means K (default ceil(sqrt(N)))")
    p.add_argument("--epsilon", type=_epsilon, default=0.9,
                   help="drop members with cosine distance to the centroid above this (paper: 0.9); 'none': off")
    p.add_argument("--visit", choices=VISITS, default="closest",
                   help="closest (default, the paper's prose: keep the member nearer the centroid) or "
                        "farthest (the paper's pseudocode)")
    p.add_argument("--probes", type=int, default=1,
                   help="compare each sample with the kept members of its own cluster (1, default: the paper) "
                        "or also of the clusters of its P-1 next-nearest centroids (finds pairs k-means split)")
    p.add_argument("--tolerance", type=float, default=0.005, help="target mode: |kept - target| allowed (0.005)")
    p.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    p.add_argument("--kmeans", choices=BACKENDS, default=None, help="k-means backend (default: faiss when "
                   "installed, else scikit-learn)")
    p.add_argument("--centres", default=None, help="CSV id,centre or a regex whose first group is the centre: "
                   "adds a centre column and prints how much each centre loses")
    p.add_argument("-o", "--output", type=Path, default=None, help="keep table CSV (default: print the summary only)")
    p.set_defaults(func=run_meddel_cmd)

    p = sub.add_parser("normdel-table", help="add the NormDEL column to a results CSV (fraction, metric)",
                       description="Read a CSV with a retained-fraction and a metric column and print it with "
                                   "NormDEL x 100 (paper 002, Eq. 4-5).")
    p.add_argument("results", type=Path)
    p.add_argument("--fraction-column", default="fraction", help="retained fraction in (0, 1] (default fraction)")
    p.add_argument("--metric-column", default="metric", help="metric in [0, 1] (default metric)")
    p.add_argument("--alpha", type=float, default=1.0, help="compactness weight (default 1, reproduces Table 3)")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the table as CSV")
    p.set_defaults(func=run_normdel_table)


def _source(args: argparse.Namespace):
    from ..embed.sources import ImageFolder, NpzImages, PreprocessedImages, RawImages

    if args.npz:
        return NpzImages(args.npz, args.split)
    if args.images:
        return ImageFolder(args.images)
    return RawImages(args.raw) if args.raw else PreprocessedImages(args.preprocessed)


def _self_supervised(args: argparse.Namespace, source):
    from ..embed.pretrain import SelfSupervisedEncoder, pretrain

    if args.model is None:
        config = SSLConfig(objective=args.source, preset=args.preset, size=args.input_size, patch=args.patch,
                           epochs=args.epochs, batch_size=args.train_batch_size, lr=args.lr, seed=args.seed,
                           max_images=args.max_train_images or SSLConfig.max_images)
        path = pretrain(source, args.output, config, device=args.device, resume=args.resume, progress=args.progress)
    else:
        path = args.model
    encoder = SelfSupervisedEncoder(path, args.device, args.batch_size)
    if encoder.arch["objective"] != args.source:
        raise DietError(f"{path}: a {encoder.arch['objective']} encoder, not {args.source}")
    encoder.check(source.load(0), source.where(0))
    return encoder


def _vlad(args: argparse.Namespace, source):
    from ..embed.vlad import VladEncoder, fit_vlad

    path = args.model
    if path is None:
        config = VladConfig(words=args.words, dim=args.dim, seed=args.seed,
                            max_images=args.max_train_images or VladConfig.max_images)
        path = fit_vlad(source, args.output, config, resume=args.resume, progress=args.progress)
    encoder = VladEncoder(path)
    encoder.check(source.load(0), source.where(0))
    return encoder


def _encoder(args: argparse.Namespace, source):
    from ..embed import encoders

    if args.source in OBJECTIVES:
        return _self_supervised(args, source)
    if args.source == "vlad":
        return _vlad(args, source)
    if args.source == "intensities":
        return encoders.IntensityEncoder(args.grid)
    if args.source == "views":
        from ..embed.views import ViewsEncoder

        return ViewsEncoder(ViewsConfig(base=args.views_base, grid=args.views_grid, scales=args.views_scales,
                                        offsets=args.views_offsets))
    if args.model is None:
        raise DietError(f"--source {args.source} needs --model")
    if args.source == "nnunet":
        return encoders.NnunetEncoder(args.model, args.fold, args.checkpoint, args.device)
    if args.source == "medmnist":
        return encoders.MedmnistEncoder(args.model, args.weights, args.device)
    return encoders.TorchEncoder(args.model, args.size, args.channels, args.device)


def run_embed(args: argparse.Namespace) -> int:
    from ..embed.run import embed

    check_output(args.output, inputs=[args.npz, args.raw, args.preprocessed, args.images], folder=True)
    source = _source(args)
    encoder = _encoder(args, source)
    if args.source == "nnunet" and not args.preprocessed:  # raw images: nnU-Net's preprocessing with the model's plans
        from ..embed.encoders import NnunetRawCases

        source = NnunetRawCases(source, encoder)
        encoder.signature = {**encoder.signature, "input": "raw, nnU-Net preprocessing"}
    out = embed(source, encoder, args.output, batch_size=args.batch_size, dtype=args.dtype,
                resume=args.resume, progress=args.progress)
    if out is not None:
        print(f"wrote {out / 'embeddings.npy'}")
    return 0


def run_meddel_cmd(args: argparse.Namespace) -> int:
    from ..embed.store import load_embeddings
    from ..embed.table import centre_summary, keep_table, run_meddel
    from ..nnunet.config import centre_of

    if args.output:
        check_output(args.output, inputs=[args.embeddings])
    emb = load_embeddings(args.embeddings)
    result = run_meddel(emb, fraction=args.fraction, eta=args.eta, clusters=args.clusters, epsilon=args.epsilon,
                        visit=args.visit, tolerance=args.tolerance, seed=args.seed, backend=args.kmeans,
                        probes=args.probes)
    table = keep_table(result, emb.ids, centre_of(list(emb.ids), args.centres))
    target = f", target {100 * result.target:g} % ({result.passes} passes)" if result.target is not None else ""
    print(f"kept {result.n_kept} of {len(table)} ({100 * result.fraction:.2f} %) at eta {result.eta:.4f}, "
          f"{result.n_clusters} clusters{'' if result.probes == 1 else f' ({result.probes} probed per sample)'}, "
          f"epsilon {result.epsilon}{target}")
    if "centre" in table.columns:
        print(centre_summary(table).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.output:
        atomic_write_text(args.output, table.to_csv(index=False, float_format="%.6g"))
        print(f"wrote {args.output}")
    return 0


def run_normdel_table(args: argparse.Namespace) -> int:
    from ..nnunet.splits import numeric_column

    if args.output:
        check_output(args.output, inputs=[args.results])
    if not args.results.is_file():
        raise DietError(f"{args.results}: no such results file")
    try:
        table = pd.read_csv(args.results)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DietError(f"{args.results}: not a readable CSV ({exc})") from None
    for col in (args.fraction_column, args.metric_column):
        if col not in table.columns:
            raise DietError(f"{args.results}: no column {col!r} (columns: {', '.join(table.columns)})")
    if table.empty:
        raise DietError(f"{args.results}: no rows (only a header)")
    metric, fraction = (numeric_column(table, c, args.results) for c in (args.metric_column, args.fraction_column))
    try:
        values = normdel(metric, fraction, args.alpha)
    except DietError as exc:
        raise DietError(f"{args.results}: {exc}") from None
    table["normdel"] = np.round(100 * values, 2)
    print(table.to_string(index=False))
    if args.output:
        atomic_write_text(args.output, table.to_csv(index=False))
    return 0
