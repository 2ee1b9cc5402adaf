"""Train a classifier on a MedMNIST training set (or a subset of it) and record its training dynamics.

The defaults are the EVA paper's protocol (Hong et al. 2024, Appendix G, and the EVA code): CIFAR-style
ResNet-18, SGD lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4, cosine annealing per iteration down
to 1e-4, batch 256, 200 epochs, plain cross-entropy, no augmentation, inputs ``(x / 255 - 0.5) / 0.5``.
Every epoch visits every sample once (shuffled, the last batch kept); the per-sample values of EVA Eq. 3
and of the baselines are recorded from the training forward pass (:mod:`.recorder`). The validation
split is evaluated every ``eval_every`` epochs and the test split at the end, with the final model and
with the model of the best validation epoch. With ``amp`` the forward passes run under bf16 autocast
on CUDA (no loss scaling is needed for bf16; the recorded values are computed in fp32 from the bf16
logits).

A run folder holds ``config.json``, ``history.csv`` (per epoch), ``checkpoint.pt`` (rewritten every
epoch, atomically, for resuming), ``dynamics.npz`` (the store, ids = row indices of the file's train
split, groups = class labels), ``train_probs.npy`` (softmax of the final model on the training samples
in eval mode: the entropy baseline's input) and ``result.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..core.atomic import atomic_open, atomic_write_text
from ..core.errors import DietError
from ..core.store import DynamicsStore
from ..recording import EpochAccumulator
from .config import TrainConfig
from .data import MedMNISTData
from .distributed import Context, broadcast, epoch_order, setup
from .model import build_resnet
from .recorder import SERIES, batch_dynamics

__all__ = ["TrainConfig", "TrainResult", "train", "run_epoch", "record_epoch", "predict", "make_optimiser", "to_device"]

CHECKPOINT, DYNAMICS, PROBS, HISTORY, RESULT, CONFIG = (
    "checkpoint.pt", "dynamics.npz", "train_probs.npy", "history.csv", "result.json", "config.json")


@dataclass(frozen=True)
class TrainResult:
    """What a run reports (also in ``result.json``); ``store`` and ``train_probs`` when recorded."""

    out: Path
    n_train: int
    epochs: int
    iterations: int
    final_val_acc: float
    final_test_acc: float
    best_val_acc: float
    best_val_epoch: int
    best_test_acc: float
    train_seconds: float
    store: DynamicsStore | None = None
    train_probs: np.ndarray | None = None

    def summary(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("store", "train_probs")}
        return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}

    @classmethod
    def load(cls, out: str | Path) -> TrainResult:
        """The result of a finished run folder (without store and probabilities)."""
        path = Path(out) / RESULT
        if not path.is_file():
            raise DietError(f"{path}: missing; the run in {out} has not finished")
        return cls(**{**json.loads(path.read_text()), "out": Path(out)})


def make_optimiser(model: torch.nn.Module, config: TrainConfig, steps: int) -> tuple[torch.optim.SGD, object]:
    """SGD (momentum, Nesterov, weight decay) with cosine annealing over ``steps`` iterations to ``min_lr``."""
    optimiser = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.nesterov)
    return optimiser, torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps, eta_min=config.min_lr)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> ``(x / 255 - 0.5) / 0.5`` (the EVA code's ToTensor + Normalize(0.5, 0.5))."""
    return images.float() / 127.5 - 1.0


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """bf16 autocast on CUDA when ``amp`` (a no-op context otherwise)."""
    if amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DietError(f"--amp uses bf16 autocast, which {torch.cuda.get_device_name(device)} does not support")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def run_epoch(model: torch.nn.Module, optimiser: torch.optim.Optimizer, scheduler: object, images: torch.Tensor,
              labels: torch.Tensor, order: torch.Tensor, real: torch.Tensor, batch_size: int,
              recorder: EpochAccumulator | None = None, bar: tqdm | None = None, amp: bool = False) -> float:
    """One pass over ``order`` (positions into ``images``) in batches; returns the mean training loss.

    With a ``recorder`` each batch's :func:`~.recorder.batch_dynamics` (from the logits the loss uses,
    before the step) are added under their positions (-1 where ``real`` is False: DDP padding).
    ``amp``: bf16 autocast on CUDA.
    """
    model.train()
    total = torch.zeros((), device=images.device)
    for start in range(0, len(order), batch_size):
        pos = order[start : start + batch_size]
        target = labels[pos]
        with autocast(images.device, amp):
            logits = model(_normalise(images[pos]))
            loss = F.cross_entropy(logits.float(), target)
        if recorder is not None:
            recorder.update(torch.where(real[start : start + batch_size], pos, -1), batch_dynamics(logits, target))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        total += loss.detach() * len(pos)
        if bar is not None:
            bar.update()
    return float(total) / len(order)


