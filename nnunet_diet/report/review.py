"""The DAD review queue without any framework: read a score table, map image ids to case ids, and
say which cases each review order serves.

Used by the MONAI Label app (``monailabel_app/``); everything here is pandas / numpy and the core.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import DietError, check_fraction
from ..core.selection import KEEP_MODES, regions, select

__all__ = ["SCORE_COLUMNS", "REGIONS", "scores_csv", "read_dad_scores", "ImageMatch", "match_images",
           "ambiguous_band", "pruned_by"]

SCORE_COLUMNS = ("id", "dad", "sigma", "region", "dad_rank")
# What the pruning keeps -> core selection mode, as ``nnunet-diet prune --mode`` (DAD high = easy).
REGIONS = ("ambiguous", "easy", "hard")  # the data map's regions: what prune --mode keeps, random aside
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def scores_csv(path: str | Path) -> Path:
    """The score table a path names: a CSV file, a DAD output folder (``<fold>/dad``) or an nnU-Net fold
    folder (``<fold>/dad/scores.csv``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for candidate in (p / "dad" / "scores.csv", p / "scores.csv"):
            if candidate.is_file():
                return candidate
        raise DietError(f"{p}: no DAD scores in this folder (expected {p / 'dad' / 'scores.csv'}, written by "
                        "nnUNetTrainerDAD, or a scores.csv)")
    if not p.is_file():
        raise DietError(f"{p}: no such scores file or fold folder")
    return p


def read_dad_scores(path: str | Path) -> tuple[pd.DataFrame, Path]:
    """Load and check a per-case DAD table (``scores.csv`` of ``nnUNetTrainerDAD`` or any CSV with the
    columns id, dad, sigma, region, dad_rank). Returns ``(table, csv_path)``; ``group`` is kept when present."""
    csv = scores_csv(path)
    try:
        table = pd.read_csv(csv, dtype={"id": str, "group": str, "region": str})
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DietError(f"{csv}: not a readable CSV ({exc})") from None
    missing = [c for c in SCORE_COLUMNS if c not in table.columns]
    if missing:
        present = ", ".join(map(str, table.columns))
        raise DietError(f"{csv}: missing column(s) {', '.join(missing)} (columns: {present}); expected the "
                        "scores.csv written by nnUNetTrainerDAD")
    if table.empty:
        raise DietError(f"{csv}: no rows")
    if table["id"].isna().any():
        raise DietError(f"{csv}: empty id in row {int(np.flatnonzero(table['id'].isna())[0]) + 2}")
    dup = table["id"][table["id"].duplicated()]
    if len(dup):
        raise DietError(f"{csv}: duplicate id {dup.iloc[0]}")
    for column in ("dad", "sigma", "dad_rank"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DietError(f"{csv}: {column} is not a number in row {row + 2} ({table[column].iloc[row]!r})")
        table[column] = values
    table["region"] = table["region"].fillna("unscored")
    return table, csv


@dataclass
class ImageMatch:
    """Datastore images against score ids. A case's primary image is its plain file (``case_001``) or its
    first channel (``case_001_0000``); its other channels (``case_001_0001``, ...) are not cases."""

    case_of: dict[str, str] = field(default_factory=dict)      # primary image id -> case id
    channels: dict[str, str] = field(default_factory=dict)     # other channel image id -> primary image id
    unscored: list[str] = field(default_factory=list)          # primary images whose case has no score
    unknown: list[str] = field(default_factory=list)           # score ids with no image

    def messages(self, csv: Path, studies: str) -> list[str]:
        """One line per problem, naming the files."""
        out = []
        if self.unknown:
            out.append(f"{csv}: {len(self.unknown)} scored case(s) have no image in {studies}, e.g. "
                       f"{', '.join(self.unknown[:3])}")
        if self.unscored:
            out.append(f"{studies}: {len(self.unscored)} image(s) have no DAD score in {csv}, e.g. "
                       f"{', '.join(self.unscored[:3])}; the DAD queues skip them")
        if not self.case_of or len(self.unscored) == len(self.case_of):
            out.append(f"{csv}: no image in {studies} matches a scored case (ids such as "
                       f"{', '.join(self.unknown[:2])}); the DAD queues are empty")
        return out


def _case_and_channel(image_id: str, score_ids: set[str], image_ids: set[str]) -> tuple[str, int]:
    """``case_001_0002`` is channel 2 of ``case_001`` when ``case_001`` is scored or ``case_001_0000`` exists;
    any other id is a case of its own (channel -1)."""
    if image_id in score_ids:
        return image_id, -1
    m = _CHANNEL.match(image_id)
    if m and (m["case"] in score_ids or f"{m['case']}_0000" in image_ids):
        return m["case"], int(m["channel"])
    return image_id, -1


def match_images(image_ids: Iterable[str], score_ids: Iterable[str]) -> ImageMatch:
    """Map datastore image ids to nnU-Net case ids: ``case_XXX_0000`` (nnU-Net raw) and ``case_XXX`` both
    name the case ``case_XXX``; an id that is itself a scored case is never split."""
    known, images = set(score_ids), set(image_ids)
    by_case: dict[str, list[tuple[int, str]]] = {}
    for image_id in sorted(images):
        case, channel = _case_and_channel(image_id, known, images)
        by_case.setdefault(case, []).append((channel, image_id))
    match = ImageMatch()
    for case, members in sorted(by_case.items()):
        members.sort()
        primary = members[0][1]
        match.case_of[primary] = case
        match.channels.update({image_id: primary for _, image_id in members[1:]})
        if case not in known:
            match.unscored.append(primary)
    match.unknown = sorted(known - set(by_case))
    return match


def ambiguous_band(table: pd.DataFrame, rate: float) -> np.ndarray:
    """Mask of the cases that DAD pruning at ``rate`` keeps (the data map's ambiguous region)."""
    return regions(table["dad"].to_numpy(float), check_fraction(rate, "rate")) == "ambiguous"


def pruned_by(table: pd.DataFrame, rate: float, keep: str = "ambiguous", stratify: bool = False) -> np.ndarray:
    """Mask of the cases that ``nnunet-diet prune --rate RATE --mode KEEP [--stratify]`` removes
    (unscored cases are kept, as there)."""
    if keep not in REGIONS:
        raise DietError(f"unknown keep mode {keep!r}; choose one of {', '.join(REGIONS)}")
    groups = None
    if stratify and "group" in table.columns:
        groups = table["group"].fillna("").to_numpy(str)
    kept = select(table["dad"].to_numpy(float), 1 - check_fraction(rate, "rate"), KEEP_MODES[keep],
                  groups=groups, nan_policy="keep")
    mask = np.ones(len(table), bool)
    mask[kept] = False
    return mask
