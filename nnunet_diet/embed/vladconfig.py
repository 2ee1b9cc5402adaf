"""Settings of the training-free ``vlad`` MedDEL embedding (:mod:`.vlad`), torch-free so the command
line can show them without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..core.errors import DietError

__all__ = ["VladConfig"]


@dataclass(frozen=True)
class VladConfig:
    """Settings of :func:`fit_vlad` (defaults measured in docs/benchmarks.md)."""

    words: int = 128
    dim: int = 64
    levels: int = 8
    ratio: float = 1.2
    sigma: float = 0.3
    max_images: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.words < 2 or self.dim < 2 or self.levels < 1 or self.ratio <= 1 or self.sigma <= 0 \
                or self.max_images < 2:
            raise DietError(f"invalid vlad settings {asdict(self)} (words, dim >= 2, levels >= 1, ratio > 1, "
                            "sigma > 0, max_images >= 2)")
