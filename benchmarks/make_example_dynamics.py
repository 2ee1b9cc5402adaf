"""Record the shipped example training dynamics from two tiny real training runs (CPU).

1. Segmentation (input to DAD, EL2N / EL2Nx): a small MONAI 3D U-Net trained on the first 40 MSD
   Task04 Hippocampus cases (sorted by name). Per case and epoch, from the training forward pass
   (train mode, the outputs used for the loss): ``dice`` (foreground Dice of the argmax prediction,
   TP/FP/FN pooled over classes 1 and 2), ``el2n`` (mean over voxels of ||softmax - onehot||_2) and
   ``el2nx`` (the same over foreground voxels only). Saved as ``hippocampus_dice.npz``.
2. Classification (input to EVA, forgetting, AUM / CCS): a small MONAI ResNet trained on a fixed
   random subset of 800 PneumoniaMNIST training images. Per sample and epoch, from the training
   forward pass (before the optimiser step): ``error_norm``, ``p_true``, ``correct``, ``margin``;
   groups are the class labels. Saved as ``pneumoniamnist_dynamics.npz``.

Both files are :class:`nnunet_diet.core.store.DynamicsStore` files with the run settings, command,
machine, date and wall time in their metadata. After saving, each store is loaded back and checked
(NaN counts, mean curves every 10 epochs).

Run from the repository root (about 6 minutes on 2 CPU cores):

    .venv/bin/python benchmarks/make_example_dynamics.py
    .venv/bin/python benchmarks/make_example_dynamics.py --epochs-seg 60 --epochs-cls 40 --out /tmp/ex
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import monai
import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.networks.nets import ResNet, UNet

from nnunet_diet.core.store import DynamicsStore

REPO = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data")
SEG_FILE = "hippocampus_dice.npz"
CLS_FILE = "pneumoniamnist_dynamics.npz"
SEG_SHAPE = (40, 56, 40)
SEG_CASES = 40
SEG_CLASSES = 3
CLS_SAMPLES = 800
SEED = 0
THREADS = 2


# ---------------------------------------------------------------------------- shared helpers
def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and numpy; return the numpy generator used for shuffling and augmentation."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    return np.random.default_rng(seed)


def run_metadata(args: argparse.Namespace, wall_s: float, **settings: object) -> dict:
    """Settings of one run plus how, where and when it was made."""
    return {
        **settings,
        "seed": SEED,
        "command": "python " + shlex.join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores ({platform.processor() or platform.platform()}), "
                   f"torch {torch.__version__} with {torch.get_num_threads()} threads, no GPU",
        "software": {"python": platform.python_version(), "torch": torch.__version__,
                     "monai": monai.__version__, "numpy": np.__version__},
        "wall_time_s": round(wall_s, 1),
    }


def batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One shuffled epoch of indices in batches (the last batch may be smaller)."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


# ---------------------------------------------------------------------------- segmentation
def centre_fit(volume: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Centre-crop or zero-pad ``volume`` to ``shape``."""
    out = np.zeros(shape, dtype=volume.dtype)
    src, dst = [], []
    for have, want in zip(volume.shape, shape):
        if have >= want:
            start = (have - want) // 2
            src.append(slice(start, start + want))
            dst.append(slice(0, want))
        else:
            start = (want - have) // 2
            src.append(slice(0, have))
            dst.append(slice(start, start + have))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def load_hippocampus(root: Path, n_cases: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """First ``n_cases`` cases by name: z-scored images (N,1,*SEG_SHAPE) and labels (N,1,*SEG_SHAPE)."""
    files = sorted((root / "images").glob("hippocampus_*.nii.gz"))[:n_cases]
    ids, images, labels = [], [], []
    for f in files:
        image = np.asarray(nib.load(f).dataobj, dtype=np.float32)
        label = np.rint(np.asarray(nib.load(root / "labels" / f.name).dataobj)).astype(np.int64)
        image = (image - image.mean()) / max(float(image.std()), 1e-8)
        ids.append(f.name.removesuffix(".nii.gz"))
        images.append(centre_fit(image, SEG_SHAPE))
        labels.append(centre_fit(label, SEG_SHAPE))
    return ids, torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(labels))[:, None]


