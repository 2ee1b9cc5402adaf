"""Lite plans: a small network and batch on the same preprocessed data, for CPU work and tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..core.atomic import atomic_write_text, backup
from ..core.errors import DietError

PLANS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def make_lite_plans(folder: Path, source: str = "nnUNetPlans", target: str = "nnUNetPlans_lite", *,
                    base_features: int = 8, max_features: int = 64, batch_size: int = 2) -> tuple[Path, Path | None]:
    """Write ``<folder>/<target>.json``: ``source`` with ``features_per_stage`` = base x 2^stage
    (capped) and ``batch_size`` in every configuration. ``data_identifier`` is kept, so training
    with ``-p <target>`` reuses the preprocessed data of ``source``. An existing, different ``<target>.json``
    (perhaps edited by hand) is first copied to a timestamped ``.bak``. Returns ``(plans file, backup)``."""
    for name, what in ((source, "source plans"), (target, "plans name")):
        if not PLANS_NAME.fullmatch(name) or name.endswith(".json"):
            raise DietError(f"{what} {name!r}: a plain name such as nnUNetPlans_lite (letters, digits, _ . -; no "
                            "folder, no .json): the plans file goes in the dataset's preprocessed folder")
    src = folder / f"{source}.json"
    if not src.is_file():
        raise DietError(f"{src}: no such plans file")
    if target == source:
        raise DietError("the lite plans need a name of their own (target == source)")
    if base_features < 1 or max_features < base_features or batch_size < 1:
        raise DietError(f"need 1 <= base_features <= max_features and batch_size >= 1; got {base_features}, "
                        f"{max_features}, {batch_size}")
    try:
        plans = json.loads(src.read_text())
    except json.JSONDecodeError as exc:
        raise DietError(f"{src}: not valid JSON ({exc})") from None
    plans["plans_name"] = target
    for name, config in plans.get("configurations", {}).items():
        if "batch_size" in config:
            config["batch_size"] = batch_size
        arch = config.get("architecture", {}).get("arch_kwargs", {})
        if "features_per_stage" in arch:
            arch["features_per_stage"] = [min(base_features * 2**i, max_features)
                                          for i in range(len(arch["features_per_stage"]))]
    out, text = folder / f"{target}.json", json.dumps(plans, indent=2)
    if out.is_dir():
        raise DietError(f"{out}: is a folder, not a plans file")
    copy = backup(out) if out.is_file() and out.read_text() != text else None
    atomic_write_text(out, text)
    return out, copy
