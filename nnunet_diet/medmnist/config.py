"""Settings and names of the MedMNIST harness, importable without torch (the command line's parser uses them)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import DietError

__all__ = ["TrainConfig", "METHODS", "SCHEDULES", "BALANCE", "AUTO_BALANCE"]

METHODS = ("eva", "random", "forgetting", "entropy", "el2n", "aum", "ccs")  # selection methods
# class-balance settings of a coreset (off = the paper); floor* change only a class-shifted coreset
BALANCE = ("off", "on", "floor", "floor-prune", "floor-strata", "auto")
AUTO_BALANCE = "floor-prune"  # what auto does to a shifted coreset (chosen on the validation split: docs/benchmarks.md)
SCHEDULES = ("epochs", "iterations")  # coreset retraining: same epochs (EVA/DeepCore) or same iterations (CCS)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are the EVA paper's (200 epochs of ResNet-18, batch 256)."""

    epochs: int = 200
    batch_size: int = 256
    lr: float = 0.1
    min_lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    width: int = 64
    layers: tuple[int, int, int, int] = (2, 2, 2, 2)
    stem_stride: int = 1
    seed: int = 0
    eval_every: int = 1
    amp: bool = False          # bf16 autocast on CUDA (the paper trains in fp32)
    checkpoint_every: int = 1  # write checkpoint and dynamics every N epochs (and after the last)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(v) for v in self.layers))
        if min(self.epochs, self.batch_size, self.eval_every, self.checkpoint_every) < 1:
            raise DietError(f"epochs, batch size, eval_every and checkpoint_every must be >= 1, got {self.epochs}, "
                            f"{self.batch_size}, {self.eval_every}, {self.checkpoint_every}")
        if not 0 <= self.min_lr <= self.lr:
            raise DietError(f"learning rates must satisfy 0 <= min_lr <= lr, got {self.min_lr} and {self.lr}")

    def iterations_per_epoch(self, n: int, world: int = 1) -> int:
        """Optimiser steps per epoch on ``n`` samples over ``world`` ranks (last batch kept)."""
        local = -(-n // world)
        return -(-local // -(-self.batch_size // world))
