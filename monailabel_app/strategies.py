"""The DAD review queues: MONAI Label "Next Sample" strategies over the run's score table.

Each serves only images without a ``final`` label, never the image it served last to the same client,
and returns the case's score fields with the sample (``PatientID`` carries them into 3D Slicer's node name).
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from typing import Any

import numpy as np
import pandas as pd
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.strategy import Strategy

from nnunet_diet.core.errors import DietError
from nnunet_diet.report.review import REGIONS, ambiguous_band, match_images, pruned_by

from .scoring import DADScores

logger = logging.getLogger(__name__)


class ServeLog:
    """The image each client was served last, shared by the DAD strategies (one server process)."""

    def __init__(self) -> None:
        self._last: dict[str | None, str] = {}
        self._lock = threading.Lock()

    def pick(self, client: str | None, candidates: list[str]) -> str | None:
        """First candidate that is not the client's last image; remembered as its new last image."""
        with self._lock:
            pick = next((c for c in candidates if c != self._last.get(client)), None)
            if pick is not None:
                self._last[client] = pick
            return pick


def node_name(fields: dict[str, Any]) -> str:
    """What 3D Slicer shows as the volume's name: the case and its DAD fields (and the audit's reason)."""
    def num(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"
    name = (f"{fields['case_id']} | DAD rank {fields['dad_rank']}/{fields['dad_cases']} | DAD {num(fields['dad'])}"
            f" | sigma {num(fields['sigma'])} | {fields['region']}")
    return name + (f" | {fields['reason']}" if fields.get("reason") else "")


class DADStrategy(Strategy):
    """Base: subclasses give the serving order of the scored cases (``order``) and their options."""

    options: dict[str, Any] = {}

    def __init__(self, description: str, scores: DADScores, served: ServeLog) -> None:
        super().__init__(description)
        self.scores = scores
        self.served = served

    def info(self) -> dict[str, Any]:
        return {**super().info(), "config": dict(self.options)} if self.options else super().info()

    def parse(self, request: dict) -> dict[str, Any]:
        """Options from the request (Slicer sends its option table's values), else the defaults."""
        out = {}
        for key, default in self.options.items():
            value = request.get(key)
            if isinstance(default, list):
                value = default[0] if value in (None, "") else value
                if value not in default:
                    raise DietError(f"option {key}={value!r}: choose one of {', '.join(default)}")
            elif isinstance(default, bool):
                value = default if value is None else str(value).strip().lower() in ("1", "true", "yes", "on")
            elif isinstance(default, float):
                try:
                    value = default if value in (None, "") else float(value)
                except (TypeError, ValueError):
                    raise DietError(f"option {key}={value!r}: not a number") from None
            out[key] = value
        return out

    @abstractmethod
    def order(self, table: pd.DataFrame, options: dict[str, Any]) -> list[str]:
        """Case ids in serving order."""

    def __call__(self, request: dict, datastore: Datastore) -> dict[str, Any]:
        self.scores.reload()  # a changed or fixed scores file counts from the next sample on
        table = self.scores.table
        if table is None:
            logger.error(f"{request.get('strategy')}: no DAD scores ({self.scores.error})")
            return {}
        try:
            order = self.order(table, self.parse(request))
        except DietError as exc:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, f"{request.get('strategy')}: {exc}") from None
        case_of = match_images(datastore.list_images(), table.index).case_of
        image_of = {case: image for image, case in case_of.items()}
        unlabeled = set(datastore.get_unlabeled_images())
        queue = [image_of[c] for c in order if c in image_of and image_of[c] in unlabeled]
        image = self.served.pick(request.get("client_id"), queue)
        if image is None:
            logger.info(f"{request.get('strategy')}: no case left to review ({len(queue)} in the queue)")
            return {}
        fields = self.scores.fields(case_of[image])
        return {"id": image, **fields, "queue_left": len(queue), "PatientID": node_name(fields)}


def _by_dad(table: pd.DataFrame) -> pd.DataFrame:
    """Lowest DAD first (= ``dad_rank``), unscored last, ties by id."""
    return table.sort_values(["dad", "id"], na_position="last", kind="stable")


class HardestFirst(DADStrategy):
    """Lowest DAD first: the cases the network learned worst (likely mislabeled or genuinely difficult)."""

    def __init__(self, scores: DADScores, served: ServeLog) -> None:
        super().__init__("DAD: hardest first (lowest DAD, rank 1 first)", scores, served)

    def order(self, table: pd.DataFrame, options: dict[str, Any]) -> list[str]:
        return list(_by_dad(table)["id"])


class AmbiguousFirst(DADStrategy):
    """The data map's ambiguous band at pruning rate ``rate``, highest variability (sigma) first."""

    options = {"rate": 0.4}

    def __init__(self, scores: DADScores, served: ServeLog) -> None:
        super().__init__("DAD: ambiguous first (middle band at the pruning rate, highest sigma first)",
                         scores, served)

    def order(self, table: pd.DataFrame, options: dict[str, Any]) -> list[str]:
        band = table[ambiguous_band(table, options["rate"])]
        return list(band.sort_values(["sigma", "id"], ascending=[False, True], na_position="last",
                                     kind="stable")["id"])


class PruningView(DADStrategy):
    """The cases ``nnunet-diet prune --rate RATE --mode KEEP`` would remove, lowest DAD first: a human check
    before pruning."""

    options = {"rate": 0.4, "keep": list(REGIONS), "stratify": False}

    def __init__(self, scores: DADScores, served: ServeLog) -> None:
        super().__init__("DAD: pruning view (cases the pruning would remove, lowest DAD first)", scores, served)

    def order(self, table: pd.DataFrame, options: dict[str, Any]) -> list[str]:
        removed = pruned_by(table, options["rate"], options["keep"], options["stratify"])
        return list(_by_dad(table[np.asarray(removed)])["id"])


class AuditFirst(DADStrategy):
    """The label audit's review order (``audit_rank`` of ``nnunet-diet audit``'s ``audit.csv``): what the table
    lists first is what "Next Sample" serves first."""

    def __init__(self, scores: DADScores, served: ServeLog) -> None:
        super().__init__("Label audit: the order of nnunet-diet audit (audit.csv), flagged cases with their reason",
                         scores, served)

    def order(self, table: pd.DataFrame, options: dict[str, Any]) -> list[str]:
        if "audit_rank" not in table.columns:
            raise DietError(f"{self.scores.csv}: no audit_rank column; start the server with --conf dad_scores "
                            "<fold>/dad/audit.csv (written by nnunet-diet audit)")
        return list(table.sort_values(["audit_rank", "id"], na_position="last", kind="stable")["id"])
