"""Embedding extraction on real images: the training-free encoder on real hippocampus cases (nnU-Net
raw folder) and PneumoniaMNIST, resuming an interrupted extraction, torchrun sharding over 2 CPU
processes, a user TorchScript module, and the EVA harness's classifier features."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nnunet_diet.cli.main import main
from nnunet_diet.core.errors import DietError
from nnunet_diet.embed.encoders import IntensityEncoder, MedmnistEncoder
from nnunet_diet.embed.pretrain import SelfSupervisedEncoder
from nnunet_diet.embed.sources import NpzImages, RawImages
from nnunet_diet.embed.sslconfig import SSLConfig
from nnunet_diet.embed.store import load_embeddings, write_shard
from nnunet_diet.medmnist import TrainConfig, read_npz, train
from conftest import error_line, random_png

EXAMPLES = Path(__file__).resolve().parent.parent / "nnunet_diet" / "examples"
SUBSET = EXAMPLES / "pneumoniamnist_subset.npz"
EPOCHS = "20"  # contrastive test training (seconds on one core for 120 28 x 28 images)
HIPPO = EXAMPLES / "hippocampus40"


def test_intensities_of_real_3d_cases_from_an_nnunet_raw_folder(tmp_path):
    assert main(["embed", "--raw", str(HIPPO), "--grid", "8", "-o", str(tmp_path / "emb"), "--no-progress",
                 "--dtype", "float32"]) == 0
    emb = load_embeddings(tmp_path / "emb")
    cases = sorted(p.name.removesuffix("_0000.nii.gz") for p in (HIPPO / "imagesTr").iterdir())
    assert list(emb.ids) == cases and emb.vectors.shape == (40, 8 ** 3)
    np.testing.assert_allclose(emb.vectors.mean(axis=1), 0, atol=1e-5)  # z-scored per case
    np.testing.assert_allclose(emb.vectors.std(axis=1), 1, atol=1e-3)
    assert emb.meta["source"] == "intensities" and emb.meta["grid"] == 8 and emb.meta["d"] == 512
    first = RawImages(HIPPO).load(0)
    np.testing.assert_allclose(emb.vectors[0], IntensityEncoder(8)([first])[0], atol=1e-5)


def test_interrupted_extraction_resumes_where_it_stopped(tmp_path):
    source, encoder = NpzImages(SUBSET), IntensityEncoder(8)
    calls = []

    def encode(rows):
        calls.append(rows.copy())
        if len(calls) == 3:
            raise RuntimeError("node lost")
        return encoder([source.load(int(r)) for r in rows])

    with pytest.raises(RuntimeError, match="node lost"):
        write_shard(tmp_path, 300, encode, encoder.signature, batch_size=64, progress=False)
    state = json.loads((tmp_path / "shards" / "rank0-of-1.json").read_text())
    assert state["done"] == 128
    calls.clear()
    write_shard(tmp_path, 300, lambda rows: encoder([source.load(int(r)) for r in rows]) if calls.append(rows)
                is None else None, encoder.signature, batch_size=64, progress=False)
    assert calls[0][0] == 128 and sum(map(len, calls)) == 300 - 128
    whole = np.load(tmp_path / "shards" / "rank0-of-1.npy")
    expect = encoder([source.load(i) for i in range(300)]).astype(np.float16)
    np.testing.assert_array_equal(whole, expect)
    with pytest.raises(DietError, match="other settings"):
        write_shard(tmp_path, 300, encode, {"source": "intensities", "grid": 4}, progress=False)


def test_torchrun_shards_over_two_processes_and_merges_in_id_order(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "nnunet_diet.cli.main", "embed", "--npz", str(SUBSET), "-o", str(tmp_path / "two"),
           "--batch-size", "50", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert main(["embed", "--npz", str(SUBSET), "-o", str(tmp_path / "one"), "--no-progress"]) == 0
    two, one = load_embeddings(tmp_path / "two"), load_embeddings(tmp_path / "one")
    assert two.meta["world_size"] == 2 and not (tmp_path / "two" / "shards").exists()
    assert list(two.ids) == list(one.ids) == [str(i) for i in range(300)]
    np.testing.assert_allclose(np.asarray(two.vectors, float), np.asarray(one.vectors, float), atol=2e-3)


class _Pool(torch.nn.Module):
    """A user's image -> vector module: one convolution, global pooling."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))  # B x 6 x H x W, pooled by the encoder


def test_user_torchscript_module(tmp_path):
    torch.jit.save(torch.jit.script(_Pool()), tmp_path / "user.pt")
    assert main(["embed", "--npz", str(SUBSET), "--source", "torch", "--model", str(tmp_path / "user.pt"),
                 "--size", "28", "28", "--channels", "1", "-o", str(tmp_path / "emb"), "--no-progress"]) == 0
    emb = load_embeddings(tmp_path / "emb")
    assert emb.vectors.shape == (300, 6) and np.isfinite(emb.vectors).all()
    assert main(["embed", "--npz", str(SUBSET), "--source", "torch", "-o", str(tmp_path / "x")]) == 2
    (tmp_path / "junk.pt").write_text("not a model")
    assert main(["embed", "--npz", str(SUBSET), "--source", "torch", "--model", str(tmp_path / "junk.pt"),
                 "-o", str(tmp_path / "x")]) == 2


