"""Train a self-supervised encoder (:mod:`.selfsup`) on a source's images and embed with it.

The checkpoint (``encoder.pt`` beside the embeddings) holds the resolved architecture, the training
settings, the weights, the optimiser state and one loss per epoch; it is rewritten atomically after
every epoch, so an interrupted training resumes at the next epoch. Epoch ``e`` draws its shuffling,
augmentations and MAE masks from seed ``(seed, e)``, so a resumed run equals an uninterrupted one and
two runs with the same seed give the same weights (on the same device and thread count). Under
torchrun, rank 0 trains and the other ranks wait for the finished checkpoint.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_open, wait_until
from ..core.errors import DietError
from .encoders import _device
from .run import rank_and_world
from .selfsup import BadImage, augment, build_model, features, mae_loss, nt_xent, prepare
from .sslconfig import SSLConfig, architecture

__all__ = ["CHECKPOINT", "pretrain", "SelfSupervisedEncoder"]

CHECKPOINT = "encoder.pt"
_FORMAT = "nnunet-diet-ssl-1"
_WARMUP = 0.05  # share of the steps with a linear learning-rate warm-up, then cosine decay to 0


def _load(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of a foreign file
        raise DietError(f"{path}: not a readable encoder checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
        raise DietError(f"{path}: not an encoder checkpoint written by 'nnunet-diet embed --source mae|contrastive'")
    return ckpt


def _save(path: Path, ckpt: dict) -> None:
    with atomic_open(path, "wb") as fh:
        torch.save(ckpt, fh)


def _training_images(source, arch: dict, rows: np.ndarray, progress: bool) -> torch.Tensor:
    """The training rows, prepared (resized, z-scored) and stacked as float16 (half the memory)."""
    out = torch.empty((len(rows), arch["in_channels"], *([arch["size"]] * arch["spatial_dims"])), dtype=torch.float16)
    for i, row in enumerate(rows):
        image = source.load(int(row))
        try:
            out[i] = prepare(image, arch)[0]
        except DietError as exc:
            raise DietError(f"{source.where(int(row))}: {exc}") from None
        if progress and (i + 1) % 1000 == 0:
            print(f"read {i + 1} / {len(rows)} training images", file=sys.stderr, flush=True)
    return out


def _lr(config: SSLConfig, step: int, total: int) -> float:
    warm = max(1, int(_WARMUP * total))
    if step < warm:
        return config.lr * (step + 1) / warm
    return 0.5 * config.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _first_image(source) -> np.ndarray:
    if not len(source.ids):
        raise DietError("the source has no images")
    return source.load(0)


def _wait_for(path: Path, settings: dict, poll: float = 2.0) -> dict:
    """Rank > 0: rank 0's finished encoder of these settings (its checkpoint is rewritten every epoch)."""
    def finished() -> dict | None:
        ckpt = _load(path) if path.is_file() else None
        return ckpt if ckpt is not None and ckpt["finished"] and ckpt["settings"] == settings else None
    return wait_until(finished, path, "rank 0's encoder", poll=poll)


