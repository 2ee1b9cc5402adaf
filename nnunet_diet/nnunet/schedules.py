"""Epoch and iteration counts of the short DAD trainer variants (no torch import: the CLI reads them)."""

from __future__ import annotations

from typing import NamedTuple

EPOCHS = (5, 6, 10, 20, 30, 50, 100, 150, 250, 500)
ITERATIONS = (3, 5, 10, 25, 50)
BASES = ("nnUNetTrainerDAD", "nnUNetTrainerDADAdam")  # the trainers that get short variants
TRAINERS = (*BASES, "nnUNetTrainerDADNoDeepSupervision")  # nnU-Net's schedule: 1000 epochs x 250 iterations


class Variant(NamedTuple):
    """One short-schedule trainer: ``<base>_{epochs}epochs[_{iterations}iters]``."""

    name: str
    base: str
    epochs: int
    iterations: int | None  # None: nnU-Net's 250 training iterations per epoch


def variants() -> list[Variant]:
    """Every generated variant, in the order of :data:`BASES`, :data:`EPOCHS` and :data:`ITERATIONS`."""
    return [Variant(f"{base}_{e}epochs" + (f"_{i}iters" if i else ""), base, e, i)
            for base in BASES for e in EPOCHS for i in (None, *ITERATIONS)]
