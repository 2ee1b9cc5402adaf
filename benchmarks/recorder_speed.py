"""CPU time of ``patch_sums`` (what recording adds to a training iteration), this version vs an earlier one.

The earlier implementation is read from git (``--rev``, default a891e41: one-hot argmax and target,
nnU-Net's ``get_tp_fp_fn_tn``, ``linalg.vector_norm``) and run in the same process on the same random
logits and labels, alternating the order; both must give the same sums.

Run:  .venv/bin/python benchmarks/recorder_speed.py [--rev a891e41]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
import types
from pathlib import Path

import numpy as np
import torch
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_diet.nnunet.recorder import patch_sums

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="a891e41")
    args = parser.parse_args()
    source = subprocess.run(["git", "show", f"{args.rev}:nnunet_diet/nnunet/recorder.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    old = types.ModuleType("recorder_old")
    exec(source.replace("from ..core.", "from nnunet_diet.core."), old.__dict__)
    labels = LabelManager({"background": 0, "a": 1, "b": 2}, None)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU time per call (median)")
    print(f"| output shape | {args.rev} | this version |")
    print("|---|---|---|")
    for shape, repeats in (((2, 3, 40, 56, 40), 10), ((2, 3, 128, 128, 128), 3)):
        out = torch.randn(*shape)
        target = torch.randint(0, 3, (shape[0], 1, *shape[2:]))
        a, b = old.patch_sums(out, target, labels), patch_sums(out, target, labels)
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5)
        times: dict[str, list[float]] = {"old": [], "new": []}
        for i in range(repeats):
            pair = [("old", old.patch_sums), ("new", patch_sums)]
            for name, fn in pair if i % 2 == 0 else pair[::-1]:
                t0 = time.process_time()
                fn(out, target, labels)
                times[name].append(time.process_time() - t0)
        print(f"| {' x '.join(map(str, shape))} | {statistics.median(times['old']) * 1e3:.0f} ms | "
              f"{statistics.median(times['new']) * 1e3:.0f} ms |")


if __name__ == "__main__":
    main()