def test_penultimate_features_of_an_eva_harness_classifier(tmp_path):
    data = read_npz(SUBSET)
    train(data, tmp_path / "run", TrainConfig(epochs=1, batch_size=100, width=4, layers=(1, 1, 1, 1)),
          progress=False)
    assert main(["embed", "--npz", str(SUBSET), "--source", "medmnist", "--model", str(tmp_path / "run"),
                 "-o", str(tmp_path / "emb"), "--no-progress", "--dtype", "float32"]) == 0
    emb = load_embeddings(tmp_path / "emb")
    assert emb.vectors.shape == (300, 32) and emb.meta["source"] == "medmnist"  # 8 x width
    again = MedmnistEncoder(tmp_path / "run")([NpzImages(SUBSET).load(i) for i in range(5)])
    np.testing.assert_allclose(emb.vectors[:5], again, atol=1e-5)
    assert main(["meddel", str(tmp_path / "emb"), "--fraction", "0.5", "-o", str(tmp_path / "keep.csv")]) == 0


def test_missing_inputs_are_clear_errors(tmp_path, capsys):
    assert main(["embed", "--npz", str(tmp_path / "none.npz"), "-o", str(tmp_path / "e")]) == 2
    assert "none.npz: no such .npz file" in capsys.readouterr().err
    assert main(["embed", "--raw", str(tmp_path), "-o", str(tmp_path / "e")]) == 2
    assert "dataset.json: missing" in capsys.readouterr().err
    assert main(["meddel", str(tmp_path / "e"), "--fraction", "0.5"]) == 2
    assert "no such embedding folder" in capsys.readouterr().err


# --- self-supervised encoders trained on the images themselves (embed --source contrastive | mae) ---

