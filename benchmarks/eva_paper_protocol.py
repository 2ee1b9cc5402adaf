"""The EVA paper's full protocol on PneumoniaMNIST on one GPU: EVA vs Random vs CCS at 5, 10 and 30 %.

Paper protocol (Hong et al. 2024; docs/medmnist.md): CIFAR-form ResNet-18 (width 64, 2-2-2-2 blocks,
3x3 stride-1 stem), SGD lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4, cosine per iteration to
1e-4, batch 256, 200 epochs, EVA windows [0, 10) and [100, 110), paper convention, no class balance;
coresets retrained for the same 200 epochs. Per seed: one full recorded run, then every method x rate.

Sized for one run of at most 8 minutes on one H200: the whole dataset lives on the GPU (the harness's
default), bf16 autocast (``amp``), cuDNN autotuning, validation every 10 epochs, the checkpoint and the
dynamics written once at the end of each run; the seeds run as parallel processes on the one GPU (a
28 x 28 ResNet-18 at batch 256 leaves most of an H200 idle). 3 seeds x (3,800 + 3 x 1,800) = 27,600
iterations of batch <= 256.

    python benchmarks/eva_paper_protocol.py --out /tmp/eva_paper          # the GPU run
    python benchmarks/eva_paper_protocol.py --out /tmp/eva_cpu --device cpu --epochs 4 --width 8 \\
        --layers 1 1 1 1 --stem-stride 2 --flag pneumoniamnist_subset --root nnunet_diet/examples  # a CPU try

The windows scale with ``--epochs``: [0, w) and [E/2, E/2 + w) with w = max(2, E / 20). Results:
``OUT/results.csv`` and ``OUT/results.md`` (with each coreset's class shares), ``OUT/timing.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

DEFAULT_ROOT = "/work/shared/data/medmnist"


def windows(epochs: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The paper's 0-10 / 100-110 of 200 epochs, scaled to ``epochs``."""
    w = max(2, epochs // 20)
    return (0, w), (epochs // 2, epochs // 2 + w)


def worker(args: argparse.Namespace, seed: int) -> None:
    """One seed in this process: the harness's bench on the GPU (or the CPU for a try)."""
    import torch

    from nnunet_diet.core.scores import ScoreConfig
    from nnunet_diet.medmnist import TrainConfig, load_medmnist
    from nnunet_diet.medmnist.bench import bench
    from nnunet_diet.medmnist.distributed import setup

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if args.device == "cpu":
        torch.set_num_threads(1)
    early, late = windows(args.epochs)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, width=args.width, layers=tuple(args.layers),
                         stem_stride=args.stem_stride, eval_every=args.eval_every, amp=args.device == "cuda",
                         checkpoint_every=args.epochs)
    bench(load_medmnist(args.root, args.flag), args.out / f"seed{seed}", config, methods=args.methods,
          rates=args.rates, seeds=[seed], score_config=ScoreConfig(eva_early=early, eva_late=late, el2n_window=early),
          progress=False, ctx=setup(args.device), log=lambda line: print(line, flush=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--root", default=DEFAULT_ROOT)
    parser.add_argument("--flag", default="pneumoniamnist")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.1, 0.3])
    parser.add_argument("--methods", nargs="+", default=["eva", "random", "ccs"])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, nargs=4, default=[2, 2, 2, 2])
    parser.add_argument("--stem-stride", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args, args.worker)
        return
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--worker", str(seed)]) for seed in args.seeds]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - start
    from nnunet_diet.medmnist.bench import write_tables

    tables = [args.out / f"seed{s}" / "results.csv" for s in args.seeds]
    done = [pd.read_csv(t) for t in tables if t.is_file()]
    if done:
        write_tables(pd.concat(done, ignore_index=True), args.out)
        print((args.out / "results.md").read_text())
    timing = {"wall_s": round(wall, 1), "exit_codes": codes, "argv": sys.argv[1:]}
    (args.out / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(json.dumps(timing))
    sys.exit(max(codes))


if __name__ == "__main__":
    main()
