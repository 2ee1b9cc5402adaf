"""Settings of ``nnUNetTrainerDAD``, read from environment variables.

nnU-Net builds trainers from a fixed constructor signature, so the trainer takes its settings
from the environment (validated here, echoed into the training log):

| variable | default | meaning |
|---|---|---|
| ``NNUNET_DIET_WINDOW`` | 10 | DAD window Delta t in epochs |
| ``NNUNET_DIET_STOP_RULE`` | paper | stop rule (:mod:`nnunet_diet.core.stop_rules`): ``paper`` (L <= threshold x L_max), ``spearman``, ``kept`` or ``noise`` |
| ``NNUNET_DIET_THRESHOLD`` | the rule's | paper 0.01 (L <= 0.01 L_max), spearman 0.9, kept 0.9 (rho / overlap with the previous window >= it), noise 1 (L <= 1 x noise floor) |
| ``NNUNET_DIET_PATIENCE`` | 1 | consecutive windows the stop condition must hold |
| ``NNUNET_DIET_ABSOLUTE`` | 0 | 1: moving distance as sum of absolute changes |
| ``NNUNET_DIET_IGNORE_ZEROS`` | 0 | 1: the DAD code's mean of non-zero Dice values |
| ``NNUNET_DIET_STOP`` | 1 | 0: only report the stop epoch, train on to num_epochs |
| ``NNUNET_DIET_RATE`` | 0.4 | pruning rate that defines the easy / ambiguous / hard regions |
| ``NNUNET_DIET_CENTRES`` | (none) | CSV ``id,centre`` (or a regex with one group, applied to case ids) |
| ``NNUNET_DIET_ERROR_NORMS`` | 1 | 0: record the Dice only (what DAD needs), not the EL2N / EL2Nx baselines |
| ``NNUNET_DIET_EXACT_EVERY`` | 0 | k > 0: exact mode (:mod:`.exact`), DAD from fixed-patch values every k epochs |
| ``NNUNET_DIET_PLOT_EVERY`` | 1 | k > 1: nnU-Net's ``progress.png`` redrawn every k epochs and at the end, not every epoch |
| ``NNUNET_DIET_FINAL_VALIDATION`` | 1 | 0: skip nnU-Net's final validation of the fold (a scoring run whose Dice nothing reads) |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.errors import DietError
from ..core.scores import ScoreConfig
from ..core.stop_rules import STOP_RULES, check_stop_rule, threshold_range

SERIES = ("dice", "el2n", "el2nx")  # the per-case values of recorder.case_values
PREFIX = "NNUNET_DIET_"


def _valid(rule: str, threshold: float) -> bool:
    try:
        check_stop_rule(rule, threshold)
    except DietError:
        return False
    return True


def _read(env: Mapping[str, str], name: str, kind, default, check, rule: str):
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise DietError(f"{PREFIX}{name}={raw!r}: expected {rule}") from None
    if not check(value):
        raise DietError(f"{PREFIX}{name}={raw!r}: expected {rule}")
    return value


def _flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


@dataclass(frozen=True)
class DADConfig:
    window: int = 10
    stop_rule: str = "paper"
    threshold: float = 0.01
    patience: int = 1
    absolute: bool = False
    ignore_zeros: bool = False
    stop: bool = True
    rate: float = 0.4
    centres: str | None = None
    exact_every: int = 0
    error_norms: bool = True
    plot_every: int = 1
    final_validation: bool = True

    @property
    def dad_series(self) -> str:
        """The series DAD, L and the stop rule use: the exact-mode Dice when exact mode is on."""
        return "dice_exact" if self.exact_every else "dice"

    @property
    def series(self) -> list[str]:
        """The series the trainer records: Dice (and EL2N, EL2Nx), with ``*_exact`` twins in exact mode."""
        names = list(SERIES) if self.error_norms else ["dice"]
        return names + ([f"{n}_exact" for n in names] if self.exact_every else [])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DADConfig:
        env = os.environ if env is None else env
        rule = _read(env, "STOP_RULE", str, "paper", lambda v: v in STOP_RULES, "one of " + ", ".join(STOP_RULES))
        threshold = _read(env, "THRESHOLD", float, None, lambda v: _valid(rule, v),
                          f"a number in {threshold_range(rule)} for stop rule {rule}")
        return cls(
            window=_read(env, "WINDOW", int, 10, lambda v: v >= 1, "an integer >= 1"),
            stop_rule=rule,
            threshold=check_stop_rule(rule, threshold),
            patience=_read(env, "PATIENCE", int, 1, lambda v: v >= 1, "an integer >= 1"),
            absolute=_read(env, "ABSOLUTE", _flag, False, lambda v: True, "0 or 1"),
            ignore_zeros=_read(env, "IGNORE_ZEROS", _flag, False, lambda v: True, "0 or 1"),
            stop=_read(env, "STOP", _flag, True, lambda v: True, "0 or 1"),
            rate=_read(env, "RATE", float, 0.4, lambda v: 0 < v < 1, "a number in (0, 1)"),
            centres=env.get(PREFIX + "CENTRES") or None,
            exact_every=_read(env, "EXACT_EVERY", int, 0, lambda v: v >= 0, "an integer >= 0 (0: off)"),
            error_norms=_read(env, "ERROR_NORMS", _flag, True, lambda v: True, "0 or 1"),
            plot_every=_read(env, "PLOT_EVERY", int, 1, lambda v: v >= 1, "an integer >= 1"),
            final_validation=_read(env, "FINAL_VALIDATION", _flag, True, lambda v: True, "0 or 1"),
        )

    def score_config(self) -> ScoreConfig:
        return ScoreConfig(window=self.window, dad_series=self.dad_series, ignore_zeros=self.ignore_zeros,
                           absolute=self.absolute, stop_rule=self.stop_rule, threshold=self.threshold,
                           patience=self.patience, rate=self.rate)

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())


def centre_of(ids: list[str], spec: str | None) -> np.ndarray | None:
    """Centre label per case id from a CSV mapping file (columns ``id,centre``) or a regex whose
    first group is the centre; None when no spec is given."""
    if not spec:
        return None
    path = Path(spec)
    if path.is_file():
        mapping = {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or (n == 1 and line.lower().startswith("id,")):
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) < 2:
                raise DietError(f"{path}:{n}: expected 'id,centre', got {line!r}")
            mapping[parts[0]] = parts[1]
        missing = [i for i in ids if i not in mapping]
        if missing:
            raise DietError(f"{path}: no centre for {len(missing)} case(s), e.g. {missing[0]}")
        return np.array([mapping[i] for i in ids])
    try:
        pattern = re.compile(spec)
    except re.error as exc:
        raise DietError(f"centres {spec!r} is neither a file nor a valid regex ({exc})") from None
    if pattern.groups < 1:
        raise DietError(f"centre pattern {spec!r} needs one group, e.g. '^(kvasir|cvc)_'")
    out = []
    for i in ids:
        m = pattern.search(i)
        if not m:
            raise DietError(f"centre pattern {spec!r} does not match case {i!r}")
        out.append(m.group(1))
    return np.array(out)
