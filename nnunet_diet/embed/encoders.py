"""Image -> vector encoders for MedDEL. Each is ``encoder(images) -> len(images) x d`` float32 over a
list of ``C x spatial`` float32 arrays, with a ``signature`` dict (stored with the embeddings, checked
on resume).

- :class:`IntensityEncoder`: training-free baseline (area-down-sampled intensities, z-scored per image).
- :class:`TorchEncoder`: any torch module or TorchScript file (the hook for the paper's MAE ViT-B).
- :class:`NnunetEncoder`: global-average-pooled deepest encoder stage of a trained nnU-Net model
  (:class:`NnunetRawCases` feeds it raw images through nnU-Net's own inference preprocessing).
- :class:`MedmnistEncoder`: penultimate (pooled) features of a classifier trained by the EVA harness.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import DietError

__all__ = ["IntensityEncoder", "TorchEncoder", "NnunetEncoder", "NnunetRawCases", "MedmnistEncoder"]


def _zscore(x: torch.Tensor) -> torch.Tensor:
    """Per-sample z-score over all but the batch axis (constant samples become zeros)."""
    flat = x.reshape(len(x), -1)
    std = flat.std(dim=1, keepdim=True)
    return ((flat - flat.mean(dim=1, keepdim=True)) / torch.where(std > 0, std, 1.0)).reshape(x.shape)


def _resize(image: np.ndarray, size: Sequence[int], mode: str) -> torch.Tensor:
    """``C x spatial`` array -> ``1 x C x size`` tensor (``area`` = adaptive average pooling)."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    if len(size) != t.ndim - 2:
        raise DietError(f"image has {t.ndim - 2} spatial axes, the encoder expects {len(size)} ({list(size)})")
    if mode != "area":
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
        return F.interpolate(t, size=tuple(size), mode=mode, align_corners=False)
    return F.interpolate(t, size=tuple(size), mode="area")


class IntensityEncoder:
    """Training-free baseline: each channel area-resampled to ``grid`` per spatial axis, the whole vector
    z-scored per image, so cosine similarity is the Pearson correlation of the down-sampled images."""

    def __init__(self, grid: int = 16) -> None:
        if grid < 1:
            raise DietError(f"grid must be >= 1, got {grid}")
        self.grid = grid
        self.signature = {"source": "intensities", "grid": grid}

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = [_resize(im, [self.grid] * (im.ndim - 1), "area").reshape(1, -1) for im in images]
        return _zscore(torch.cat(out)).numpy()


def _device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _pool(features: torch.Tensor) -> torch.Tensor:
    """B x C x spatial -> B x C (global average pooling); B x d unchanged; B x tokens x d -> mean token."""
    return features.flatten(2).mean(dim=2) if features.ndim > 2 else features


class TorchEncoder:
    """A user-supplied torch module (or TorchScript / whole-module ``torch.save`` file) mapping
    ``B x channels x size`` float32 images, z-scored per image, to ``B x d`` (``B x C x spatial`` outputs
    are global-average-pooled). Grey images are repeated to ``channels``. Put any model-specific
    normalisation (ImageNet mean / std of a ViT) inside the module. Files other than TorchScript are
    unpickled: load only files you trust."""

    def __init__(self, module: torch.nn.Module | str | Path, size: Sequence[int] = (224, 224), channels: int = 3,
                 device: str | None = None) -> None:
        self.device = _device(device)
        name = "module"
        if isinstance(module, (str, Path)):
            path, name = Path(module), str(module)
            if not path.is_file():
                raise DietError(f"{path}: no such model file")
            try:
                module = torch.jit.load(str(path), map_location=self.device)
            except RuntimeError:
                try:
                    module = torch.load(path, map_location=self.device, weights_only=False)
                except Exception as exc:  # pickle / zip errors of a foreign file
                    raise DietError(f"{path}: neither TorchScript nor a saved torch module ({exc})") from None
            if not isinstance(module, torch.nn.Module):
                raise DietError(f"{path}: holds a {type(module).__name__}, not a torch module")
        self.module = module.to(self.device).eval()
        self.size, self.channels = [int(s) for s in size], channels
        self.signature = {"source": "torch", "model": name, "size": self.size, "channels": channels}

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = torch.cat([_resize(im, self.size, "linear") for im in images])
        if x.shape[1] != self.channels:
            if x.shape[1] != 1:
                raise DietError(f"images have {x.shape[1]} channels, the module expects {self.channels}")
            x = x.expand(-1, self.channels, *x.shape[2:])
        return _pool(self.module(_zscore(x).to(self.device)).float()).cpu().numpy()