def record_epoch(recorder: EpochAccumulator, store: DynamicsStore, epoch: int) -> None:
    """Write one epoch of every rank's recorded values to ``store`` (each sample exactly once)."""
    ids, values, counts = recorder.aggregate()
    if len(ids) != store.n_samples or (counts != 1).any():
        raise DietError(f"epoch {epoch}: {len(ids)} of {store.n_samples} samples recorded, "
                        f"{int((counts != 1).sum())} of them more than once")
    store.record(epoch, ids, values)
    recorder.reset()


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int, amp: bool = False) -> torch.Tensor:
    """Softmax probabilities (eval mode) of uint8 images, on the CPU."""
    model.eval()
    with autocast(images.device, amp):
        out = [torch.softmax(model(_normalise(images[s : s + batch_size])).float(), 1).cpu()
               for s in range(0, len(images), batch_size)]
    model.train()
    return torch.cat(out)


def _accuracy(model: torch.nn.Module, images: torch.Tensor, labels: np.ndarray, batch_size: int,
              amp: bool = False) -> float:
    return float((predict(model, images, batch_size, amp).argmax(1).numpy() == labels).mean())


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Copy ``array`` to ``device`` with standard row-major strides. numpy can give a size-1 axis any
    stride (fancy indexing gives grey ``N x 1 x S x S`` images the strides of channels-last), and
    torch's CPU convolution backward then corrupted the heap (torch 2.14.1 and 2.15.0 on these machines)."""
    source = torch.from_numpy(array)
    return torch.empty(source.shape, dtype=source.dtype, device=device).copy_(source)


def _check_rows(rows: np.ndarray, n: int, path: Path) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size == 0:
        raise DietError(f"{path}: no training samples selected")
    if rows.min() < 0 or rows.max() >= n or len(np.unique(rows)) != rows.size:
        raise DietError(f"{path}: training rows must be distinct indices in [0, {n}), got {rows.size} rows "
                        f"in [{rows.min()}, {rows.max()}]")
    return rows


def _results_config(config: TrainConfig) -> dict:
    """The settings a resumed run must share with its checkpoint (all but how often it is written)."""
    return {k: v for k, v in asdict(config).items() if k != "checkpoint_every"}


class _Run:
    """Mutable state of one run: the epoch to start from, history, best validation model."""

    def __init__(self) -> None:
        self.start = 0
        self.history: list[dict] = []
        self.best_val, self.best_epoch, self.best_state = -1.0, -1, None

    def restore(self, path: Path, expect: dict, model: torch.nn.Module, optimiser, scheduler) -> None:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        saved = {k: ckpt[k] for k in expect}
        saved["config"] = {**_results_config(TrainConfig()), **saved["config"]}  # fields added since: defaults
        if saved != expect:
            diff = sorted(k for k in expect if saved[k] != expect[k])
            raise DietError(f"{path}: written by a run with other settings ({', '.join(diff)}); "
                            "choose another output folder or start over without resuming")
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        scheduler.load_state_dict(ckpt["scheduler"])
        self.start, self.history = ckpt["epoch"], ckpt["history"]
        self.best_val, self.best_epoch, self.best_state = ckpt["best_val"], ckpt["best_epoch"], ckpt["best_state"]

    def save(self, path: Path, expect: dict, model: torch.nn.Module, optimiser, scheduler) -> None:
        state = dict(expect, epoch=len(self.history), history=self.history, model=model.state_dict(),
                     optimiser=optimiser.state_dict(), scheduler=scheduler.state_dict(),
                     best_val=self.best_val, best_epoch=self.best_epoch, best_state=self.best_state)
        with atomic_open(path, "wb") as fh:
            torch.save(state, fh)


def train(
    data: MedMNISTData,
    out: str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    rows: np.ndarray | None = None,
    record: bool = True,
    resume: bool = True,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    ctx: Context | None = None,
) -> TrainResult:
    """Train on ``data.train`` rows ``rows`` (default all), recording dynamics when ``record``.

    Resumes from ``out/checkpoint.pt`` when ``resume`` and the checkpoint's settings match (the
    per-epoch shuffles depend only on the seed and the epoch, so a resumed run draws the same batches).
    Under ``torchrun`` every rank trains on its share; rank 0 evaluates, writes the files and its
    result is returned on every rank.
    """
    ctx = ctx or setup()
    rows = _check_rows(np.arange(len(data.train)) if rows is None else rows, len(data.train), data.path)
    job = _Training(data, Path(out), config, rows, record, ctx)
    job.start(resume)
    for epoch in range(job.run.start, config.epochs):
        row = job.train_epoch(epoch, progress)
        if ctx.main:
            job.end_epoch(row)
            if on_epoch is not None:
                on_epoch(row)
        else:
            job.run.history.append(row)
    return job.finish()


