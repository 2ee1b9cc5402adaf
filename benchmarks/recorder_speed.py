"""CPU time of ``patch_sums`` (what recording adds to a training iteration), this version vs an earlier one.

The earlier implementation is read from git (``--rev``, default a891e41: one-hot argmax and target,
nnU-Net's ``get_tp_fp_fn_tn``, ``linalg.vector_norm``) and run in the same process on the same random
logits and labels (float, as nnU-Net's targets), alternating the order, with and without the error
norms; both must give the same sums (the table says whether bit for bit).

Run:  .venv/bin/python benchmarks/recorder_speed.py [--rev a891e41]
"""

from __future__ import annotations

import argparse
import inspect
import re
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
    source = re.sub(r"^from \.\.", "from nnunet_diet.", source, flags=re.M)
    exec(re.sub(r"^from \.", "from nnunet_diet.nnunet.", source, flags=re.M), old.__dict__)
    labels = LabelManager({"background": 0, "a": 1, "b": 2}, None)
    torch.manual_seed(0)
    variants = [("with error norms", {})]
    if "error_norms" in inspect.signature(old.patch_sums).parameters:
        variants.append(("Dice only", {"error_norms": False}))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU time per call (median)")
    print(f"| output shape | sums | {args.rev} | this version | values |")
    print("|---|---|---|---|---|")
    for shape, repeats in (((2, 3, 40, 56, 40), 40), ((2, 3, 128, 128, 128), 3)):
        out = torch.randn(*shape)
        target = torch.randint(0, 3, (shape[0], 1, *shape[2:])).float()  # nnU-Net's targets are float
        for title, options in variants:
            a, b = old.patch_sums(out, target, labels, **options), patch_sums(out, target, labels, **options)
            assert set(a) == set(b)
            for key in a:
                np.testing.assert_allclose(a[key], b[key], rtol=1e-5)
            same = "identical" if all(torch.equal(a[k], b[k]) for k in a) else "equal to rtol 1e-5"
            times: dict[str, list[float]] = {"old": [], "new": []}
            for i in range(repeats):
                pair = [("old", old.patch_sums), ("new", patch_sums)]
                for name, fn in pair if i % 2 == 0 else pair[::-1]:
                    t0 = time.process_time()
                    fn(out, target, labels, **options)
                    times[name].append(time.process_time() - t0)
            print(f"| {' x '.join(map(str, shape))} | {title} | {statistics.median(times['old']) * 1e3:.2f} ms | "
                  f"{statistics.median(times['new']) * 1e3:.2f} ms | {same} |")

if __name__ == "__main__":
    main()
