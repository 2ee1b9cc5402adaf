"""MedMNIST adapter: EVA classification harness (train with recording, score, select, retrain, bench).

Data come from MedMNIST ``.npz`` files read with numpy (:mod:`.data`); the model is MONAI's ResNet in
the EVA paper's CIFAR form (:mod:`.model`); :mod:`.trainer` trains and records per-sample dynamics into
the core :class:`~nnunet_diet.core.store.DynamicsStore`; :mod:`.selection` scores runs with the core
library and picks coresets; :mod:`.coreset` retrains on them; :mod:`.bench` runs the paper's table.
"""

from importlib import import_module

_HOME = {  # public name -> submodule; loaded on first use, so importing the package does not load torch
    "bench": "bench", "markdown_table": "bench", "Coreset": "coreset", "coreset_epochs": "coreset",
    "retrain": "coreset", "MedMNISTData": "data", "data_path": "data", "load_medmnist": "data",
    "read_npz": "data", "build_resnet": "model", "METHODS": "config", "TrainConfig": "config",
    "score_run": "selection", "select_coreset": "selection", "TrainResult": "trainer", "train": "trainer",
}
__all__ = list(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
