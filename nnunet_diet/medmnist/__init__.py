"""MedMNIST adapter: EVA classification harness (train with recording, score, select, retrain, bench).

Data come from MedMNIST ``.npz`` files read with numpy (:mod:`.data`); the model is MONAI's ResNet in
the EVA paper's CIFAR form (:mod:`.model`); :mod:`.trainer` trains and records per-sample dynamics into
the core :class:`~nnunet_diet.core.store.DynamicsStore`; :mod:`.selection` scores runs with the core
library and picks coresets; :mod:`.coreset` retrains on them; :mod:`.bench` runs the paper's table.
"""

from .bench import bench, markdown_table
from .coreset import Coreset, coreset_epochs, retrain
from .data import MedMNISTData, data_path, load_medmnist, read_npz
from .model import build_resnet
from .selection import METHODS, score_run, select_coreset
from .trainer import TrainConfig, TrainResult, train

__all__ = [
    "MedMNISTData", "load_medmnist", "read_npz", "data_path", "build_resnet",
    "TrainConfig", "TrainResult", "train", "METHODS", "score_run", "select_coreset",
    "Coreset", "coreset_epochs", "retrain", "bench", "markdown_table",
]
