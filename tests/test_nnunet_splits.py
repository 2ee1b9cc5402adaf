import json

import numpy as np
import pandas as pd
import pytest

from nnunet_diet.core.errors import DietError
from nnunet_diet.nnunet.config import DADConfig, centre_of
from nnunet_diet.nnunet.splits import prune_fold, read_scores, read_splits, summary_table, write_splits

TRAIN = [f"case_{i:02d}" for i in range(10)]
SCORES = pd.DataFrame({"id": TRAIN[::-1], "dad": np.linspace(0.9, 0.0, 10), "el2n": np.linspace(0.1, 1.0, 10)})
# case_00 has DAD 0.0 (hardest), case_09 DAD 0.9 (easiest); EL2N runs the other way


@pytest.mark.parametrize(
    "mode, column, kept",
    [
        ("ambiguous", "dad", TRAIN[2:8]),
        ("easy", "dad", TRAIN[4:]),       # the 40 % hardest (lowest DAD) removed
        ("hard", "dad", TRAIN[:6]),       # the 40 % easiest removed
        ("easy", "el2n", TRAIN[4:]),      # same cases: high EL2N is hard
        ("ambiguous", "el2n", TRAIN[2:8]),
    ],
)
def test_prune_modes(mode, column, kept):
    result = prune_fold(TRAIN, SCORES, column, 0.4, mode)
    assert result.train == kept
    assert sorted(result.removed + result.train) == TRAIN


def test_random_and_stratified():
    groups = np.array(["A"] * 6 + ["B"] * 4)
    result = prune_fold(TRAIN, SCORES, "dad", 0.5, "random", groups=groups, seed=3)
    assert len(result.train) == 5
    assert sum(i in TRAIN[:6] for i in result.train) == 3
    assert result.train == prune_fold(TRAIN, SCORES, "dad", 0.5, "random", groups=groups, seed=3).train
    table = summary_table(prune_fold(TRAIN, SCORES, "dad", 0.5, "ambiguous", groups=groups))
    assert table.set_index("group").loc["total", "after"] == 5
    assert list(table["group"]) == ["A", "B", "total"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(column="dad", rate=1.5, mode="ambiguous"), r"rate must be in \(0, 1\), got 1.5"),
        (dict(column="dad", rate=0.4, mode="middle"), "unknown mode 'middle'"),
        (dict(column="sigma", rate=0.4, mode="easy"), "which end of 'sigma' is easy"),
    ],
)
def test_prune_bad_input(kwargs, message):
    scores = SCORES.assign(sigma=0.1)
    with pytest.raises(DietError, match=message):
        prune_fold(TRAIN, scores, **kwargs)


def test_unscored_cases_are_kept_by_default():
    scores = SCORES.copy()
    scores.loc[scores["id"] == "case_00", "dad"] = np.nan  # the hardest case was not drawn in the window
    result = prune_fold(TRAIN, scores, "dad", 0.4, "ambiguous")
    assert "case_00" in result.train and len(result.train) == 6
    assert "case_00" not in prune_fold(TRAIN, scores, "dad", 0.4, "ambiguous", unscored="remove").train
    with pytest.raises(DietError, match="1 training case.* have no dad value, e.g. case_00"):
        prune_fold(TRAIN, scores, "dad", 0.4, "ambiguous", unscored="error")


def test_prune_needs_a_score_for_every_training_case():
    with pytest.raises(DietError, match="1 training case.* have no score, e.g. case_10"):
        prune_fold(TRAIN + ["case_10"], SCORES, "dad", 0.4, "ambiguous")
    with pytest.raises(DietError, match="duplicate ids"):
        prune_fold(TRAIN + ["case_00"], SCORES, "dad", 0.4, "ambiguous")


def test_split_file_io(tmp_path):
    path = tmp_path / "splits_final.json"
    splits = [{"train": ["a", "b"], "val": ["c"]}]
    assert write_splits(path, splits) is None
    backup = write_splits(path, splits + splits)
    assert backup is not None and json.loads(backup.read_text()) == splits
    assert read_splits(path) == splits + splits
    path.write_text('{"train": []}')
    with pytest.raises(DietError, match="malformed split file"):
        read_splits(path)
    path.write_text("[{")
    with pytest.raises(DietError, match="malformed split file, not JSON"):
        read_splits(path)


def test_read_scores(tmp_path):
    path = tmp_path / "s.csv"
    SCORES.rename(columns={"id": "case"}).to_csv(path, index=False)
    assert list(read_scores(path, "dad")["id"]) == TRAIN[::-1]
    with pytest.raises(DietError, match="no score column 'vog'"):
        read_scores(path, "vog")
    pd.concat([SCORES, SCORES.head(1)]).to_csv(path, index=False)
    with pytest.raises(DietError, match="duplicate ids, e.g. case_09"):
        read_scores(path, "dad")
    with pytest.raises(DietError, match="no such scores file"):
        read_scores(tmp_path / "none.csv", "dad")


def test_config_from_env_validates_and_echoes():
    cfg = DADConfig.from_env({"NNUNET_DIET_WINDOW": "5", "NNUNET_DIET_STOP": "0", "NNUNET_DIET_ABSOLUTE": "yes"})
    assert (cfg.window, cfg.stop, cfg.absolute, cfg.threshold) == (5, False, True, 0.01)
    assert "window=5" in cfg.describe()
    assert (cfg.plot_every, cfg.final_validation) == (1, True)  # nnU-Net's behaviour unless asked otherwise
    cfg = DADConfig.from_env({"NNUNET_DIET_PLOT_EVERY": "5", "NNUNET_DIET_FINAL_VALIDATION": "0"})
    assert (cfg.plot_every, cfg.final_validation) == (5, False)
    for env, message in [({"NNUNET_DIET_WINDOW": "0"}, "NNUNET_DIET_WINDOW='0': expected an integer >= 1"),
                         ({"NNUNET_DIET_THRESHOLD": "x"}, "NNUNET_DIET_THRESHOLD='x': expected a number in"),
                         ({"NNUNET_DIET_STOP": "maybe"}, "NNUNET_DIET_STOP='maybe': expected 0 or 1"),
                         ({"NNUNET_DIET_PLOT_EVERY": "0"}, "NNUNET_DIET_PLOT_EVERY='0': expected an integer >= 1"),
                         ({"NNUNET_DIET_FINAL_VALIDATION": "x"}, "NNUNET_DIET_FINAL_VALIDATION='x': expected 0 or 1")]:
        with pytest.raises(DietError, match=message):
            DADConfig.from_env(env)


def test_centres_from_file_or_pattern(tmp_path):
    ids = ["kvasir_001", "cvc_002"]
    assert centre_of(ids, r"^([a-z]+)_").tolist() == ["kvasir", "cvc"]
    mapping = tmp_path / "centres.csv"
    mapping.write_text("id,centre\nkvasir_001,Oslo\ncvc_002,Barcelona\n")
    assert centre_of(ids, str(mapping)).tolist() == ["Oslo", "Barcelona"]
    with pytest.raises(DietError, match="does not match case 'cvc_002'"):
        centre_of(ids, r"^(kvasir)_")
    with pytest.raises(DietError, match="needs one group"):
        centre_of(ids, r"kvasir")
