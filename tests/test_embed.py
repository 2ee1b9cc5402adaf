"""Embedding extraction on real images: the training-free encoder on real hippocampus cases (nnU-Net
raw folder) and PneumoniaMNIST, resuming an interrupted extraction, torchrun sharding over 2 CPU
processes, a user TorchScript module, and the EVA harness's classifier features."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunet_diet.cli.main import main
from nnunet_diet.core.errors import DietError
from nnunet_diet.embed.encoders import IntensityEncoder, MedmnistEncoder
from nnunet_diet.embed.sources import NpzImages, RawImages
from nnunet_diet.embed.store import load_embeddings, write_shard
from nnunet_diet.medmnist import TrainConfig, read_npz, train

EXAMPLES = Path(__file__).resolve().parent.parent / "nnunet_diet" / "examples"
SUBSET = EXAMPLES / "pneumoniamnist_subset.npz"
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