class NnunetEncoder:
    """Deepest encoder stage of a trained nnU-Net model, global-average-pooled (e.g. 320-d for 3D
    full-res default plans). The model folder is loaded with nnU-Net's own
    ``nnUNetPredictor.initialize_from_trained_model_folder`` (any trainer, e.g. nnUNetTrainerDAD); each
    preprocessed case is centre-cropped / zero-padded to the configuration's patch size (one patch, no
    sliding window: a case-level descriptor, not a segmentation). nnunet-diet's trainer folder is added to
    ``nnUNet_extTrainer`` so that models of ``nnUNetTrainerDAD`` and its variants load. 2D cases may
    keep nnU-Net's singleton slice axis (``C x 1 x H x W``, as preprocessed 2D data is stored)."""

    def __init__(self, model_folder: str | Path, fold: int | str = 0, checkpoint: str = "checkpoint_final.pth",
                 device: str | None = None) -> None:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        folder = Path(model_folder)
        ckpt = folder / f"fold_{fold}" / checkpoint
        if not ckpt.is_file():
            raise DietError(f"{ckpt}: no such checkpoint (pass the trainer__plans__configuration folder, "
                            "--fold and --checkpoint, e.g. checkpoint_latest.pth for an unfinished run)")
        self.device = _device(device)
        ext = str(Path(__file__).resolve().parent.parent / "nnunet" / "ext")
        paths = os.environ.get("nnUNet_extTrainer", "")
        if ext not in paths.split(os.pathsep):
            os.environ["nnUNet_extTrainer"] = os.pathsep.join(p for p in (paths, ext) if p)
        predictor = nnUNetPredictor(device=self.device, verbose=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(folder), (fold,), checkpoint)
        network = getattr(predictor.network, "_orig_mod", predictor.network)
        if not hasattr(network, "encoder"):
            raise DietError(f"{folder}: network {type(network).__name__} has no 'encoder' (needs a "
                            "dynamic_network_architectures U-Net)")
        self.encoder = network.encoder.to(self.device).eval()
        self.predictor = predictor
        self.patch = [int(p) for p in predictor.configuration_manager.patch_size]
        self.signature = {"source": "nnunet", "model": str(folder.resolve()), "fold": str(fold),
                          "checkpoint": checkpoint, "patch": self.patch}

    def preprocess(self, data: np.ndarray, properties: dict, where: str) -> np.ndarray:
        """nnU-Net's inference preprocessing of one raw case ``C x spatial`` (2D: ``C x 1 x H x W``) with the
        model's plans, as ``nnUNetv2_predict`` does: crop to non-zero, normalise, resample to the
        configuration's spacing."""
        p = self.predictor
        channels = len(p.dataset_json.get("channel_names", p.dataset_json.get("modality", {})))
        if data.shape[0] != channels:
            raise DietError(f"{where}: {data.shape[0]} channel(s), the nnU-Net model takes {channels}")
        pre = p.configuration_manager.preprocessor_class(verbose=False)
        return pre.run_case_npy(data, None, dict(properties), p.plans_manager, p.configuration_manager,
                                p.dataset_json)[0]

    def _centre(self, image: np.ndarray) -> torch.Tensor:
        if len(self.patch) == 2 and image.ndim == 4 and image.shape[1] == 1:
            image = image[:, 0]  # nnU-Net keeps 2D cases as C x 1 x H x W
        if image.ndim - 1 != len(self.patch):
            raise DietError(f"case has {image.ndim - 1} spatial axes, the model's patch is {self.patch}")
        t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        crop = tuple(slice(max(0, (s - p) // 2), max(0, (s - p) // 2) + p) for s, p in zip(t.shape[1:], self.patch))
        t = t[(slice(None), *crop)]
        pad = []
        for s, p in reversed(list(zip(t.shape[1:], self.patch))):
            pad += [(p - s) // 2, p - s - (p - s) // 2]
        return F.pad(t, pad)[None]

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = torch.cat([self._centre(im) for im in images]).to(self.device)
        return _pool(self.encoder(x)[-1].float()).cpu().numpy()


class NnunetRawCases:
    """A raw source (an nnU-Net raw dataset, an image folder or an ``.npz``) seen through nnU-Net's own
    inference preprocessing with the plans of an :class:`NnunetEncoder`'s model, so ``--source nnunet``
    takes raw images as the model was trained on them. Spacing: the reader's for a raw dataset; 2D images
    otherwise get nnU-Net's natural-image spacing (999, 1, 1), 3D ones 1 mm."""

    def __init__(self, source, encoder: NnunetEncoder) -> None:
        self.source, self.encoder, self.ids = source, encoder, source.ids

    def load(self, row: int) -> np.ndarray:
        read = getattr(self.source, "read", None)
        if read is not None:  # nnU-Net raw dataset: data and spacing from nnU-Net's reader
            data, properties = read(row)
        else:
            image = self.source.load(row)
            data, properties = (image[:, None], {"spacing": (999.0, 1.0, 1.0)}) if image.ndim == 3 else \
                (image, {"spacing": (1.0,) * (image.ndim - 1)})
        return self.encoder.preprocess(data, properties, self.source.where(row))

    def where(self, row: int) -> str:
        return self.source.where(row)


class MedmnistEncoder:
    """Penultimate features (global-average-pooled last stage, before the linear layer) of a ResNet
    trained by ``nnunet-diet medmnist train``: ``8 x width`` dimensions (512 for ResNet-18). Inputs are
    normalised as the harness trains, ``x / 127.5 - 1``. ``weights``: ``final`` (the last epoch) or
    ``best`` (best validation epoch)."""

    def __init__(self, run: str | Path, weights: str = "final", device: str | None = None) -> None:
        from ..medmnist.coreset import run_config
        from ..medmnist.data import read_npz
        from ..medmnist.model import build_resnet
        from ..medmnist.trainer import CHECKPOINT

        if weights not in ("final", "best"):
            raise DietError(f"weights must be 'final' or 'best', got {weights!r}")
        info = run_config(run)
        ckpt_path = Path(run) / CHECKPOINT
        if not ckpt_path.is_file():
            raise DietError(f"{ckpt_path}: missing; the run has not saved a model yet")
        data = read_npz(info["data"])
        cfg = info["train"]
        model = build_resnet(data.n_channels, data.n_classes, cfg["width"], cfg["layers"])
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"] if weights == "final" else ckpt["best_state"])
        model.fc = torch.nn.Identity()
        self.device = _device(device)
        self.model = model.to(self.device).eval()
        self.signature = {"source": "medmnist", "run": str(Path(run).resolve()), "weights": weights,
                          "epochs_trained": len(ckpt["history"]), "config": json.dumps(cfg, sort_keys=True)}

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(np.stack(images)).to(self.device) / 127.5 - 1.0
        return self.model(x).float().cpu().numpy()
