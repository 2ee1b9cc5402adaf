"""Short schedules of the DAD trainers (the pattern of nnU-Net's ``nnUNetTrainer_Xepochs``).

For each base (``nnUNetTrainerDAD``: nnU-Net's SGD; ``nnUNetTrainerDADAdam``: the DAD paper's Adam):
``<base>_{E}epochs`` changes only ``num_epochs``; ``<base>_{E}epochs_{I}iters`` also runs ``I`` training
and ``max(1, I // 5)`` validation iterations per epoch and saves ``checkpoint_latest`` every epoch,
for CPU work, demos and tests with lite plans.
"""

from __future__ import annotations

import torch

from .schedules import EPOCHS, ITERATIONS
from .trainer import nnUNetTrainerDAD, nnUNetTrainerDADAdam


def _variant(base: type[nnUNetTrainerDAD], epochs: int, iterations: int | None) -> type[nnUNetTrainerDAD]:
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        if iterations is not None:
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = max(1, iterations // 5)
            self.save_every = 1

    name = f"{base.__name__}_{epochs}epochs" + (f"_{iterations}iters" if iterations else "")
    return type(name, (base,), {"__init__": __init__, "__module__": __name__, "__qualname__": name})


for _base in (nnUNetTrainerDAD, nnUNetTrainerDADAdam):
    for _e in EPOCHS:
        for _i in (None, *ITERATIONS):
            _cls = _variant(_base, _e, _i)
            globals()[_cls.__name__] = _cls

__all__ = [n for n in globals() if n.startswith("nnUNetTrainerDAD")]