def random_flips(
    images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample of a batch along each spatial axis with probability 0.5 (image and label alike)."""
    images, labels = images.clone(), labels.clone()
    for b in range(images.shape[0]):
        axes = [1 + a for a in range(3) if rng.random() < 0.5]
        if axes:
            images[b] = torch.flip(images[b], axes)
            labels[b] = torch.flip(labels[b], axes)
    return images, labels


@torch.no_grad()
def segmentation_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-case ``dice``, ``el2n`` and ``el2nx`` of a batch of logits (B,C,...) against labels (B,1,...)."""
    logits, target = logits.detach(), labels[:, 0]
    pred = logits.argmax(1)
    dims = tuple(range(1, target.ndim))
    tp = fp = fn = 0
    for c in range(1, SEG_CLASSES):
        p, t = pred == c, target == c
        tp = tp + (p & t).sum(dims)
        fp = fp + (p & ~t).sum(dims)
        fn = fn + (~p & t).sum(dims)
    denom = (2 * tp + fp + fn).double()
    dice = torch.where(tp + fp + fn > 0, 2 * tp / denom.clamp_min(1), torch.nan)
    onehot = F.one_hot(target, SEG_CLASSES).movedim(-1, 1).to(logits.dtype)
    err = torch.linalg.vector_norm(torch.softmax(logits, 1) - onehot, dim=1)
    fg = (target > 0).to(err.dtype)
    el2nx = (err * fg).sum(dims) / fg.sum(dims)  # NaN for a case without foreground
    return {"dice": dice.numpy(), "el2n": err.mean(dims).numpy(), "el2nx": el2nx.numpy()}


def train_segmentation(args: argparse.Namespace) -> DynamicsStore:
    """Train the 3D U-Net on Hippocampus and record per-case dynamics every epoch."""
    rng = seed_everything(SEED)
    ids, images, labels = load_hippocampus(DATA / "hippocampus", SEG_CASES)
    model = UNet(spatial_dims=3, in_channels=1, out_channels=SEG_CLASSES, channels=(8, 16, 32, 64),
                 strides=(2, 2, 2), num_res_units=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    store = DynamicsStore(ids, ["dice", "el2n", "el2nx"], capacity=args.epochs_seg)
    model.train()
    start = time.perf_counter()
    for epoch in range(args.epochs_seg):
        losses = []
        for idx in batches(len(ids), 4, rng):
            x, y = random_flips(images[idx], labels[idx], rng)
            logits = model(x)
            loss = loss_fn(logits, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            store.record(epoch, [ids[i] for i in idx], segmentation_metrics(logits, y))
            losses.append(loss.item())
        log_epoch("seg", epoch, start, loss=np.mean(losses), dice=np.nanmean(store["dice"][:, epoch]))
    wall = time.perf_counter() - start
    store.metadata = run_metadata(
        args, wall,
        dataset="MSD Task04 Hippocampus (cropped 3D MR), /work/shared/data/hippocampus",
        cases=ids,
        preprocessing=f"z-score per image, centre crop/zero-pad to {list(SEG_SHAPE)}; "
                      "labels rounded to int {0,1,2}",
        augmentation="random flip along each spatial axis, p=0.5",
        network="monai.networks.nets.UNet(spatial_dims=3, in_channels=1, out_channels=3, "
                "channels=(8,16,32,64), strides=(2,2,2), num_res_units=1)",
        loss="monai.losses.DiceCELoss(to_onehot_y=True, softmax=True)",
        optimiser="Adam lr 3e-3, batch 4, shuffled, every case once per epoch",
        epochs=args.epochs_seg,
        recorded="training forward pass (train mode, the outputs used for the loss); dice = 2TP/(2TP+FP+FN) "
                 "of the argmax pooled over classes 1 and 2 (NaN if TP+FP+FN = 0); el2n = mean over voxels "
                 "of ||softmax - onehot||_2; el2nx = the same over foreground voxels",
    )
    return store


# ---------------------------------------------------------------------------- classification
def load_pneumoniamnist(path: Path, n: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Fixed random subset (seed 0) of the train split: indices, images (n,1,28,28) in [-1,1], labels (n,)."""
    with np.load(path) as z:
        images, labels = z["train_images"], z["train_labels"].reshape(-1)
    idx = np.sort(np.random.default_rng(SEED).choice(len(images), n, replace=False))
    x = (torch.from_numpy(images[idx]).float()[:, None] / 255 - 0.5) / 0.5
    return idx.astype(np.int64), x, torch.from_numpy(labels[idx].astype(np.int64))


@torch.no_grad()
def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample ``error_norm``, ``p_true``, ``correct`` and ``margin`` of a batch of logits."""
    prob = torch.softmax(logits.detach(), 1)
    onehot = F.one_hot(labels, prob.shape[1]).to(prob.dtype)
    p_true = prob.gather(1, labels[:, None])[:, 0]
    p_other = prob.masked_fill(onehot.bool(), -1.0).amax(1)
    return {
        "error_norm": torch.linalg.vector_norm(prob - onehot, dim=1).numpy(),
        "p_true": p_true.numpy(),
        "correct": (prob.argmax(1) == labels).float().numpy(),
        "margin": (p_true - p_other).numpy(),
    }


def train_classification(args: argparse.Namespace) -> DynamicsStore:
    """Train the small ResNet on the PneumoniaMNIST subset and record per-sample dynamics every epoch."""
    rng = seed_everything(SEED)
    ids, images, labels = load_pneumoniamnist(DATA / "medmnist" / "pneumoniamnist.npz", CLS_SAMPLES)
    model = ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=[16, 32, 64, 128], spatial_dims=2,
                   n_input_channels=1, num_classes=2, conv1_t_size=3, conv1_t_stride=1, no_max_pool=True)
    batch_size = 64
    steps = args.epochs_cls * -(-len(ids) // batch_size)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    store = DynamicsStore(ids, ["error_norm", "p_true", "correct", "margin"], groups=[str(v) for v in labels.tolist()],
                          capacity=args.epochs_cls)
    model.train()
    start = time.perf_counter()
    for epoch in range(args.epochs_cls):
        losses = []
        for idx in batches(len(ids), batch_size, rng):
            logits = model(images[idx])
            loss = F.cross_entropy(logits, labels[idx])
            store.record(epoch, ids[idx], classification_metrics(logits, labels[idx]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(loss.item())
        log_epoch("cls", epoch, start, loss=np.mean(losses), acc=np.mean(store["correct"][:, epoch]))
    wall = time.perf_counter() - start
    store.metadata = run_metadata(
        args, wall,
        dataset="MedMNIST PneumoniaMNIST (28x28 chest X-ray, 0 normal / 1 pneumonia), "
                "/work/shared/data/medmnist/pneumoniamnist.npz, train split",
        samples=f"{CLS_SAMPLES} of 4708 train images, numpy default_rng({SEED}).choice without replacement; "
                "ids are indices into the official train split; groups are the class labels",
        preprocessing="x / 255, then (x - 0.5) / 0.5 -> [-1, 1]; no augmentation",
        network="monai.networks.nets.ResNet(block='basic', layers=[1,1,1,1], block_inplanes=[16,32,64,128], "
                "spatial_dims=2, n_input_channels=1, num_classes=2, conv1_t_size=3, conv1_t_stride=1, "
                "no_max_pool=True)",
        loss="cross-entropy",
        optimiser=f"SGD lr 0.1 momentum 0.9 nesterov weight decay 5e-4, cosine schedule per iteration "
                  f"({steps} steps), batch {batch_size}, shuffled, last batch kept",
        epochs=args.epochs_cls,
        recorded="training forward pass (train mode, before the optimiser step): error_norm = "
                 "||softmax - onehot||_2, p_true, correct (argmax == label), margin = p_true - max other prob",
    )
    return store


# ---------------------------------------------------------------------------- reporting
def log_epoch(tag: str, epoch: int, start: float, **values: float) -> None:
    """One progress line per epoch."""
    parts = " ".join(f"{k} {v:.4f}" for k, v in values.items())
    print(f"[{tag}] epoch {epoch:3d} {parts} ({time.perf_counter() - start:.0f} s)", flush=True)


def check_store(path: Path, curve: str, falling: str) -> None:
    """Load a saved store back and print its NaN counts and mean curves every 10 epochs."""
    store = DynamicsStore.load(path)
    print(f"\n{path.name}: {store}, {path.stat().st_size} bytes, wall {store.metadata['wall_time_s']} s")
    for name in store.names:
        print(f"  {name}: {int(np.isnan(store[name]).sum())} NaN of {store[name].size}")
    epochs = sorted({*range(0, store.n_epochs, 10), store.n_epochs - 1})
    for name in (curve, falling):
        means = np.nanmean(store[name], axis=0)
        print(f"  mean {name}: " + ", ".join(f"e{e} {means[e]:.3f}" for e in epochs))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-seg", type=int, default=100, help="Hippocampus U-Net epochs (default 100)")
    parser.add_argument("--epochs-cls", type=int, default=40, help="PneumoniaMNIST ResNet epochs (default 40)")
    parser.add_argument("--out", type=Path, default=REPO / "nnunet_diet" / "examples",
                        help="output folder (default nnunet_diet/examples)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(THREADS)
    seg_path = train_segmentation(args).save(args.out / SEG_FILE)
    cls_path = train_classification(args).save(args.out / CLS_FILE)
    check_store(seg_path, "dice", "el2n")
    check_store(cls_path, "p_true", "error_norm")


if __name__ == "__main__":
    main()
