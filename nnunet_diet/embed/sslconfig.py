"""Settings of the self-supervised MedDEL encoders (:mod:`.selfsup`, :mod:`.pretrain`), torch-free so
the command line can show them without importing torch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.errors import DietError

__all__ = ["OBJECTIVES", "PRESETS", "SSLConfig", "architecture"]

OBJECTIVES = ("mae", "contrastive")
PRESETS = ("small", "base")

# size2 / size3: input side for 2D / 3D images; the rest are MONAI constructor arguments
_ARCH = {
    ("mae", "small"): dict(size2=64, size3=32, patch=8, hidden_size=192, mlp_dim=768, num_layers=4, num_heads=4,
                           decoder_hidden_size=128, decoder_mlp_dim=256, decoder_num_layers=2, decoder_num_heads=4),
    ("mae", "base"): dict(size2=224, size3=96, patch=16, hidden_size=768, mlp_dim=3072, num_layers=12, num_heads=12,
                          decoder_hidden_size=384, decoder_mlp_dim=512, decoder_num_layers=4, decoder_num_heads=12),
    ("contrastive", "small"): dict(size2=64, size3=32, layers=[1, 1, 1, 1], block_inplanes=[32, 64, 128, 256]),
    ("contrastive", "base"): dict(size2=224, size3=96, layers=[2, 2, 2, 2], block_inplanes=[64, 128, 256, 512]),
}


@dataclass(frozen=True)
class SSLConfig:
    """Training settings. ``size`` / ``patch`` None: the preset's value for the data's dimensionality.
    ``max_images``: train on at most this many images (a seeded sample; every image is embedded)."""

    objective: str = "contrastive"
    preset: str = "small"
    size: int | None = None
    patch: int | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0
    max_images: int = 20000
    masking_ratio: float = 0.75
    temperature: float = 0.2

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise DietError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.preset not in PRESETS:
            raise DietError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        for name in ("epochs", "batch_size", "max_images"):
            if getattr(self, name) < 1:
                raise DietError(f"{name.replace('_', ' ')} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2 and self.objective == "contrastive":
            raise DietError("contrastive training needs a batch size of at least 2")
        if not 0 < self.masking_ratio < 1:
            raise DietError(f"masking ratio must be in (0, 1), got {self.masking_ratio}")


def architecture(config: SSLConfig, in_channels: int, spatial_shape: Sequence[int]) -> dict:
    """The resolved architecture (stored in the checkpoint): preset values with ``size`` / ``patch`` set.
    Default size: the preset's for the dimensionality, capped at the largest side of ``spatial_shape``
    (the first image) rounded up to a multiple of the patch (no up-sampling of small images, e.g. 28 -> 32)."""
    spatial_dims = len(spatial_shape)
    if spatial_dims not in (2, 3):
        raise DietError(f"self-supervised encoders take 2D or 3D images, got {spatial_dims} spatial axes")
    preset = _ARCH[config.objective, config.preset]
    arch = {k: v for k, v in preset.items() if k not in ("size2", "size3")}
    if config.objective == "mae":
        arch["patch"] = config.patch or arch["patch"]
    step = arch.get("patch", 8)
    arch["size"] = config.size or min(preset[f"size{spatial_dims}"], step * math.ceil(max(spatial_shape) / step))
    if config.objective == "mae":
        if spatial_dims == 3:  # MONAI's 3D sin-cos position embedding needs widths divisible by 6 (and the heads)
            for width, heads in (("hidden_size", "num_heads"), ("decoder_hidden_size", "decoder_num_heads")):
                unit = math.lcm(6, arch[heads])
                arch[width] = unit * math.ceil(arch[width] / unit)
        if arch["size"] % arch["patch"]:
            raise DietError(f"size {arch['size']} is not a multiple of the patch size {arch['patch']}")
    elif arch["size"] < 16:
        raise DietError(f"size must be >= 16 for the ResNet backbone, got {arch['size']}")
    return dict(arch, objective=config.objective, in_channels=in_channels, spatial_dims=spatial_dims)
