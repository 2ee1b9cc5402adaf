"""An nnU-Net trainer built in-process on the shipped hippocampus cases (fold 0), for benchmarks that
time or compare individual training steps. The first call plans and preprocesses the data (~30 s)."""

from __future__ import annotations

import json
import os
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "nnunet_diet" / "examples" / "hippocampus40"


def make_trainer(trainer_cls_name: str, work: Path, *, features: int = 8, max_features: int = 64,
                 device: str = "cpu", num_epochs: int = 10, seed: int = 0):
    """``trainer_cls_name`` (nnU-Net's or ours) on lite plans ``features``..``max_features``, set up up to
    its first training step (``on_train_start`` done; ``next(trainer.dataloader_train)`` gives batches)."""
    from nnunet_diet.cli.pipeline import nnunet_env, prepare

    env = nnunet_env(work.resolve(), nnUNet_n_proc_DA="0")
    name = prepare(EXAMPLE, 990, env, work / "logs")
    os.environ.update(env)  # nnunetv2.paths reads these at import

    import torch

    from nnunet_diet.nnunet import trainer as ours
    from nnunet_diet.nnunet.plans import make_lite_plans

    pre = Path(env["nnUNet_preprocessed"]) / name
    plans_name = f"nnUNetPlans_lite{features}_{max_features}"
    make_lite_plans(pre, target=plans_name, base_features=features, max_features=max_features)
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
    trainer = cls(plans, "3d_fullres", 0, dataset_json, device=torch.device(device))
    trainer.num_epochs = num_epochs
    trainer.on_train_start()
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    return trainer
