"""The ``nnunet`` infer task: a trained nnU-Net model's segmentation of a study, by nnU-Net's own
``nnUNetPredictor`` (CPU or GPU). Registered only with ``--conf nnunet_model <model folder>``; the model is
loaded on the first request, never at start-up."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from nnunet_diet.cli.nnunet import EXT_FOLDER
from nnunet_diet.core.errors import DietError


def channel_files(image: str, n_channels: int, ending: str) -> list[str]:
    """The files of a case given its first image: ``case_0000<ending>`` -> ``case_0000``, ``case_0001``, ...
    (nnU-Net raw naming); a single-channel case is the image itself."""
    if n_channels == 1:
        return [image]
    m = re.fullmatch(rf"(.+)_0000{re.escape(ending)}", image)
    files = [f"{m[1]}_{c:04d}{ending}" for c in range(n_channels)] if m else []
    if not files or not all(os.path.isfile(f) for f in files):
        raise DietError(f"{image}: the model needs {n_channels} channels, named <case>_0000{ending}, "
                        f"<case>_0001{ending}, ... in the studies folder")
    return files


class NNUNetInfer(InferTask):
    """Segmentation by a trained nnU-Net model folder (``nnUNet_results/<dataset>/<trainer>__<plans>__<config>``).

    Args:
        model_folder: the model folder (holds ``plans.json``, ``dataset.json``, ``fold_*``).
        folds: folds to ensemble, e.g. ``("0",)``; None: every ``fold_*`` with the checkpoint (nnU-Net's rule).
        checkpoint: checkpoint file name in each fold.
        device: ``cuda``, ``cpu`` or ``mps``.
    """

    def __init__(self, model_folder: Path, folds: tuple[str, ...] | None, checkpoint: str, device: str) -> None:
        self.model_folder, self.folds, self.checkpoint, self.device = model_folder, folds, checkpoint, device
        dataset = json.loads((model_folder / "dataset.json").read_text()) \
            if (model_folder / "dataset.json").is_file() else {}
        self.n_channels = len(dataset.get("channel_names", {"0": ""}))
        self.ending = dataset.get("file_ending", ".nii.gz")
        labels = {k: v for k, v in dataset.get("labels", {}).items() if isinstance(v, int) and v > 0}
        super().__init__(InferType.SEGMENTATION, labels, 3,
                         f"nnU-Net model {model_folder.name} (nnUNetPredictor, {device}, folds "
                         f"{','.join(folds) if folds else 'all'})")
        self._predictor = None
        self._lock = threading.Lock()

    def is_valid(self) -> bool:
        return (self.model_folder / "plans.json").is_file() and (self.model_folder / "dataset.json").is_file()

    def _load(self) -> Any:
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        os.environ.setdefault("nnUNet_extTrainer", str(EXT_FOLDER))  # finds nnUNetTrainerDAD checkpoints
        predictor = nnUNetPredictor(device=torch.device(self.device), verbose=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(self.model_folder), self.folds, self.checkpoint)
        return predictor

    def __call__(self, request: dict) -> tuple[str, dict[str, Any]]:
        files = channel_files(request["image"], self.n_channels, self.ending)
        with self._lock:
            if self._predictor is None:
                self._predictor = self._load()
            io = self._predictor.plans_manager.image_reader_writer_class()
            image, properties = io.read_images(files)
            segmentation = self._predictor.predict_single_npy_array(image, properties)
        out = tempfile.NamedTemporaryFile(suffix=self.ending, delete=False).name
        io.write_seg(segmentation, out, properties)
        return out, {"label_names": self.labels, "model_folder": str(self.model_folder)}
