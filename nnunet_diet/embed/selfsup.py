"""Self-supervised encoders trained on the user's own images, for MedDEL near-duplicate search.

Paper 002 embeds with an MAE-pretrained ViT-B (768-d); no pretrained weights can be downloaded here, so
the encoder is trained on the dataset itself (as the paper pretrains on medical images). Two objectives:

- ``mae``: MONAI's :class:`~monai.networks.nets.MaskedAutoEncoderViT` (He et al. 2022): 75 % of the
  patches masked, the decoder reconstructs them; loss = mean squared error on the masked patches of the
  per-patch normalised image (the MAE paper's ``norm_pix_loss``). Embedding: the encoder on all patches
  (no masking), after its final LayerNorm, **mean over the patch tokens** (class token excluded).
- ``contrastive``: SimCLR (Chen et al. 2020): two augmented views of each image (zoomed / shifted crop,
  small rotation, flips, gamma, colour gains, greyscale, blur, noise), NT-Xent loss (Eq. 1 of SimCLR) on a
  2-layer projection head. Backbone: MONAI's :class:`~monai.networks.nets.ResNet`; embedding: its
  **global-average-pooled last stage** (the projection head is discarded, as in SimCLR).

Every image is resized to ``size`` per spatial axis and z-scored per image (all channels together).
2D and 3D (``spatial_dims`` from the data). Presets: ``small`` (CPU: minutes for a few thousand 2D
images) and ``base`` (GPU: ViT-B 768-d for ``mae``, ResNet-18 widths for ``contrastive``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import DietError
from .encoders import _zscore

__all__ = ["build_model", "prepare", "features", "mae_loss", "nt_xent", "augment", "BadImage"]

class BadImage(DietError):
    """An image the encoder cannot take; ``index`` is its position in the batch (the caller names the file)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


class _SimCLR(torch.nn.Module):
    """ResNet backbone (pooled features) + projection head (Linear-ReLU-Linear, 128-d) of SimCLR."""

    def __init__(self, arch: dict) -> None:
        from monai.networks.nets import ResNet

        super().__init__()
        self.backbone = ResNet("basic", arch["layers"], arch["block_inplanes"], spatial_dims=arch["spatial_dims"],
                               n_input_channels=arch["in_channels"], conv1_t_stride=2, feed_forward=False)
        width = arch["block_inplanes"][-1]
        self.head = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_model(arch: dict) -> torch.nn.Module:
    """A fresh (randomly initialised, seed-dependent) model for a resolved architecture."""
    if arch["objective"] == "contrastive":
        return _SimCLR(arch)
    from monai.networks.nets import MaskedAutoEncoderViT

    keys = ("hidden_size", "mlp_dim", "num_layers", "num_heads", "decoder_hidden_size", "decoder_mlp_dim",
            "decoder_num_layers", "decoder_num_heads")
    return MaskedAutoEncoderViT(arch["in_channels"], arch["size"], arch["patch"], spatial_dims=arch["spatial_dims"],
                                **{k: arch[k] for k in keys})


def prepare(image: np.ndarray, arch: dict) -> torch.Tensor:
    """``C x spatial`` array -> ``1 x C x size^d`` float32, area-averaged when shrinking (else linear),
    z-scored over the whole image. Raises :class:`DietError` for a wrong channel count, dimensionality
    or an image smaller than the patch."""
    channels, dims = arch["in_channels"], arch["spatial_dims"]
    if image.ndim - 1 != dims or image.shape[0] != channels:
        raise DietError(f"{image.shape[0]}-channel {image.ndim - 1}D image of shape {list(image.shape[1:])}, but "
                        f"the encoder takes {channels}-channel {dims}D images")
    least = arch.get("patch", 1)
    if min(image.shape[1:]) < least:
        raise DietError(f"image of shape {list(image.shape[1:])} is smaller than the patch size {least}")
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    size = (arch["size"],) * dims
    if all(s >= arch["size"] for s in t.shape[2:]):
        t = F.interpolate(t, size=size, mode="area")
    else:
        t = F.interpolate(t, size=size, mode={2: "bilinear", 3: "trilinear"}[dims], align_corners=False)
    return _zscore(t)


