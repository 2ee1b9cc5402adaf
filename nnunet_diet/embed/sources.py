"""Where the images come from: a MedMNIST ``.npz`` split, an nnU-Net raw dataset folder, or an nnU-Net
preprocessed configuration folder. A source has ``ids`` and ``load(row) -> C x spatial float32``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import DietError

__all__ = ["NpzImages", "RawImages", "PreprocessedImages"]


class NpzImages:
    """One split of a MedMNIST-layout ``.npz`` (``{split}_images``: N x S x S or N x S x S x 3, uint8).

    Ids are the row indices of the split (what the EVA harness and its coreset files use); pixel values
    stay 0-255 (each encoder normalises).
    """

    def __init__(self, path: str | Path, split: str = "train") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DietError(f"{self.path}: no such .npz file")
        key = f"{split}_images"
        try:
            with np.load(self.path, allow_pickle=False) as z:
                if key not in z.files:
                    raise DietError(f"{self.path}: no array {key!r} (found: {', '.join(z.files)})")
                images = z[key]
        except DietError:
            raise
        except Exception as exc:  # zip / format errors
            raise DietError(f"{self.path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
        if images.ndim == 4 and images.shape[-1] in (1, 3):
            images = np.moveaxis(images, -1, 1)
        elif images.ndim == 3:
            images = images[:, None]
        else:
            raise DietError(f"{self.path}: {key} has shape {images.shape}; expected N x S x S or N x S x S x 3")
        self.images = images
        self.ids = [str(i) for i in range(len(images))]

    def load(self, row: int) -> np.ndarray:
        return self.images[row].astype(np.float32)


class RawImages:
    """An nnU-Net raw dataset folder (``dataset.json``, ``imagesTr/<case>_<channel><file_ending>``),
    read with nnU-Net's own reader for the file type; ids are the case identifiers."""

    def __init__(self, folder: str | Path) -> None:
        from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

        from ..nnunet.raw import raw_cases

        self.folder = Path(folder)
        meta, cases = raw_cases(self.folder, need_labels=False)
        self.ids = sorted(cases)
        self._files = [cases[i]["images"] for i in self.ids]
        self._reader = determine_reader_writer_from_dataset_json(meta, self._files[0][0], verbose=False)()

    def load(self, row: int) -> np.ndarray:
        data, _ = self._reader.read_images(self._files[row])
        return np.asarray(data, dtype=np.float32)


class PreprocessedImages:
    """A configuration folder of nnU-Net preprocessed data (``<nnUNet_preprocessed>/<dataset>/
    <data_identifier>``), loaded with nnU-Net's dataset class; ids are the case identifiers."""

    def __init__(self, folder: str | Path) -> None:
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DietError(f"{self.folder}: no preprocessed data folder")
        try:
            cls = infer_dataset_class(str(self.folder))
        except (AssertionError, KeyError):  # nnU-Net asserts one kind of case file (.b2nd or .npz)
            raise DietError(f"{self.folder}: no preprocessed cases (nnU-Net's .b2nd or .npz files, of one kind)") \
                from None
        self.ids = sorted(cls.get_identifiers(str(self.folder)))
        if not self.ids:
            raise DietError(f"{self.folder}: no preprocessed cases")
        self._dataset = cls(str(self.folder), self.ids)

    def load(self, row: int) -> np.ndarray:
        data = self._dataset.load_case(self.ids[row])[0]
        return np.asarray(data[:], dtype=np.float32)
