"""Recording overhead of the MedMNIST trainer: epochs with and without per-sample recording, interleaved.

One model and optimiser train on the full PneumoniaMNIST training split; epochs alternate between
recording (the shared :class:`~nnunet_diet.recording.EpochAccumulator` plus the end-of-epoch
store write) and not recording,
in the order rec/plain, plain/rec, ... so that drifts in machine load hit both alike. Reported for
wall-clock time and for the process's CPU time (less sensitive to other jobs on a shared machine;
on a GPU only wall time counts): the median epoch time of each kind, the overhead
``median(rec) / median(plain) - 1`` and the median of the paired per-round ratios. Goal: <= 2 %.
Also timed directly: the CPU seconds spent inside the recorder (its per-batch ``update`` and the
end-of-epoch ``record_epoch``) per recorded epoch, against the median CPU time of a plain epoch; on a
crowded machine this is the steadier figure (the difference of two noisy epoch times is not).

    .venv/bin/python benchmarks/medmnist_overhead.py --rounds 6 --width 16
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from nnunet_diet.core.store import DynamicsStore
from nnunet_diet.medmnist.data import load_medmnist
from nnunet_diet.medmnist.model import build_resnet
from nnunet_diet.medmnist.distributed import epoch_order
from nnunet_diet.medmnist import trainer
from nnunet_diet.medmnist.recorder import SERIES, batch_dynamics
from nnunet_diet.medmnist.trainer import TrainConfig, make_optimiser, record_epoch, run_epoch, to_device
from nnunet_diet.recording import EpochAccumulator


class TimedRecorder(EpochAccumulator):
    """The trainer's accumulator, adding up the CPU time of its per-batch work (``update`` and the
    :func:`~nnunet_diet.medmnist.recorder.batch_dynamics` it is given) and of the epoch's store write."""

    cpu_seconds = 0.0

    def update(self, index: torch.Tensor, sums: dict) -> None:
        start = time.process_time()
        super().update(index, sums)
        TimedRecorder.cpu_seconds += time.process_time() - start

    def record(self, store: DynamicsStore, epoch: int) -> None:
        start = time.process_time()
        record_epoch(self, store, epoch)
        TimedRecorder.cpu_seconds += time.process_time() - start


def timed_batch_dynamics(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """:func:`batch_dynamics`, its CPU time added to the recorder's (run_epoch calls it only when recording)."""
    start = time.process_time()
    values = batch_dynamics(logits, labels)
    TimedRecorder.cpu_seconds += time.process_time() - start
    return values


trainer.batch_dynamics = timed_batch_dynamics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/work/shared/data/medmnist"))
    parser.add_argument("--flag", default="pneumoniamnist")
    parser.add_argument("--rounds", type=int, default=6, help="pairs of epochs (default 6)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--layers", type=int, nargs=4, default=(1, 1, 1, 1))
    parser.add_argument("--stem-stride", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_medmnist(args.root, args.flag)
    n = len(data.train)
    config = TrainConfig(epochs=2 * args.rounds, batch_size=args.batch_size, width=args.width, layers=args.layers,
                         stem_stride=args.stem_stride)
    torch.manual_seed(0)
    model = build_resnet(data.n_channels, data.n_classes, args.width, args.layers, args.stem_stride).to(device)
    optimiser, scheduler = make_optimiser(model, config, config.epochs * config.iterations_per_epoch(n))
    x, y = (to_device(a, device) for a in (data.train.images, data.train.labels))
    store = DynamicsStore(np.arange(n), SERIES, capacity=config.epochs)
    recorder = TimedRecorder(np.arange(n), device)
    times: dict[tuple[str, bool], list[float]] = {(k, r): [] for k in ("wall", "cpu") for r in (True, False)}
    epoch = 0
    for r in range(args.rounds):
        for rec in ((True, False) if r % 2 == 0 else (False, True)):
            order, real = (torch.from_numpy(a).to(device) for a in epoch_order(n, epoch, 0))
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, cpu = time.perf_counter(), time.process_time()
            run_epoch(model, optimiser, scheduler, x, y, order, real, args.batch_size, recorder if rec else None)
            if rec:
                recorder.record(store, epoch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times["wall", rec].append(time.perf_counter() - start)
            times["cpu", rec].append(time.process_time() - cpu)
            print(f"epoch {epoch} {'recording' if rec else 'plain    '} wall {times['wall', rec][-1]:.3f} s, "
                  f"cpu {times['cpu', rec][-1]:.3f} s", flush=True)
            epoch += 1
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
          f"device {device}, torch {torch.__version__}, {args.threads} threads; {args.flag} {n} images, "
          f"ResNet width {args.width} layers {list(args.layers)} stem stride {args.stem_stride}, "
          f"batch {args.batch_size}, {args.rounds} rounds")
    for kind in ("wall", "cpu"):
        rec, plain = np.array(times[kind, True]), np.array(times[kind, False])
        print(f"{kind}: median epoch plain {np.median(plain):.3f} s, recording {np.median(rec):.3f} s; overhead "
              f"{100 * (np.median(rec) / np.median(plain) - 1):+.2f} % (median of paired ratios "
              f"{100 * (np.median(rec / plain) - 1):+.2f} %)")
    inside = TimedRecorder.cpu_seconds / args.rounds
    print(f"inside the recorder: {inside:.4f} CPU s per recorded epoch = "
          f"{100 * inside / np.median(times['cpu', False]):.2f} % of a plain epoch's CPU time")


if __name__ == "__main__":
    main()