class _Training:
    """One run's model, optimiser, data on the device and records: the steps :func:`train` names."""

    def __init__(self, data: MedMNISTData, out: Path, config: TrainConfig, rows: np.ndarray, record: bool,
                 ctx: Context) -> None:
        self.data, self.out, self.config, self.ctx = data, out, config, ctx
        n, device = len(rows), ctx.device
        self.expect = {"config": _results_config(config), "rows": hashlib.sha256(rows.tobytes()).hexdigest(),
                       "record": record, "world": ctx.world, "data": str(data.path)}
        torch.manual_seed(config.seed)
        self.model = build_resnet(data.n_channels, data.n_classes, config.width, config.layers,
                                  config.stem_stride).to(device)
        self.net = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None) \
            if ctx.world > 1 else self.model
        self.local_batch = -(-config.batch_size // ctx.world)
        self.per_epoch = config.iterations_per_epoch(n, ctx.world)
        self.optimiser, self.scheduler = make_optimiser(self.model, config, config.epochs * self.per_epoch)
        labels = data.train.labels[rows]
        self.store = DynamicsStore(rows, SERIES, groups=labels.astype(str), capacity=config.epochs, metadata={
            "data": str(data.path), "train": asdict(config), "world_size": ctx.world,
            "recorded": "training forward pass, train mode, before the optimiser step",
            "ids": "row indices of the file's train split"}) if record else None
        self.recorder = EpochAccumulator(rows, device) if record else None
        self.x, self.y = to_device(data.train.images[rows], device), to_device(labels, device)
        self.val_x, self.test_x = (to_device(s.images, device) for s in (data.val, data.test))
        self.run = _Run()

    def start(self, resume: bool) -> None:
        """Continue from the checkpoint (records cut back to its epoch), or write the run's config."""
        if resume and (self.out / CHECKPOINT).is_file():
            self.run.restore(self.out / CHECKPOINT, self.expect, self.model, self.optimiser, self.scheduler)
            if self.store is not None:
                self.store = DynamicsStore.load(self.out / DYNAMICS)
                self.store.truncate(self.run.start)
        elif self.ctx.main:
            atomic_write_text(self.out / CONFIG, json.dumps(
                {"data": str(self.data.path), "n_train": len(self.x), "record": self.store is not None,
                 "world_size": self.ctx.world, "train": asdict(self.config)}, indent=2))

    def train_epoch(self, epoch: int, progress: bool) -> dict:
        """Train (and record) one epoch; its history row."""
        order, real = (torch.from_numpy(a).to(self.ctx.device)
                       for a in epoch_order(len(self.x), epoch, self.config.seed, self.ctx.rank, self.ctx.world))
        with tqdm(total=self.per_epoch, desc=f"epoch {epoch + 1}/{self.config.epochs}", leave=False,
                  disable=not (progress and self.ctx.main)) as bar:
            start = time.perf_counter()
            loss = run_epoch(self.net, self.optimiser, self.scheduler, self.x, self.y, order, real, self.local_batch,
                             self.recorder, bar, self.config.amp)
            if self.recorder is not None:
                record_epoch(self.recorder, self.store, epoch)
            seconds = time.perf_counter() - start
        return {"epoch": epoch, "lr": self.scheduler.get_last_lr()[0], "loss": loss, "seconds": seconds,
                "train_acc": float(np.mean(self.store["correct"][:, epoch])) if self.store is not None else float("nan"),
                "val_acc": float("nan")}

    def end_epoch(self, row: dict) -> None:
        """Rank 0: validate when due (keeping the best model), checkpoint when due, write the history."""
        epoch, config = row["epoch"], self.config
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            row["val_acc"] = self._accuracy(self.val_x, self.data.val.labels)
            if row["val_acc"] > self.run.best_val:
                self.run.best_val, self.run.best_epoch = row["val_acc"], epoch
                self.run.best_state = copy.deepcopy({k: v.cpu() for k, v in self.model.state_dict().items()})
        self.run.history.append(row)
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
            if self.store is not None:
                self.store.save(self.out / DYNAMICS)
            self.run.save(self.out / CHECKPOINT, self.expect, self.model, self.optimiser, self.scheduler)
        atomic_write_text(self.out / HISTORY, pd.DataFrame(self.run.history).to_csv(index=False, float_format="%.6g"))

    def finish(self) -> TrainResult:
        """Rank 0 tests the final and the best-validation model and writes the result; every rank returns it."""
        summary, probs = None, None
        if self.ctx.main:
            final_val = self._accuracy(self.val_x, self.data.val.labels)
            final_test = self._accuracy(self.test_x, self.data.test.labels)
            if self.store is not None:
                probs = predict(self.model, self.x, self.config.batch_size, self.config.amp).numpy()
                with atomic_open(self.out / PROBS, "wb") as fh:
                    np.save(fh, probs)
            self.model.load_state_dict(self.run.best_state)
            summary = TrainResult(self.out, len(self.x), self.config.epochs, self.config.epochs * self.per_epoch,
                                  final_val, final_test, self.run.best_val, self.run.best_epoch,
                                  self._accuracy(self.test_x, self.data.test.labels),
                                  float(sum(h["seconds"] for h in self.run.history))).summary()
            atomic_write_text(self.out / RESULT, json.dumps(summary, indent=2))
        summary = broadcast(summary)
        summary["out"] = Path(summary["out"])
        return TrainResult(**summary, store=self.store, train_probs=probs)

    def _accuracy(self, images: torch.Tensor, labels: np.ndarray) -> float:
        return _accuracy(self.model, images, labels, self.config.batch_size, self.config.amp)
