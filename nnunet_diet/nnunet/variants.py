"""Short schedules of the DAD trainers (the pattern of nnU-Net's ``nnUNetTrainer_Xepochs``).

For each base (``nnUNetTrainerDAD``: nnU-Net's SGD; ``nnUNetTrainerDADAdam``: the DAD paper's Adam):
``<base>_{E}epochs`` changes only ``num_epochs``; ``<base>_{E}epochs_{I}iters`` also runs ``I`` training
and ``max(1, I // 5)`` validation iterations per epoch and saves ``checkpoint_latest`` every epoch,
for CPU work, demos and tests with lite plans.

Why generated and not written out like nnU-Net's ``training_length/`` classes: the 120 classes differ
only in two numbers, so explicit copies would be some 800 lines of boilerplate to keep in step. To keep
them findable, one list (:func:`.schedules.variants`) names them all: ``nnunet-diet trainers`` prints
it, the table in docs/nnunet.md is that output (a test keeps the two equal), and the classes are built
from it here with ordinary ``__module__`` / ``__qualname__`` so checkpoints and DDP workers import them.
"""

from __future__ import annotations

import torch

from . import trainer
from .schedules import variants


def _variant(base: type[trainer.DADRecordingMixin], name: str, epochs: int,
             iterations: int | None) -> type[trainer.DADRecordingMixin]:
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        if iterations is not None:
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = max(1, iterations // 5)
            self.save_every = 1

    return type(name, (base,), {"__init__": __init__, "__module__": __name__, "__qualname__": name})


for _v in variants():
    globals()[_v.name] = _variant(getattr(trainer, _v.base), _v.name, _v.epochs, _v.iterations)

__all__ = [v.name for v in variants()]