def features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The embedding: pooled ResNet backbone (contrastive) or the MAE encoder on all patches, mean of the
    patch tokens after the final LayerNorm (mae)."""
    if isinstance(model, _SimCLR):
        return model.backbone(x)
    tokens = model.patch_embedding(x)
    tokens = torch.cat([model.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
    return model.blocks(tokens)[:, 1:].mean(dim=1)


def _patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """B x C x spatial -> B x patches x (patch^d * C), patches in the row-major order of MONAI's conv
    patch embedding (``flatten(2)`` of the patch grid)."""
    b, c, *spatial = x.shape
    grid = [s // patch for s in spatial]
    shape = [b, c] + [v for g in grid for v in (g, patch)]
    d = len(spatial)
    order = [0, *range(2, 2 + 2 * d, 2), *range(3, 3 + 2 * d, 2), 1]
    return x.reshape(shape).permute(order).reshape(b, math.prod(grid), patch ** d * c)


def mae_loss(model: torch.nn.Module, x: torch.Tensor, masking_ratio: float) -> torch.Tensor:
    """MAE objective: MSE between the prediction and the per-patch normalised target on masked patches."""
    pred, mask = model(x, masking_ratio=masking_ratio)
    target = _patchify(x, model.patch_size[0])
    mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: cross-entropy of each view's positive (the other view of its image) against the
    2B - 2 other views, cosine similarities divided by the temperature."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    b = len(z1)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, target)


def _uniform(gen: torch.Generator, shape: Sequence[int], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=gen)


def _rotation(gen: torch.Generator, b: int, d: int, degrees: float) -> torch.Tensor:
    """B x d x d rotations: one angle in 2D, one per axis pair in 3D, each in +-degrees."""
    rot = torch.eye(d).repeat(b, 1, 1)
    for i, j in [(0, 1)] if d == 2 else [(0, 1), (0, 2), (1, 2)]:
        a = torch.deg2rad(_uniform(gen, (b,), -degrees, degrees))
        r = torch.eye(d).repeat(b, 1, 1)
        r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = a.cos(), -a.sin(), a.sin(), a.cos()
        rot = rot @ r
    return rot


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One SimCLR view of a batch (B x C x spatial, z-scored), random per image: a crop of 55-100 % of
    each side (aspect jitter +-15 %) anywhere inside the image, zoomed back to full size, rotated by up to
    15 degrees, flipped along each axis with probability 1/2; then a gamma of exp(+-0.4) on the
    min-max-scaled image (a non-linear intensity change, which per-image z-scoring does not undo), colour
    images a gain of x0.8-1.2 per channel and greyscale with probability 0.2, a 3-wide box blur mixed in
    (half the images) and Gaussian noise (sigma up to 0.1 of the image's std); z-scored again."""
    b, c, d = len(x), x.shape[1], x.ndim - 2
    side = _uniform(gen, (b, 1), 0.55, 1.0) * torch.exp(_uniform(gen, (b, d), -0.15, 0.15))
    side = side.clamp(max=1.0)
    flips = torch.where(torch.rand(b, d, generator=gen) < 0.5, -1.0, 1.0)
    theta = _rotation(gen, b, d, 15.0) @ torch.diag_embed(side * flips)
    shift = (1 - side) * _uniform(gen, (b, d), -1.0, 1.0)
    theta = torch.cat([theta, shift[..., None]], dim=2).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    shape = (b, *([1] * (d + 1)))
    flat = y.reshape(b, -1)
    low, high = flat.min(dim=1).values.reshape(shape), flat.max(dim=1).values.reshape(shape)
    y = ((y - low) / (high - low).clamp(min=1e-6)) ** torch.exp(_uniform(gen, shape, -0.4, 0.4)).to(y)
    if c > 1:
        y = y * _uniform(gen, (b, c, *([1] * d)), 0.8, 1.2).to(y)
        grey = (torch.rand(shape, generator=gen) < 0.2).to(y)
        y = y + grey * (y.mean(dim=1, keepdim=True) - y)
    pool = F.avg_pool2d if d == 2 else F.avg_pool3d
    mix = _uniform(gen, shape, 0.0, 1.0) * (torch.rand(shape, generator=gen) < 0.5)
    y = _zscore(y + mix.to(y) * (pool(y, 3, stride=1, padding=1, count_include_pad=False) - y))
    return _zscore(y + torch.randn(y.shape, generator=gen).to(y) * _uniform(gen, shape, 0.0, 0.1).to(y))
