"""The studies folder as one image per nnU-Net case, with the training labels as ``original`` labels."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag

from nnunet_diet.report.review import match_images

logger = logging.getLogger(__name__)

LABEL_ENDINGS = (".nii.gz", ".nii", ".nrrd")


class CaseDatastore(LocalDatastore):
    """``LocalDatastore`` that lists one image per case: of an nnU-Net multi-channel case
    (``case_001_0000``, ``case_001_0001``, ...) only the first channel is an image.

    Args:
        datastore_path: the studies folder.
        case_ids: the scored case ids (an id that is a case is never taken for a channel).
        **kwargs: passed to ``LocalDatastore``.
    """

    def __init__(self, datastore_path: str, case_ids: Iterable[str], **kwargs) -> None:
        self._case_ids = set(case_ids)  # needed by _list_files, which LocalDatastore.__init__ calls
        super().__init__(datastore_path, **kwargs)

    def _list_files(self, path: str, patterns: list[str]) -> dict[str, str]:
        files = super()._list_files(path, patterns)
        if os.path.realpath(path) != os.path.realpath(self._datastore.image_path()):
            return files
        ids = {self._to_id(name)[0]: name for name in files}
        channels = match_images(ids, self._case_ids).channels
        return {name: f for name, f in files.items() if self._to_id(name)[0] not in channels}


def default_labels_dir(studies: str) -> Path | None:
    """nnU-Net raw layout: the studies folder is ``imagesTr`` and the labels are in ``../labelsTr``."""
    candidate = Path(studies).parent / "labelsTr"
    return candidate if candidate.is_dir() else None


def _dataset_json(labels_dir: Path | None) -> dict | None:
    """The nnU-Net ``dataset.json`` beside the labels folder, None when absent or unreadable (warned)."""
    if labels_dir is None or not (labels_dir.parent / "dataset.json").is_file():
        return None
    try:
        meta = json.loads((labels_dir.parent / "dataset.json").read_text())
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict):
        logger.warning(f"{labels_dir.parent / 'dataset.json'}: not a readable nnU-Net dataset.json; no label names")
        return None
    return meta


def label_names(labels_dir: Path | None) -> dict[str, int] | None:
    """Foreground label names -> values from the nnU-Net ``dataset.json`` beside the labels folder."""
    labels = (_dataset_json(labels_dir) or {}).get("labels", {})
    names = {str(k): v for k, v in labels.items() if isinstance(v, int) and v > 0} if isinstance(labels, dict) else {}
    return names or None


def label_endings(labels_dir: Path | None) -> tuple[str, ...]:
    """File endings to look for: the dataset's own (``dataset.json`` ``file_ending``, e.g. ``.png`` for a 2D
    natural-image dataset) first, then the 3D ones MONAI Label reads."""
    ending = (_dataset_json(labels_dir) or {}).get("file_ending")
    own = (ending,) if isinstance(ending, str) and ending.startswith(".") else ()
    return own + tuple(e for e in LABEL_ENDINGS if e not in own)


def import_original_labels(datastore: Datastore, case_of: dict[str, str], labels_dir: Path,
                           names: dict[str, int] | None) -> int:
    """Save each case's training label ``<labels_dir>/<case><ending>`` (the dataset's file ending, see
    :func:`label_endings`) as its image's ``original`` label, unless the image has one already. Returns the
    number imported."""
    imported = 0
    endings = label_endings(labels_dir)
    for image_id, case in case_of.items():
        if datastore.get_label_by_image_id(image_id, DefaultLabelTag.ORIGINAL):
            continue
        found = next((labels_dir / f"{case}{e}" for e in endings if (labels_dir / f"{case}{e}").is_file()), None)
        if found is None:
            continue
        info = {"source": str(found), **({"params": {"label_names": names}} if names else {})}
        datastore.save_label(image_id, str(found), DefaultLabelTag.ORIGINAL, info)
        imported += 1
    return imported