def pretrain(source, folder: str | Path, config: SSLConfig, *, device: str | None = None, resume: bool = True,
             progress: bool = True) -> Path:
    """Train (or resume, or reuse) the encoder of ``config`` on ``source``; returns ``folder/encoder.pt``.

    A finished checkpoint with the same settings is reused as is; one with other settings is an error
    unless ``resume`` is False (then training starts over). One line per epoch on stderr when ``progress``.
    """
    path = Path(folder) / CHECKPOINT
    first = _first_image(source)
    arch = architecture(config, first.shape[0], first.shape[1:])
    try:
        prepare(first, arch)
    except DietError as exc:
        raise DietError(f"{source.where(0)}: {exc}") from None
    settings = {"arch": arch, "config": asdict(config)}
    rank, _ = rank_and_world()
    if rank != 0:
        _wait_for(path, settings)
        return path
    ckpt = _load(path) if resume and path.is_file() else None
    if ckpt is not None and ckpt["settings"] != settings:
        raise DietError(f"{path}: trained with other settings ({json.dumps(ckpt['settings']['config'])}); use another "
                        "output folder, --model to reuse it, or --no-resume to train over it")
    if ckpt is not None and ckpt["finished"]:
        if progress:
            print(f"reusing {path} ({ckpt['settings']['config']['epochs']} epochs on {ckpt['n_train']} images)",
                  file=sys.stderr)
        return path
    dev = _device(device)
    rows = np.arange(len(source.ids))
    if len(rows) > config.max_images:
        rows = np.sort(np.random.default_rng(config.seed).choice(len(rows), config.max_images, replace=False))
    data = _training_images(source, arch, rows, progress)
    torch.manual_seed(config.seed)
    model = build_model(arch).to(dev)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    losses: list[float] = []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimizer"])
        losses = list(ckpt["losses"])
    batch = min(config.batch_size, len(data))
    per_epoch = max(1, len(data) // batch)  # drop the last partial batch (batch norm, NT-Xent negatives)
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda")
    model.train()
    for epoch in range(len(losses), config.epochs):
        started, total = time.perf_counter(), 0.0
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        torch.manual_seed(config.seed * 100_003 + epoch)  # MONAI's MAE masks with the global generator
        order = torch.randperm(len(data), generator=gen)
        for step in range(per_epoch):
            for group in optimiser.param_groups:
                group["lr"] = _lr(config, epoch * per_epoch + step, config.epochs * per_epoch)
            x = data[order[step * batch : (step + 1) * batch]].float()
            with torch.autocast(dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
                if config.objective == "mae":
                    loss = mae_loss(model, x.to(dev), config.masking_ratio)
                else:
                    views = [augment(x, gen).to(dev) for _ in range(2)]
                    loss = nt_xent(model(views[0]), model(views[1]), config.temperature)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            total += float(loss.detach())
        losses.append(total / per_epoch)
        finished = len(losses) == config.epochs
        _save(path, {"format": _FORMAT, "settings": settings, "model": model.state_dict(),
                     "optimizer": optimiser.state_dict(), "losses": losses, "finished": finished,
                     "n_train": len(data)})
        if progress:
            print(f"{config.objective} epoch {epoch + 1}/{config.epochs}: loss {losses[-1]:.4f}, "
                  f"{time.perf_counter() - started:.1f} s ({len(data)} images)", file=sys.stderr, flush=True)
    return path


class SelfSupervisedEncoder:
    """Embeds with a finished checkpoint of :func:`pretrain` (``encoder.pt``): ``images -> N x d`` float32
    (d = hidden size for mae, last ResNet width for contrastive). ``check(image)`` refuses images of
    another channel count or dimensionality than the training data, and images smaller than the patch."""

    def __init__(self, checkpoint: str | Path, device: str | None = None, batch_size: int = 64) -> None:
        self.path = Path(checkpoint)
        if not self.path.is_file():
            raise DietError(f"{self.path}: no such encoder checkpoint")
        ckpt = _load(self.path)
        if not ckpt["finished"]:
            raise DietError(f"{self.path}: training unfinished ({len(ckpt['losses'])} of "
                            f"{ckpt['settings']['config']['epochs']} epochs); rerun the embed command to resume it")
        self.arch = ckpt["settings"]["arch"]
        self.device = _device(device)
        self.model = build_model(self.arch)
        self.model.load_state_dict(ckpt["model"])
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.signature = {"source": self.arch["objective"], "encoder": str(self.path.resolve()),
                          "settings": json.dumps(ckpt["settings"], sort_keys=True)}

    def check(self, image: np.ndarray, where: str) -> None:
        """Raise naming ``where`` and the checkpoint when ``image`` does not fit the encoder."""
        try:
            prepare(image, self.arch)
        except DietError as exc:
            raise DietError(f"{where}: {exc} (encoder {self.path})") from None

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = []
        for i, image in enumerate(images):
            try:
                x.append(prepare(image, self.arch))
            except DietError as exc:
                raise BadImage(i, f"{exc} (encoder {self.path})") from None
        x = torch.cat(x)
        out = []
        for start in range(0, len(x), self.batch_size):
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
                out.append(features(self.model, x[start : start + self.batch_size].to(self.device)).float().cpu())
        return torch.cat(out).numpy()
