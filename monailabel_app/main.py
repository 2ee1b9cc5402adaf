"""MONAI Label app: the nnU-Net training cases in DAD order, for review in 3D Slicer (docs/monailabel.md).

    monailabel start_server --app monailabel_app --studies <images folder> \\
        --conf dad_scores <nnU-Net fold folder or scores.csv> [--conf nnunet_labels <labelsTr folder>] \\
        [--conf nnunet_model <trained nnU-Net model folder>]

No model, weights or GPU needed: the app serves cases and takes back corrected labels; with
``nnunet_model`` it also offers the model's segmentation (loaded on the first request).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy

from monailabel_app.datastore import (CaseDatastore, default_labels_dir, import_original_labels, label_endings,
                                      label_names)
from monailabel_app.infer import NNUNetInfer
from monailabel_app.scoring import DADScores
from monailabel_app.strategies import AmbiguousFirst, AuditFirst, HardestFirst, PruningView, ServeLog
from nnunet_diet import __version__

logger = logging.getLogger(__name__)


class DADReviewApp(MONAILabelApp):
    """Strategies ``dad_hardest`` (default), ``dad_ambiguous``, ``dad_pruning``, ``audit`` (the default when
    ``dad_scores`` is an ``audit.csv`` of ``nnunet-diet audit``); scoring method ``dad``.

    Conf: ``dad_scores`` (a fold folder or a per-case CSV), ``nnunet_labels`` (the training labels, default
    ``<studies>/../labelsTr``), imported once as each image's ``original`` label; optional infer task
    ``nnunet`` with ``nnunet_model`` (a trained model folder), ``nnunet_folds`` (e.g. ``0`` or ``0,1``),
    ``nnunet_checkpoint`` (default ``checkpoint_final.pth``), ``nnunet_device`` (default cuda if available).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.scores = DADScores(conf.get("dad_scores"), studies)
        self.served = ServeLog()
        self.labels_dir = Path(conf["nnunet_labels"]) if conf.get("nnunet_labels") else default_labels_dir(studies)
        self.label_values = label_names(self.labels_dir)
        names = sorted(self.label_values, key=self.label_values.get) if self.label_values else None
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="nnunet-diet DAD review",
                         description="nnU-Net training cases in DAD order, hardest first", version=__version__,
                         labels=names)
        self.load()

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        cases = self.scores.table.index if self.scores.table is not None else ()
        return CaseDatastore(self.studies, cases, extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
                             auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD)

    def init_infers(self) -> dict[str, InferTask]:
        if not self.conf.get("nnunet_model"):
            return {}
        import torch

        folder = Path(self.conf["nnunet_model"])
        folds = tuple(f.strip() for f in self.conf["nnunet_folds"].split(",")) if self.conf.get("nnunet_folds") \
            else None
        device = self.conf.get("nnunet_device") or ("cuda" if torch.cuda.is_available() else "cpu")
        task = NNUNetInfer(folder, folds, self.conf.get("nnunet_checkpoint", "checkpoint_final.pth"), device)
        if not task.is_valid():
            logger.error(f"nnunet_model {folder}: not an nnU-Net model folder (no plans.json / dataset.json); "
                         "no infer task")
            return {}
        return {"nnunet": task}

    def init_strategies(self) -> dict[str, Strategy]:
        dad = {"dad_hardest": HardestFirst(self.scores, self.served),
               "dad_ambiguous": AmbiguousFirst(self.scores, self.served),
               "dad_pruning": PruningView(self.scores, self.served)}
        audit = {"audit": AuditFirst(self.scores, self.served)}
        is_audit = self.scores.table is not None and "audit_rank" in self.scores.table.columns
        return {**audit, **dad} if is_audit else {**dad, **audit}  # 3D Slicer's default is the first one

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return {"dad": self.scores}

    def load(self) -> None:
        """Start-up, in this process: the scores into the image info, the training labels as ``original``."""
        self.scores({"method": "dad"}, self.datastore())
        if self.labels_dir is not None and self.labels_dir.is_dir():
            store, case_of = self.datastore(), self.scores.match.case_of
            imported = import_original_labels(store, case_of, self.labels_dir, self.label_values)
            have = sum(bool(store.get_label_by_image_id(i, DefaultLabelTag.ORIGINAL)) for i in case_of)
            if case_of and not have:
                example = next(iter(case_of.values()))
                endings = " / ".join(label_endings(self.labels_dir))
                logger.warning(f"DAD review queue: {self.labels_dir}: no training label found for any of "
                               f"{len(case_of)} case(s) (looked for e.g. {example} with {endings}); annotators see "
                               "no 'original' label: pass --conf nnunet_labels <labelsTr folder>")
            else:
                logger.info(f"DAD review queue: {imported} training label(s) imported as 'original' from "
                            f"{self.labels_dir} ({have} of {len(case_of)} case(s) have one)")
        elif self.labels_dir is not None:
            logger.warning(f"DAD review queue: {self.labels_dir}: no such labels folder; no 'original' labels")

    def async_scoring(self, method: str | None, params: dict | None = None) -> Any:
        """Run scoring here, in the server process (MONAI Label would start a subprocess that rewrites the
        datastore file behind this process): the DAD scores are static and reloading them is cheap."""
        methods = [method] if method else list(self._scoring_methods)
        result = {m: self.scoring({"method": m, **((params or {}).get(m) or {})}) for m in methods}
        return result[method] if method else result

    def info(self) -> dict[str, Any]:
        meta = super().info()
        status = {**self.scores.status(), "labels_dir": str(self.labels_dir) if self.labels_dir else None,
                  "original_labels": meta["datastore"].get("label_tags", {}).get("original", 0)}
        meta["dad"] = status
        meta["description"] = (f"{self.description}. DAD scores NOT loaded: {status['error']}" if status["error"] else
                               f"{self.description}: {status['scored_images']} scored image(s) from "
                               f"{status['source']}" + "".join(f". {m}" for m in status["messages"]))
        return meta
