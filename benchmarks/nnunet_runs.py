"""Shared plumbing of the nnU-Net benchmarks: one work folder, real ``nnUNetv2_*`` and ``nnunet-diet``
commands, folds made by ``nnunet-diet prune`` and reused when a rerun asks for the same training list,
trainings skipped when their validation exists (an interrupted benchmark continues)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from nnunet_diet.cli.pipeline import BIN, _step, nnunet_env, prepare
from nnunet_diet.nnunet.splits import write_splits


class NnunetRuns:
    """A prepared dataset (lite plans) and one short DAD trainer for every training of a benchmark."""

    def __init__(self, raw: Path, dataset_id: int, configuration: str, work: Path, epochs: int, iterations: int,
                 window: int) -> None:
        self.work = work.resolve()
        self.env = nnunet_env(self.work, NNUNET_DIET_WINDOW=str(window), nnUNet_n_proc_DA="0")
        self.name = prepare(raw, dataset_id, self.env, self.work / "logs", configuration=configuration)
        self.d, self.c = str(dataset_id), configuration
        self.trainer = f"nnUNetTrainerDADAdam_{epochs}epochs_{iterations}iters"
        self.results = Path(self.env["nnUNet_results"]) / self.name / f"{self.trainer}__nnUNetPlans_lite__{self.c}"
        self.splits_file = Path(self.env["nnUNet_preprocessed"]) / self.name / "splits_final.json"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, configuration: str, work: str, epochs: int,
                      required: bool = True) -> None:
        """The dataset, work folder and schedule options every nnU-Net benchmark takes (``required=False``: a
        benchmark with a mode that needs no dataset checks ``--raw`` / ``--dataset-id`` itself)."""
        parser.add_argument("--raw", type=Path, required=required, help="raw dataset (make_nnunet_datasets.py)")
        parser.add_argument("--dataset-id", type=int, required=required)
        parser.add_argument("--configuration", default=configuration)
        parser.add_argument("--work", type=Path, default=Path(work))
        parser.add_argument("--epochs", type=int, default=epochs)
        parser.add_argument("--iterations", type=int, default=10)
        parser.add_argument("--window", type=int, default=5, help="DAD window (epochs)")
        parser.add_argument("--exact-every", type=int, default=1, help="exact mode of the scoring run (0: online)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> NnunetRuns:
        return cls(args.raw, args.dataset_id, args.configuration, args.work, args.epochs, args.iterations,
                   args.window)

    def splits(self) -> list[dict]:
        return json.loads(self.splits_file.read_text())

    def score(self, exact_every: int) -> tuple[dict, dict]:
        """Fold 0, the full training list: the scoring run (stop rule reporting only, exact mode every
        ``exact_every`` epochs so that every case has a DAD) and the full-data baseline, trained for the
        whole schedule like every pruned fold. Returns (validation summary, DAD summary)."""
        summary = self.train(0, NNUNET_DIET_EXACT_EVERY=str(exact_every))
        return summary, json.loads((self.results / "fold_0" / "dad" / "summary.json").read_text())

    def train(self, fold: int, **extra: str) -> dict:
        """Train ``fold`` (unless done; stop rule reporting only, no exact mode unless ``extra`` says
        otherwise) and return nnU-Net's validation ``summary.json``."""
        extra = {"NNUNET_DIET_STOP": "0", "NNUNET_DIET_EXACT_EVERY": "0", **extra}
        folder = self.results / f"fold_{fold}"
        if not (folder / "validation" / "summary.json").is_file():
            _step(f"train fold {fold}", [BIN / "nnUNetv2_train", self.d, self.c, str(fold), "-tr", self.trainer,
                                         "-p", "nnUNetPlans_lite", "-device", "cpu"], dict(self.env, **extra),
                  self.work / "logs" / f"{self.name}_fold{fold}.log")
        return json.loads((folder / "validation" / "summary.json").read_text())

    def prune(self, title: str, options: list[str]) -> int:
        """``nnunet-diet prune -f 0 <options>`` appending a fold; an identical existing fold is reused."""
        _step(f"prune: {title}", [BIN / "nnunet-diet", "prune", "-d", self.d, "-c", self.c, "-f", "0", "-tr",
                                  self.trainer, "-p", "nnUNetPlans_lite", *options], self.env)
        splits = self.splits()
        for index, fold in enumerate(splits[:-1]):
            if _same_lists(fold, splits[-1]):
                write_splits(self.splits_file, splits[:-1])
                print(f"   same training list as fold {index}: reusing it")
                return index
        return len(splits) - 1

    def repeat(self, fold: int, copy: int = 1) -> int:
        """The ``copy``-th other fold with ``fold``'s training and validation lists (appended when missing),
        to train the same data again and see how much one training run varies."""
        splits = self.splits()
        same = [i for i, f in enumerate(splits) if i != fold and _same_lists(f, splits[fold])]
        missing = max(0, copy - len(same))
        if missing:
            write_splits(self.splits_file, splits + [dict(splits[fold]) for _ in range(missing)])
            same += list(range(len(splits), len(splits) + missing))
        return same[copy - 1]


def _same_lists(a: dict, b: dict) -> bool:
    """Two folds with the same training and validation cases (in any order)."""
    return sorted(a["train"]) == sorted(b["train"]) and sorted(a["val"]) == sorted(b["val"])


def foreground_dice(summary: dict, pattern: str | None = None) -> float:
    """Mean foreground Dice over the validation cases whose file name matches ``pattern`` (all if None),
    averaged over labels per case like nnU-Net's ``foreground_mean`` (NaN Dice of empty cases ignored)."""
    values = []
    for case in summary["metric_per_case"]:
        if pattern is None or re.search(pattern, Path(case["reference_file"]).name):
            values.append(np.nanmean([m["Dice"] for m in case["metrics"].values()]))
    return float(np.nanmean(values))
