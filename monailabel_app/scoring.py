"""The ``dad`` scoring method: copy a DAD score table (``scores.csv`` of ``nnUNetTrainerDAD``) into the
datastore's image info, in the server process, writing only what changed."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Any

import pandas as pd
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from nnunet_diet.core.errors import DietError
from nnunet_diet.report.review import ImageMatch, match_images, read_dad_scores, scores_csv

logger = logging.getLogger(__name__)

# Keys this method writes into each image's info (and the strategies return with a sample).
INFO_KEYS = ("case_id", "dad", "sigma", "region", "dad_rank", "dad_cases", "group", "dad_source", "audit_rank",
             "reason")


def _plain(value: Any) -> Any:
    """JSON-safe scalar: NaN -> None, numpy -> Python."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


class DADScores(ScoringMethod):
    """Holds the run's score table and its match with the studies; ``__call__`` (re)loads the table when
    the file changed and writes the score fields of every scored image whose info differs.

    Args:
        source: ``--conf dad_scores``: a CSV or an nnU-Net fold folder (``<fold>/dad/scores.csv``).
        studies: the studies folder (named in messages).
    """

    def __init__(self, source: str | None, studies: str) -> None:
        super().__init__("Load per-case DAD scores (nnUNetTrainerDAD scores.csv) into the image info")
        self.source = source
        self.studies = studies
        self.table: pd.DataFrame | None = None
        self.csv: Path | None = None
        self.match = ImageMatch()
        self.error: str | None = None
        self.messages: list[str] = []
        self._logged: list[str] = []
        self._stamp: tuple | None = None
        self._lock = threading.RLock()
        self.reload()

    def reload(self) -> None:
        """Read the table again if the file changed; a bad file leaves no table and an error message."""
        with self._lock:
            if not self.source:
                self.table, self.error = None, ("no DAD scores configured: start the server with --conf dad_scores "
                                                "<nnU-Net fold folder or scores.csv>")
                return
            try:
                csv = scores_csv(self.source)
                stat = csv.stat()
                stamp = (str(csv), stat.st_mtime_ns, stat.st_size)
                if stamp == self._stamp:
                    return
                table, self.csv = read_dad_scores(csv)
                table.index = table["id"].to_numpy()
                self.table = table
                self._stamp, self.error = stamp, None
            except DietError as exc:
                self.table, self._stamp, self.error = None, None, str(exc)

    def fields(self, case_id: str) -> dict[str, Any]:
        """The info fields of one scored case."""
        row = self.table.loc[case_id]
        rank = row["dad_rank"]
        return {"case_id": case_id, "dad": _plain(float(row["dad"])), "sigma": _plain(float(row["sigma"])),
                "region": str(row["region"]), "dad_rank": None if pd.isna(rank) else int(rank),
                "dad_cases": len(self.table), "group": _plain(row["group"]) if "group" in row.index else None,
                "dad_source": str(self.csv), **self._audit_fields(row)}

    @staticmethod
    def _audit_fields(row: pd.Series) -> dict[str, Any]:
        """``audit_rank`` and ``reason`` of a row of ``nnunet-diet audit``'s table (none for a plain scores.csv)."""
        if "audit_rank" not in row.index:
            return {}
        rank, reason = row["audit_rank"], row.get("reason")
        return {"audit_rank": None if pd.isna(rank) else int(rank),
                "reason": "" if reason is None or pd.isna(reason) else str(reason)}

    def status(self) -> dict[str, Any]:
        """What ``/info/`` shows under ``dad``."""
        scored = len(self.match.case_of) - len(self.match.unscored)
        return {"source": str(self.csv or self.source), "status": "error" if self.error else
                "warning" if self.messages else "ok", "error": self.error, "messages": self.messages,
                "scored_images": 0 if self.error else scored,
                "cases_in_scores": 0 if self.table is None else len(self.table)}

    def __call__(self, request: dict, datastore: Datastore) -> dict[str, Any]:
        with self._lock:
            return self._update(datastore)

    def _update(self, datastore: Datastore) -> dict[str, Any]:
        self.reload()
        images = datastore.list_images()
        scored = self.table.index if self.table is not None else ()
        self.match = match_images(images, scored)
        messages = [self.error] if self.error else self.match.messages(self.csv, self.studies)
        if messages != self._logged:  # log a problem once, not after every sample
            for message in messages:
                (logger.error if self.error else logger.warning)(f"DAD review queue: {message}")
            self._logged = messages
        self.messages = [] if self.error else messages
        written = 0
        for image_id, case_id in self.match.case_of.items():
            if case_id not in scored:
                continue
            info = self.fields(case_id)
            current = datastore.get_image_info(image_id)
            if any(current.get(k) != v for k, v in info.items()):
                datastore.update_image_info(image_id, info)
                written += 1
        if written:
            logger.info(f"DAD review queue: scores of {len(self.table)} cases from {self.csv}; "
                        f"{written} image(s) updated")
        return {**self.status(), "updated_images": written}
