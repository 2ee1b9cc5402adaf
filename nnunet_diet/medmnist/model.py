"""ResNet-18 in the CIFAR form the EVA paper trains (3x3 stride-1 stem, no max-pool), from MONAI.

The EVA code (a fork of the CCS code) uses the CIFAR ResNet-18: a 3x3 stride-1 convolution stem
without max-pooling, four stages of two basic blocks with 64-128-256-512 channels, 1x1-convolution
+ BatchNorm projection shortcuts without bias, global average pooling and one linear layer. MONAI's
``ResNet`` builds exactly this with ``conv1_t_size=3, conv1_t_stride=stem_stride, no_max_pool=True,
shortcut_type="B", bias_downsample=False`` (torchvision does not import on the CPU machines).
``width`` scales the stage channels (``width, 2 width, 4 width, 8 width``; 64 is the paper's),
``layers`` sets the blocks per stage and ``stem_stride`` the stride of the stem (1 is the paper's;
2 quarters the cost), for small CPU models.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import ResNet

from ..core.errors import DietError

__all__ = ["build_resnet"]


def build_resnet(in_channels: int, num_classes: int, width: int = 64, layers: Sequence[int] = (2, 2, 2, 2),
                 stem_stride: int = 1) -> ResNet:
    """CIFAR-style ResNet (ResNet-18 with the defaults) for ``in_channels``-channel 2D images."""
    if width < 1 or len(layers) != 4 or min(layers) < 1 or stem_stride < 1:
        raise DietError(f"ResNet needs width >= 1, four stages of >= 1 block and stem stride >= 1, got width "
                        f"{width}, layers {list(layers)}, stem stride {stem_stride}")
    return ResNet(
        block="basic", layers=list(layers), block_inplanes=[width, 2 * width, 4 * width, 8 * width],
        spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes,
        conv1_t_size=3, conv1_t_stride=stem_stride, no_max_pool=True, shortcut_type="B", bias_downsample=False,
    )
