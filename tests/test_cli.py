import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_diet.core.store import DynamicsStore

CLI = str(Path(sys.executable).parent / "nnunet-diet")  # the installed console script


def run(*args, check=True):
    proc = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("command", ["pipeline", "scores", "select", "normdel", "prune", "lite-plans",
                                     "trainer-path", "embed", "meddel", "normdel-table", "report", "audit", "medmnist"])
def test_every_command_has_help(command):
    out = run(command, "--help").stdout
    assert out.startswith(f"usage: nnunet-diet {command}")


def test_normdel_prints_the_papers_value():
    assert run("normdel", "--metric", 0.7938, "--retained", 0.05).stdout.strip() == "68.03"
    bad = run("normdel", "--metric", 79.38, "--retained", 0.05, check=False)
    assert bad.returncode == 2 and "divide percentages by 100" in bad.stderr and "Traceback" not in bad.stderr


@pytest.fixture
def store_file(tmp_path):
    rng = np.random.default_rng(0)
    n, e = 20, 30
    store = DynamicsStore([f"case_{i:02d}" for i in range(n)], ["dice", "el2n", "el2nx"],
                          groups=["A" if i < 12 else "B" for i in range(n)])
    skill = np.linspace(0.2, 0.9, n)
    for epoch in range(e):
        dice = np.clip(skill * (1 - np.exp(-epoch / 5)) + rng.normal(0, 0.02, n), 0, 1)  # Dice lies in [0, 1]
        store.append_epoch({"dice": dice, "el2n": 1 - dice / 2, "el2nx": 1 - dice})
    return store.save(tmp_path / "dad.npz")


def test_scores_then_select(store_file, tmp_path):
    out = tmp_path / "scores.csv"
    proc = run("scores", store_file, "-o", out)
    assert "stop_epoch" in proc.stdout
    table = pd.read_csv(out)
    assert list(table.columns) == ["id", "group", "dad", "sigma", "region", "dad_rank", "el2n", "el2nx"]
    assert len(table) == 20 and table["dad"].notna().all()
    assert table.loc[table["dad_rank"] == 1, "id"].item() == "case_00"  # lowest skill = hardest
    assert out.with_suffix(".summary.json").is_file()

    keep = tmp_path / "keep.txt"
    run("select", out, "--method", "dad", "--keep", 0.6, "--stratify", "group", "-o", keep)
    kept = keep.read_text().split()
    assert len(kept) == 12
    assert "case_00" not in kept and "case_19" not in kept  # both tails removed
    assert sum(k < "case_12" for k in kept) == round(12 * 12 / 20)  # centre A keeps its share


@pytest.mark.parametrize(
    "args, message",
    [
        (["scores", "missing.npz"], "missing.npz: no such dynamics file"),
        (["select", "{csv}", "--method", "vog", "--keep", "0.5"], "unknown method 'vog'"),
        (["select", "{csv}", "--method", "dad", "--keep", "1.5"], r"keep fraction must be in (0, 1), got 1.5"),
        (["select", "{csv}", "--method", "dad", "--keep", "0.5", "--stratify", "centre"], "no such column"),
        (["select", "nope.csv", "--method", "dad", "--keep", "0.5"], "nope.csv: no such score table"),
    ],
)
def test_bad_input_is_a_clear_message(args, message, store_file, tmp_path):
    csv = tmp_path / "s.csv"
    run("scores", store_file, "-o", csv)
    proc = run(*[a.format(csv=csv) for a in args], check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


EXAMPLES = Path(__file__).resolve().parents[1] / "nnunet_diet" / "examples"


def test_scores_on_the_shipped_real_dynamics(tmp_path):
    """The two real example stores (README): every score their series allow, finite for every sample."""
    hippo = tmp_path / "hippo.csv"
    run("scores", EXAMPLES / "hippocampus_dice.npz", "-o", hippo)
    table = pd.read_csv(hippo)
    assert len(table) == 40 and table["id"].str.startswith("hippocampus_").all()
    assert table[["dad", "sigma", "el2n", "el2nx"]].notna().all().all()
    assert table["region"].value_counts().to_dict() == {"ambiguous": 24, "hard": 8, "easy": 8}

    pneumonia = tmp_path / "pneumonia.csv"
    run("scores", EXAMPLES / "pneumoniamnist_dynamics.npz", "-o", pneumonia, "--eva-late", 20, 30)
    table = pd.read_csv(pneumonia)
    assert len(table) == 800 and set(table["group"].astype(str)) == {"0", "1"}
    assert {"eva", "el2n", "forgetting", "aum"} <= set(table.columns)
    assert table[["eva", "el2n", "forgetting", "aum"]].notna().all().all()
    # Hard samples have a large early error (EL2N) and a small margin (AUM): the two rankings agree.
    assert table["el2n"].corr(table["aum"], method="spearman") < -0.9
