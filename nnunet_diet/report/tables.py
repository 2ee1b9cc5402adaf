"""The per-sample score table on disk (CSV + JSON summary), written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core.atomic import atomic_write_text
from ..core.scores import ScoreConfig, score_table
from ..core.store import DynamicsStore


def write_score_table(store: DynamicsStore, config: ScoreConfig, csv_path: Path,
                      summary_path: Path | None = None, extra: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Score ``store``; write the table to ``csv_path`` and the summary (plus ``extra``) to
    ``summary_path`` (default ``<csv_path>.summary.json``); return both."""
    cols, summary = score_table(store, config)
    summary.update(extra or {})
    frame = pd.DataFrame(cols)
    atomic_write_text(csv_path, frame.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(summary_path or csv_path.with_suffix(".summary.json"), json.dumps(summary, indent=2))
    return frame, summary