def _recompressed(image: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG re-encoding of a grey uint8 image (a planted near-duplicate)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def test_contrastive_encoder_finds_planted_near_duplicates_and_is_reused(tmp_path, capsys):
    """40 real chest X-rays + a near-duplicate of each (20 JPEG re-encodings at quality 20-40, 20 with
    contrast x0.8-1.2 and brightness +-20) + 40 unrelated ones. MedDEL at the fraction a perfect dedup keeps
    (2/3) on the trained encoder removes exactly one member of >= 75 % of the pairs; a random removal of
    the same size does so for 2 r (1 - r) N / (N - 1) = 45 % (r = 1/3). Zoomed crops are not tested: the
    encoder does not find them (docs/benchmarks.md, planted near-duplicates)."""
    images = np.load(SUBSET)["train_images"]
    rng = np.random.default_rng(0)
    copies = [_recompressed(im, int(rng.integers(20, 41))) for im in images[:20]]
    copies += [np.clip(rng.uniform(0.8, 1.2) * im.astype(float) + rng.uniform(-20, 20), 0, 255).astype(np.uint8)
               for im in images[20:40]]
    np.savez(tmp_path / "planted.npz", train_images=np.concatenate([images[:40], np.stack(copies), images[40:80]]))
    cmd = ["embed", "--npz", str(tmp_path / "planted.npz"), "--source", "contrastive", "--epochs", EPOCHS,
           "--train-batch-size", "32", "--dtype", "float32"]
    assert main([*cmd, "-o", str(tmp_path / "emb")]) == 0
    assert f"contrastive epoch {EPOCHS}/{EPOCHS}: loss" in capsys.readouterr().err  # a line per epoch
    assert (tmp_path / "emb" / "encoder.pt").is_file()
    assert main(["meddel", str(tmp_path / "emb"), "--fraction", str(2 / 3), "-o", str(tmp_path / "keep.csv")]) == 0
    keep = pd.read_csv(tmp_path / "keep.csv").set_index("id")["keep"]
    recall = np.mean([keep[i] + keep[40 + i] == 1 for i in range(40)])
    assert recall >= 0.75, recall
    capsys.readouterr()
    # a new batch embedded with the saved encoder: no training, the same vectors for the same images
    assert main([*cmd[:5], "--model", str(tmp_path / "emb" / "encoder.pt"), "-o", str(tmp_path / "again"),
                 "--dtype", "float32"]) == 0
    assert "epoch" not in capsys.readouterr().err
    np.testing.assert_allclose(load_embeddings(tmp_path / "again").vectors, load_embeddings(tmp_path / "emb").vectors,
                               atol=1e-5)


def test_mae_training_on_3d_cases_is_deterministic_and_resumes_after_an_interruption(tmp_path, monkeypatch):
    """MONAI's MaskedAutoEncoderViT on the 3D hippocampus cases (nnU-Net raw folder): two runs with one
    seed give the same weights; a run killed after its first epoch resumes and ends with those weights."""
    from nnunet_diet.embed import pretrain as pt

    source, config = RawImages(HIPPO), SSLConfig(objective="mae", size=16, epochs=2, batch_size=16)
    weights = [torch.load(pt.pretrain(source, tmp_path / f"run{i}", config, progress=False),
                          weights_only=True)["model"] for i in range(2)]
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
    save = pt._save

    def save_then_die(path, ckpt):
        save(path, ckpt)
        raise KeyboardInterrupt

    monkeypatch.setattr(pt, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pt.pretrain(source, tmp_path / "cut", config, progress=False)
    monkeypatch.setattr(pt, "_save", save)
    assert not torch.load(tmp_path / "cut" / "encoder.pt", weights_only=True)["finished"]
    resumed = torch.load(pt.pretrain(source, tmp_path / "cut", config, progress=False), weights_only=True)
    assert resumed["finished"] and len(resumed["losses"]) == 2
    for key, value in weights[0].items():
        assert torch.equal(value, resumed["model"][key]), key
    emb = SelfSupervisedEncoder(tmp_path / "cut" / "encoder.pt")([source.load(i) for i in range(3)])
    assert emb.shape == (3, 192) and np.isfinite(emb).all()  # mean of the patch tokens, hidden size 192
    with pytest.raises(DietError, match="other settings"):
        pt.pretrain(source, tmp_path / "cut", SSLConfig(objective="mae", size=16, epochs=3), progress=False)


def test_bad_inputs_of_the_self_supervised_encoders(tmp_path, capsys):
    tiny = ["--epochs", "1", "--train-batch-size", "4", "--no-progress"]
    # images of mixed channel counts
    for i in range(3):
        random_png(tmp_path / "mixed" / f"{i}.png", (32, 32), i)
    random_png(tmp_path / "mixed" / "3.png", (32, 32, 3), 3)
    assert main(["embed", "--images", str(tmp_path / "mixed"), "--source", "contrastive", *tiny,
                 "-o", str(tmp_path / "e1")]) == 2
    assert f"{tmp_path / 'mixed' / '3.png'}: 3 channel(s), but 0.png has 1" in error_line(capsys)
    # an image smaller than the patch size, met in training and when embedding with a saved encoder
    for i in range(6):
        random_png(tmp_path / "grey" / f"{i}.png", (32, 32), i)
    random_png(tmp_path / "small" / "0.png", (32, 32), 0)
    random_png(tmp_path / "small" / "1.png", (4, 4), 1)
    assert main(["embed", "--images", str(tmp_path / "small"), "--source", "mae", *tiny,
                 "-o", str(tmp_path / "e2")]) == 2
    assert f"{tmp_path / 'small' / '1.png'}: image of shape [4, 4] is smaller than the patch size 8" in \
        error_line(capsys)
    assert main(["embed", "--images", str(tmp_path / "grey"), "--source", "mae", *tiny,
                 "-o", str(tmp_path / "grey_emb")]) == 0
    encoder = tmp_path / "grey_emb" / "encoder.pt"
    assert main(["embed", "--images", str(tmp_path / "small"), "--source", "mae", "--model", str(encoder),
                 "--no-progress", "-o", str(tmp_path / "e3")]) == 2
    line = error_line(capsys)
    assert f"{tmp_path / 'small' / '1.png'}: image of shape [4, 4] is smaller" in line and str(encoder) in line
    # a saved encoder from another dataset shape (grey 2D encoder, colour images / 3D cases)
    random_png(tmp_path / "colour" / "0.png", (32, 32, 3), 0)
    assert main(["embed", "--images", str(tmp_path / "colour"), "--source", "mae", "--model", str(encoder),
                 "--no-progress", "-o", str(tmp_path / "e4")]) == 2
    line = error_line(capsys)
    assert "3-channel 2D image" in line and f"takes 1-channel 2D images (encoder {encoder})" in line
    assert main(["embed", "--raw", str(HIPPO), "--source", "mae", "--model", str(encoder), "--no-progress",
                 "-o", str(tmp_path / "e5")]) == 2
    assert "1-channel 3D image" in error_line(capsys)
    assert main(["embed", "--images", str(tmp_path / "grey"), "--source", "contrastive", "--model", str(encoder),
                 "--no-progress", "-o", str(tmp_path / "e6")]) == 2
    assert f"{encoder}: a mae encoder, not contrastive" in error_line(capsys)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    assert main(["embed", "--images", str(tmp_path / "grey"), "--source", "mae", "--model", str(tmp_path / "junk.pt"),
                 "--no-progress", "-o", str(tmp_path / "e7")]) == 2
    assert "junk.pt: not a readable encoder checkpoint" in error_line(capsys)
