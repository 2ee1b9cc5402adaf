"""``nnunet-diet medmnist``: EVA and the EVA paper's baselines on a MedMNIST dataset.

``train`` (record the dynamics of a full run), ``select`` (score it and write a coreset's ids),
``coreset`` (select, retrain, test) and ``bench`` (the whole table over methods, rates and seeds).
Every step also runs under ``torchrun --nproc_per_node N`` (DDP).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.atomic import atomic_write_text, check_output
from ..core.class_shift import class_shift
from ..core.classification import CLASS_NORMS
from ..core.errors import DietError
from ..core.scores import ScoreConfig
from ..medmnist.config import AUTO_BALANCE, BALANCE, METHODS, SCHEDULES, TrainConfig
from ..medmnist.data import DEFAULT_ROOT, SIZES, load_medmnist
from .scores import add_window_options, window_settings

if TYPE_CHECKING:  # torch, MONAI and the trainer load only when a step runs: --help stays fast
    import pandas as pd

    from ..core.class_shift import ClassShift
    from ..medmnist.coreset import Coreset
    from ..medmnist.distributed import Context


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--flag", required=True, help="MedMNIST dataset flag, e.g. pneumoniamnist, organamnist, dermamnist")
    g.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                   help="folder holding {flag}.npz / {flag}_{size}.npz (default ~/.medmnist; no download)")
    g.add_argument("--size", type=int, choices=SIZES, default=28, help="image side (default 28)")


def _train_options(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    g = p.add_argument_group("training (defaults: the EVA paper)")
    g.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"global batch (default {d.batch_size})")
    g.add_argument("--lr", type=float, default=d.lr, help=f"initial SGD learning rate (default {d.lr})")
    g.add_argument("--min-lr", type=float, default=d.min_lr,
                   help=f"cosine end value, per iteration (default {d.min_lr})")
    g.add_argument("--momentum", type=float, default=d.momentum, help=f"default {d.momentum}")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay}")
    g.add_argument("--no-nesterov", dest="nesterov", action="store_false", help="plain momentum instead of Nesterov")
    g.add_argument("--width", type=int, default=d.width, help="channels of the first stage (default 64: ResNet-18)")
    g.add_argument("--layers", type=int, nargs=4, default=d.layers, metavar="N",
                   help="basic blocks per stage (default 2 2 2 2: ResNet-18)")
    g.add_argument("--stem-stride", type=int, default=d.stem_stride,
                   help="stride of the 3x3 stem (default 1, the paper's; 2 for a 4x cheaper CPU model)")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of initialisation and shuffling (default 0)")
    g.add_argument("--eval-every", type=int, default=d.eval_every, help="validate every N epochs (default 1)")
    g.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (default: fp32, as the paper)")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="write checkpoint and dynamics every N epochs and after the last (default 1)")


def _runtime_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; cores / processes under torchrun on CPU)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _selection_options(p: argparse.ArgumentParser, single: bool, keep_list: bool = False) -> None:
    g = p.add_argument_group("selection")
    if single:
        g.add_argument("--method", required=not keep_list, choices=METHODS, help="score that ranks the samples")
        g.add_argument("--rate", type=float, required=not keep_list, help="kept fraction in (0, 1), e.g. 0.05")
        if keep_list:
            g.add_argument("--keep-list", type=Path, default=None,
                           help="CSV with id (training row) and keep (1/0), e.g. from 'nnunet-diet meddel': "
                                "retrain on exactly those samples instead of --method/--rate")
        g.add_argument("--seed", type=int, default=0, help="for random and CCS draws, and the retraining (default 0)")
    else:
        g.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="default: all")
        g.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.1, 0.3], help="default 0.05 0.1 0.3")
        g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default 0 1 2")
    g.add_argument("--class-balance", nargs="?", choices=BALANCE, const="on", default="off",
                   help="on (the bare flag): each class keeps its share (not for ccs); floor: the method's ranking "
                        "with every class floored at half its share; floor-prune: the same after setting aside "
                        "each class's --hard-prune share of top-ranked samples; floor-strata: floor's class counts, "
                        "each class drawn by CCS over the score; the floor settings change only a class-shifted "
                        f"coreset; auto: the recommended one, {AUTO_BALANCE} (see docs/medmnist.md); default off "
                        "(the paper)")
    g.add_argument("--class-norm", choices=CLASS_NORMS, default=None,
                   help="normalise the score within each class before ranking: mean (s / class mean) or "
                        "zscore (not for random and ccs)")
    g.add_argument("--hard-prune", type=float, default=0.1,
                   help="CCS: fraction of all samples with the lowest AUM dropped first; floor-prune and "
                        "floor-strata: fraction of each class's top-ranked samples set aside (default 0.1)")
    add_window_options(g)


def _schedule_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", choices=SCHEDULES, default="epochs",
                   help="coreset retraining: same epochs as the full run (EVA/DeepCore, default) or same "
                        "iterations (CCS)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("medmnist", help="EVA and its baselines on MedMNIST: train, select, coreset, bench",
                       description="Train a classifier on a MedMNIST dataset recording its training dynamics, "
                                   "score every sample (EVA, EL2N, forgetting, entropy, AUM, CCS, random), select "
                                   "coresets, retrain on them and test. See docs/medmnist.md.")
    steps = p.add_subparsers(dest="step", required=True, metavar="STEP")
    t = steps.add_parser("train", help="train on the full training split and record per-sample dynamics")
    _data_options(t)
    _train_options(t)
    _runtime_options(t)
    t.add_argument("--out", type=Path, required=True, help="run folder (resumed when it holds a checkpoint)")
    t.add_argument("--no-resume", dest="resume", action="store_false", help="start over even if a checkpoint exists")
    t.set_defaults(func=run_train)
    s = steps.add_parser("select", help="score a run and write the ids of one coreset")
    s.add_argument("--run", type=Path, required=True, help="run folder of 'medmnist train'")
    _selection_options(s, single=True)
    s.add_argument("-o", "--output", type=Path, default=None,
                   help="file for the kept ids (default RUN/coresets/<method>_<rate>_seed<seed>.txt)")
    s.set_defaults(func=run_select)
    c = steps.add_parser("coreset", help="select a coreset of a run, retrain on it and test")
    c.add_argument("--run", type=Path, required=True, help="run folder of 'medmnist train'")
    _selection_options(c, single=True, keep_list=True)
    _schedule_option(c)
    _runtime_options(c)
    c.set_defaults(func=run_coreset)
    b = steps.add_parser("bench", help="full runs, then every method x rate coreset, over seeds: the paper's table")
    _data_options(b)
    _train_options(b)
    _selection_options(b, single=False)
    _schedule_option(b)
    _runtime_options(b)
    b.add_argument("--out", type=Path, required=True, help="bench folder (results.csv, results.md, one run per seed)")
    b.set_defaults(func=run_bench)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
                       momentum=args.momentum, weight_decay=args.weight_decay, nesterov=args.nesterov,
                       width=args.width, layers=tuple(args.layers), stem_stride=args.stem_stride, seed=args.seed,
                       eval_every=args.eval_every, amp=args.amp, checkpoint_every=args.checkpoint_every)


def _score_config(args: argparse.Namespace) -> ScoreConfig:
    return ScoreConfig(**window_settings(args))


def _context(args: argparse.Namespace) -> Context:
    import torch

    from ..medmnist.distributed import setup

    ctx = setup(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    elif ctx.world > 1 and ctx.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ctx.world))
    return ctx


def _epoch_line(row: dict) -> None:
    from tqdm.auto import tqdm

    tqdm.write(f"epoch {row['epoch'] + 1}: loss {row['loss']:.4f}  train acc {row['train_acc']:.4f}  "
               f"val acc {row['val_acc']:.4f}  lr {row['lr']:.4g}  ({row['seconds']:.1f} s)")


def run_train(args: argparse.Namespace) -> int:
    from ..medmnist.distributed import teardown
    from ..medmnist.trainer import train

    check_output(args.out, folder=True, option="--out")
    data = load_medmnist(args.root, args.flag, args.size)
    ctx = _context(args)
    try:
        result = train(data, args.out, _train_config(args), resume=args.resume, progress=args.progress,
                       on_epoch=_epoch_line if args.progress else None, ctx=ctx)
        if ctx.main:
            print(f"{data.path}: {len(data.train)} train images, {data.n_channels} channel(s), "
                  f"{data.n_classes} classes; world size {ctx.world} on {ctx.device}")
            print(json.dumps(result.summary(), indent=2))
            print(f"dynamics: {result.store}")
    finally:
        teardown()
    return 0


def _select(args: argparse.Namespace, write: bool = True) -> tuple[pd.DataFrame, Coreset, ClassShift]:
    from ..medmnist.coreset import Coreset
    from ..medmnist.selection import FLOORS, coreset_shift, resolve_floor, score_run, select_coreset

    frame = score_run(args.run, _score_config(args))
    options = dict(class_norm=args.class_norm, hard_prune=args.hard_prune, seed=args.seed)
    ids = select_coreset(frame, args.method, args.rate, class_balance=args.class_balance, **options)
    balance = args.class_balance
    if balance in FLOORS:
        balance = resolve_floor(frame, args.method, args.rate, ids, balance, **options)
        print(f"class balance {args.class_balance}: " + (
            "the paper's selection (no class below half its share)" if balance == "off"
            else f"classes raised to half their share ({balance})"))
    if write:
        table = frame.rename(columns={"group": "class"})  # the label: what 'nnunet-diet select' reports by
        atomic_write_text(args.run / "scores.csv", table.to_csv(index=False, float_format="%.6g"))
    return frame, Coreset(args.method, args.rate, args.seed, ids, balance, args.class_norm), coreset_shift(frame, ids)


def _report_shift(shift: ClassShift) -> None:
    """The class distribution table on stdout, one warning line per shifted class on stderr."""
    print(shift.table())
    for line in shift.warnings():
        print(line, file=sys.stderr)


def run_select(args: argparse.Namespace) -> int:
    if args.output:
        check_output(args.output, inputs=[args.run / "dynamics.npz", args.run / "scores.csv"])
    frame, coreset, shift = _select(args)
    out = args.output or args.run / "coresets" / f"{coreset.name}.txt"
    atomic_write_text(out, "\n".join(map(str, coreset.ids)) + "\n")
    print(f"kept {len(coreset.ids)} of {len(frame)} samples -> {out}")
    _report_shift(shift)
    print(f"scores of every sample -> {args.run / 'scores.csv'}")
    return 0


def _add_to_tables(run: Path, row: dict) -> Path:
    """Add a coreset result to ``run/coresets/results.{csv,md}`` (with the run's full-data row)."""
    import pandas as pd

    from ..medmnist.bench import result_row, write_tables
    from ..medmnist.coreset import run_config
    from ..medmnist.trainer import TrainResult

    folder = run / "coresets"
    old = pd.read_csv(folder / "results.csv").to_dict("records") if (folder / "results.csv").is_file() else []
    labels = _run_labels(run)
    full = result_row("full", 1.0, int(run_config(run)["train"]["seed"]), TrainResult.load(run), "full",
                      class_shift(np.arange(len(labels)), labels, np.arange(len(labels))))
    write_tables(pd.DataFrame([full] + [r for r in old if r["method"] != "full"] + [row]), folder)
    return folder / "results.csv"


def _run_labels(run: Path) -> np.ndarray:
    """Class label of every training row of a run (from its dynamics store)."""
    from ..core.store import DynamicsStore
    from ..medmnist.trainer import DYNAMICS

    store = DynamicsStore.load(run / DYNAMICS)
    labels = np.empty(int(store.ids.max()) + 1, dtype=object)
    labels[store.ids] = store.groups
    return labels.astype(str)


def run_coreset(args: argparse.Namespace) -> int:
    from ..medmnist.bench import result_row
    from ..medmnist.coreset import keep_list_coreset, retrain, run_config
    from ..medmnist.distributed import teardown

    info = run_config(args.run)
    if args.keep_list is None and (args.method is None or args.rate is None):
        raise DietError("medmnist coreset needs --method and --rate, or --keep-list")
    if args.keep_list is not None and (args.method is not None or args.rate is not None):
        raise DietError("--keep-list names the coreset itself: give it without --method / --rate")
    if args.keep_list is not None:
        coreset = keep_list_coreset(args.keep_list, int(info["n_train"]), args.seed)
        labels = _run_labels(args.run)
        shift = class_shift(np.arange(len(labels)), labels, coreset.ids)
    ctx = _context(args)
    try:
        if args.keep_list is None:
            _, coreset, shift = _select(args, write=ctx.main)
        result = retrain(args.run, coreset, schedule=args.schedule, progress=args.progress, ctx=ctx)
        if ctx.main:
            balance = str(coreset.class_balance if coreset.class_balance is not False else "off")
            balance = f"auto: {balance}" if args.class_balance == "auto" else balance
            table = _add_to_tables(args.run, result_row(coreset.method, coreset.rate, args.seed, result,
                                                        args.schedule, shift, balance, coreset.class_norm))
            print(f"kept {len(coreset.ids)} of {info['n_train']} samples")
            _report_shift(shift)
            print(json.dumps(result.summary(), indent=2))
            print(f"tables: {table} and {table.with_suffix('.md')}")
    finally:
        teardown()
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from ..medmnist.bench import bench
    from ..medmnist.distributed import teardown

    check_output(args.out, folder=True, option="--out")
    data = load_medmnist(args.root, args.flag, args.size)
    ctx = _context(args)
    try:
        results = bench(data, args.out, _train_config(args), methods=args.methods, rates=args.rates,
                        seeds=args.seeds, score_config=_score_config(args), schedule=args.schedule,
                        class_balance=args.class_balance, class_norm=args.class_norm,
                        hard_prune=args.hard_prune, progress=args.progress,
                        ctx=ctx, log=print if ctx.main else lambda _: None)
        if ctx.main:
            print(f"{len(results)} runs -> {args.out / 'results.csv'}, {args.out / 'results.md'}")
            print((args.out / "results.md").read_text())
    finally:
        teardown()
    return 0
