"""An nnU-Net trainer built in-process on a preprocessed dataset (by default the shipped hippocampus cases,
fold 0), for benchmarks that time or compare individual training steps, and the A/B timing of a training
step with and without recording they share. The first call plans and preprocesses the data (~30 s)."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "nnunet_diet" / "examples" / "hippocampus40"


def prepare_dataset(work: Path, *, raw: Path = EXAMPLE, dataset_id: int = 990, processes: int = 2,
                    workers: str | None = "0") -> Path:
    """Plan and preprocess ``raw`` (once) under ``work`` and point nnU-Net's environment there (``workers``:
    ``nnUNet_n_proc_DA``, None for nnU-Net's default); returns the preprocessed dataset folder."""
    from nnunet_diet.cli.pipeline import nnunet_env, prepare

    env = nnunet_env(work.resolve(), **({} if workers is None else {"nnUNet_n_proc_DA": workers}))
    name = prepare(raw, dataset_id, env, work / "logs", processes=processes)
    os.environ.update(env)  # nnunetv2.paths reads these at import
    if workers is None:
        os.environ.pop("nnUNet_n_proc_DA", None)
    return Path(env["nnUNet_preprocessed"]) / name


def build_trainer(trainer_cls_name: str, pre: Path, plans_name: str, *, device: str = "cpu", fold: int = 0,
                  seed: int = 0):
    """``trainer_cls_name`` (nnU-Net's ``nnUNetTrainer`` or one of ours) for ``3d_fullres`` on ``plans_name``
    of the preprocessed dataset ``pre``, constructed, not started."""
    import torch

    from nnunet_diet.nnunet import trainer as ours

    plans = json.loads((pre / f"{plans_name}.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((pre / "dataset.json").read_text())
    if hasattr(ours, trainer_cls_name):
        cls = getattr(ours, trainer_cls_name)
    else:
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        if trainer_cls_name != "nnUNetTrainer":
            raise ValueError(f"unknown trainer {trainer_cls_name}")
        cls = nnUNetTrainer
    torch.manual_seed(seed)
    return cls(plans, "3d_fullres", fold, dataset_json, device=torch.device(device))


def make_trainer(trainer_cls_name: str, work: Path, *, features: int | None = 8, max_features: int = 64,
                 device: str = "cpu", num_epochs: int = 10, seed: int = 0):
    """``trainer_cls_name`` (nnU-Net's or ours) on lite plans ``features``..``max_features`` (``features``
    None: nnU-Net's default ``nnUNetPlans``), set up up to its first training step (``on_train_start``
    done; ``next(trainer.dataloader_train)`` gives batches)."""
    from nnunet_diet.nnunet.plans import make_lite_plans

    pre = prepare_dataset(work)
    plans_name = "nnUNetPlans" if features is None else f"nnUNetPlans_lite{features}_{max_features}"
    if features is not None:
        make_lite_plans(pre, target=plans_name, base_features=features, max_features=max_features)
    trainer = build_trainer(trainer_cls_name, pre, plans_name, device=device, seed=seed)
    trainer.num_epochs = num_epochs
    trainer.on_train_start()
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    return trainer


def ab_times(trainer, iterations: int, clock: Callable[[], float],
             faults: dict[str, list[int]] | None = None) -> dict[str, list[float]]:
    """Seconds (by ``clock``) of each of ``iterations`` batches trained three times, in rotating order so that
    none always runs first: through the stock ``nnUNetTrainer.train_step`` (the loss wrapper sees no case keys
    and records nothing), through ``nnUNetTrainerDAD.train_step`` (per-case TP/FP/FN and error norms) and the
    same with ``NNUNET_DIET_ERROR_NORMS=0`` (Dice only). CUDA is synchronised around each step. ``faults``
    (a dict, filled in): the process's minor page faults of each step, per variant (memory the allocator took
    fresh from the kernel). Leaves the trainer's epoch accumulator holding the sums of one full recording step."""
    import dataclasses
    import resource

    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    cuda = trainer.device.type == "cuda"
    full, dice_only = trainer.dad_config, dataclasses.replace(trainer.dad_config, error_norms=False)

    def recording(config):
        def step(batch):
            trainer.dad_config = config
            return trainer.train_step(batch)
        return step

    def timed(fn, batch) -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = clock()
        fn(batch)
        if cuda:
            torch.cuda.synchronize()
        return clock() - t0

    variants = {"stock": lambda b: nnUNetTrainer.train_step(trainer, b),
                "with recording": recording(full), "Dice only (NNUNET_DIET_ERROR_NORMS=0)": recording(dice_only)}
    for _ in range(3):  # warm-up
        variants["with recording"](next(trainer.dataloader_train))
    times: dict[str, list[float]] = {name: [] for name in variants}
    if faults is not None:
        faults.update({name: [] for name in variants})
    names = list(variants)
    for i in range(iterations):
        batch = next(trainer.dataloader_train)
        for name in names[i % 3:] + names[:i % 3]:
            trainer._dad_acc.reset()  # the two recording variants record different quantities
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            times[name].append(timed(variants[name], batch))
            if faults is not None:
                faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    trainer._dad_acc.reset()
    variants["with recording"](next(trainer.dataloader_train))  # full sums for the end-of-epoch timing
    trainer.dad_config = full
    return times


def paired_overhead(variant, stock, *, resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Overhead of ``variant`` over ``stock`` measured on the same batches: the median over batches of
    (variant - stock), divided by the median stock time, with a 95 % bootstrap confidence interval (batches
    resampled with replacement, ``resamples`` times; percentile interval). Returns (estimate, low, high)."""
    import numpy as np

    v, s = np.asarray(variant, float), np.asarray(stock, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(s), size=(resamples, len(s)))
    boot = np.median(v[idx] - s[idx], axis=1) / np.median(s[idx], axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(np.median(v - s) / np.median(s)), float(low), float(high)


def ab_rows(times: dict[str, list[float]], kind: str, faults: dict[str, list[int]] | None = None) -> list[str]:
    """The A/B table as markdown lines: median and mean per iteration with their overhead against the stock
    step, and the paired overhead (:func:`paired_overhead`) with its 95 % confidence interval; with ``faults``,
    the median minor page faults per step."""
    import numpy as np

    rows = [f"| per iteration ({kind} time) | median | overhead | mean | overhead | paired | paired 95 % CI |"
            + (" page faults / step |" if faults else ""),
            "|---|---|---|---|---|---|---|" + ("---|" if faults else "")]
    med_s, mean_s = statistics.median(times["stock"]), float(np.mean(times["stock"]))
    for name, t in times.items():
        med, mean = statistics.median(t), float(np.mean(t))
        paired, low, high = paired_overhead(t, times["stock"])
        rows.append(f"| {name} | {med * 1e3:.1f} ms | {100 * (med / med_s - 1):+.2f} % | {mean * 1e3:.1f} ms | "
                    f"{100 * (mean / mean_s - 1):+.2f} % | {100 * paired:+.2f} % | "
                    f"[{100 * low:+.2f}, {100 * high:+.2f}] % |" + (f" {statistics.median(faults[name]):.0f} |"
                                                                 if faults else ""))
    return rows
