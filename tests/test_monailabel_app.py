"""The MONAI Label DAD review app: real servers (``python -m monailabel.main start_server``) on studies
folders of real hippocampus cases, driven by MONAI Label's own client (the one 3D Slicer ships), with a
scores.csv written by the project's own code from the shipped real dynamics."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("monailabel")
from monailabel.client.client import MONAILabelClient, MONAILabelClientException  # noqa: E402

from monailabel_app.infer import channel_files  # noqa: E402
from nnunet_diet.core.errors import DietError  # noqa: E402
from nnunet_diet.core.scores import ScoreConfig  # noqa: E402
from nnunet_diet.core.selection import regions  # noqa: E402
from nnunet_diet.core.store import DynamicsStore  # noqa: E402
from nnunet_diet.nnunet.splits import prune_fold  # noqa: E402
from nnunet_diet.report.review import match_images, read_dad_scores, scores_csv  # noqa: E402
from nnunet_diet.report.tables import write_score_table  # noqa: E402
from conftest import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "nnunet_diet" / "examples"
RAW = EXAMPLES / "hippocampus40"
APP = ROOT / "monailabel_app"
READY_TIMEOUT = 120
# Study images: nnU-Net raw names (one with a second channel) and plain names; 008 has no training label.
RAW_NAMED = ("hippocampus_037", "hippocampus_015", "hippocampus_001")
PLAIN_NAMED = ("hippocampus_003", "hippocampus_006", "hippocampus_008")
IMAGE_IDS = {"hippocampus_037": "hippocampus_037_0000", "hippocampus_015": "hippocampus_015_0000",
             "hippocampus_001": "hippocampus_001_0000", "hippocampus_003": "hippocampus_003",
             "hippocampus_006": "hippocampus_006", "hippocampus_008": "hippocampus_008"}
STRATEGIES = ["dad_hardest", "dad_ambiguous", "dad_pruning", "audit"]


class Server:
    """A ``monailabel start_server`` process on 127.0.0.1 and a free port."""

    def __init__(self, studies: Path, scores: Path, log: Path, **conf: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   OMP_NUM_THREADS="1")
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(APP), "--studies",
                 str(studies), "--conf", "dad_scores", str(scores), *[a for k, v in conf.items() for a in
                                                                      ("--conf", k, str(v))],
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def wait_ready(self) -> MONAILabelClient:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/info/", timeout=5) as r:
                    if r.status == 200:
                        return MONAILabelClient(self.url)
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"server not ready after {READY_TIMEOUT} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Studies, training labels and the DAD outputs of a fold, all on disk in a temporary folder."""
    root = tmp_path_factory.mktemp("monailabel")
    store = DynamicsStore.load(EXAMPLES / "hippocampus_dice.npz")
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in (RAW / "imagesTr").glob("*_0000.nii.gz"))
    assert sorted(store.ids) == cases  # the shipped dynamics are of exactly the shipped cases
    fold = root / "nnUNet_results" / "fold_0"
    table, _ = write_score_table(store, ScoreConfig(), fold / "dad" / "scores.csv", fold / "dad" / "summary.json")
    studies, labels = root / "imagesTr", root / "labelsTr"
    studies.mkdir()
    labels.mkdir()
    shutil.copy(RAW / "dataset.json", root / "dataset.json")
    for case in RAW_NAMED + PLAIN_NAMED:
        shutil.copy(RAW / "imagesTr" / f"{case}_0000.nii.gz", studies / f"{IMAGE_IDS[case]}.nii.gz")
        if case != "hippocampus_008":
            shutil.copy(RAW / "labelsTr" / f"{case}.nii.gz", labels / f"{case}.nii.gz")
    # A second channel of case 001 (nnU-Net multi-channel naming): must not become an image of its own.
    shutil.copy(RAW / "imagesTr" / "hippocampus_001_0000.nii.gz", studies / "hippocampus_001_0001.nii.gz")
    # A per-sample table without DAD columns, made by the same project code from the other shipped store.
    other, _ = write_score_table(DynamicsStore.load(EXAMPLES / "pneumoniamnist_dynamics.npz"), ScoreConfig(),
                                 root / "eva_scores.csv")
    bad_studies = root / "bad_studies"
    bad_studies.mkdir()
    shutil.copy(RAW / "imagesTr" / "hippocampus_037_0000.nii.gz", bad_studies)
    table.index = table["id"].to_numpy()
    # The label audit of the same fold, written by the command (window 10 as the scores above).
    shutil.copy(EXAMPLES / "hippocampus_dice.npz", fold / "dad" / "dynamics.npz")
    audit = subprocess.run([str(Path(sys.executable).parent / "nnunet-diet"), "audit", str(fold)],
                           capture_output=True, text=True, timeout=120)
    assert audit.returncode == 0, audit.stderr
    (root / "no_labels").mkdir()
    shutil.copytree(studies, root / "audit_studies")  # a datastore of its own (the index file is per folder)
    return {"root": root, "fold": fold, "table": table, "studies": studies, "audit": fold / "dad" / "audit.csv",
            "labels": labels, "bad_scores": root / "eva_scores.csv", "bad_studies": bad_studies}


@pytest.fixture(scope="module")
def servers(run):
    """Both servers start at once (start-up is mostly imports); each test waits for the one it uses."""
    started = {"main": Server(run["studies"], run["fold"], run["root"] / "main.log"),
               "bad": Server(run["bad_studies"], run["bad_scores"], run["root"] / "bad.log"),
               "audit": Server(run["root"] / "audit_studies", run["audit"], run["root"] / "audit.log",
                               nnunet_labels=run["root"] / "no_labels")}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def client(servers):
    return servers["main"].wait_ready()


def _unlabeled(client: MONAILabelClient) -> list[str]:
    objects = client.datastore()["objects"]
    return [i for i, o in objects.items() if "final" not in o["labels"]]


def _first_served(table: pd.DataFrame, cases, key: str, ascending: bool, unlabeled: list[str]) -> str:
    """The expected first case: among ``cases`` whose image is unlabeled, the first by ``key``."""
    pool = table.loc[[c for c in cases if IMAGE_IDS[c] in unlabeled]]
    return pool.sort_values([key, "id"], ascending=[ascending, True]).index[0]


def test_info_lists_strategies_scoring_and_score_status(client, run):
    info = client.info()
    assert list(info["strategies"]) == STRATEGIES  # Slicer's default is the first: hardest first
    assert info["strategies"]["dad_pruning"]["config"] == {"rate": 0.4, "keep": ["ambiguous", "easy", "hard"],
                                                           "stratify": False}
    assert "config" not in info  # a top-level config makes 3D Slicer refuse the server
    assert list(info["scoring"]) == ["dad"]
    assert info["models"] == {}  # no --conf nnunet_model: no infer task, nothing loaded
    assert info["labels"] == ["anterior", "posterior"]
    dad = info["dad"]
    assert dad["source"] == str(run["fold"] / "dad" / "scores.csv")
    assert (dad["scored_images"], dad["cases_in_scores"], dad["original_labels"]) == (6, 40, 5)
    assert dad["status"] == "warning" and dad["error"] is None
    assert dad["messages"] == [f"{dad['source']}: 34 scored case(s) have no image in {run['studies']}, e.g. "
                               "hippocampus_004, hippocampus_007, hippocampus_011"]
    assert "6 scored image(s)" in info["description"]


def test_datastore_holds_one_image_per_case_with_its_scores_and_training_label(client, run):
    objects = client.datastore()["objects"]
    assert sorted(objects) == sorted(IMAGE_IDS.values())  # hippocampus_001_0001 is a channel, not an image
    for case, image_id in IMAGE_IDS.items():
        info, row = objects[image_id]["image"]["info"], run["table"].loc[case]
        assert info["case_id"] == case
        assert info["dad"] == pytest.approx(row["dad"], rel=1e-5)
        assert info["sigma"] == pytest.approx(row["sigma"], rel=1e-5)
        assert (info["region"], info["dad_rank"], info["dad_cases"]) == (row["region"], row["dad_rank"], 40)
        assert info["dad_source"] == str(run["fold"] / "dad" / "scores.csv")
        original = objects[image_id]["labels"].get("original")
        if case == "hippocampus_008":
            assert original is None
        else:  # what 3D Slicer reads before preloading the label
            assert original["info"]["params"]["label_names"] == {"anterior": 1, "posterior": 2}
            assert original["info"]["source"] == str(run["labels"] / f"{case}.nii.gz")


def test_dad_scoring_runs_in_process_and_writes_only_changes(client):
    request = urllib.request.Request(f"{client._server_url}/scoring/dad?run_sync=true", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        result = json.loads(response.read())
    assert (result["status"], result["scored_images"], result["updated_images"]) == ("warning", 6, 0)


def test_hardest_first_never_twice_in_a_row_and_moves_on_after_final(client, run):
    table = run["table"]
    cases = list(IMAGE_IDS)
    a = MONAILabelClient(client._server_url, client_id="annotator-a")
    first = a.next_sample("dad_hardest", {})
    expected = _first_served(table, cases, "dad", True, _unlabeled(client))
    assert first["id"] == IMAGE_IDS[expected] and first["case_id"] == expected
    row = table.loc[expected]
    assert first["dad_rank"] == row["dad_rank"] == table.loc[cases, "dad_rank"].min()
    assert first["dad"] == pytest.approx(row["dad"], rel=1e-5) and first["region"] == row["region"]
    assert first["sigma"] == pytest.approx(row["sigma"], rel=1e-5)
    assert first["PatientID"].startswith(f"{expected} | DAD rank {row['dad_rank']}/40 | DAD {row['dad']:.3f}")

    second = a.next_sample("dad_hardest", {})  # not the same image twice in a row
    rest = [c for c in cases if c != expected]
    assert second["case_id"] == _first_served(table, rest, "dad", True, _unlabeled(client))
    b = MONAILabelClient(client._server_url, client_id="annotator-b")
    assert b.next_sample("dad_hardest", {})["id"] == first["id"]  # another client starts at the top

    a.save_label(first["id"], str(run["labels"] / f"{expected}.nii.gz"), tag="final")
    objects = client.datastore()["objects"]
    assert "final" in objects[first["id"]]["labels"]
    assert objects[first["id"]]["image"]["info"]["dad"] == pytest.approx(row["dad"], rel=1e-5)  # not clobbered
    c = MONAILabelClient(client._server_url, client_id="annotator-c")
    assert c.next_sample("dad_hardest", {})["case_id"] == second["case_id"]  # the reviewed case is done
    assert client.info()["datastore"]["completed"] == 1


def test_ambiguous_first_serves_the_band_by_variability(client, run):
    table = run["table"]
    for rate in (0.4, 0.2):
        band = table.index[regions(table["dad"].to_numpy(float), rate) == "ambiguous"]
        in_studies = [c for c in IMAGE_IDS if c in band]
        sample = MONAILabelClient(client._server_url, client_id=f"amb-{rate}").next_sample(
            "dad_ambiguous", {"rate": rate})
        assert sample["case_id"] == _first_served(table, in_studies, "sigma", False, _unlabeled(client))


def test_pruning_view_serves_what_the_prune_command_removes(client, run):
    table = run["table"]
    for keep in ("ambiguous", "easy", "hard"):
        removed = prune_fold(list(table["id"]), table.reset_index(drop=True), "dad", 0.4, keep).removed
        in_studies = [c for c in IMAGE_IDS if c in removed]
        sample = MONAILabelClient(client._server_url, client_id=f"prune-{keep}").next_sample(
            "dad_pruning", {"keep": keep, "rate": "0.4", "stratify": False})
        assert sample["case_id"] == _first_served(table, in_studies, "dad", True, _unlabeled(client))
        assert sample["queue_left"] == len([c for c in in_studies if IMAGE_IDS[c] in _unlabeled(client)])
    with pytest.raises(MONAILabelClientException):
        client.next_sample("dad_pruning", {"keep": "everything"})


def test_bad_scores_file_is_reported_and_the_server_still_serves(servers, run):
    bad = servers["bad"].wait_ready()
    info = bad.info()
    expected = f"{run['bad_scores']}: missing column(s) dad, sigma, region, dad_rank"
    assert info["dad"]["status"] == "error" and info["dad"]["error"].startswith(expected)
    assert info["dad"]["scored_images"] == 0
    assert "DAD scores NOT loaded" in info["description"]
    assert list(info["strategies"]) == STRATEGIES
    assert bad.next_sample("dad_hardest", {}) == {}
    assert list(bad.datastore()["objects"]) == ["hippocampus_037_0000"]
    assert expected in servers["bad"].log.read_text()


def test_audit_strategy_serves_the_audit_table_order_with_its_reasons(servers, run):
    client = servers["audit"].wait_ready()
    info = client.info()
    assert list(info["strategies"])[0] == "audit"  # an audit.csv: 3D Slicer's default is the audit order
    audit = pd.read_csv(run["audit"], dtype={"id": str, "reason": str}).fillna({"reason": ""})
    expected = [c for c in audit["id"] if c in IMAGE_IDS]  # the table's order, restricted to the studies
    annotator = MONAILabelClient(client._server_url, client_id="auditor")
    for case in expected[:3]:
        sample = annotator.next_sample("audit", {})
        row = audit.set_index("id").loc[case]
        assert (sample["case_id"], sample["audit_rank"], sample["reason"]) == (case, row["audit_rank"], row["reason"])
        assert sample["PatientID"].startswith(f"{case} | DAD rank ")
        if row["reason"]:
            assert sample["PatientID"].endswith(f" | {row['reason']}")
        label = RAW / "labelsTr" / f"{case}.nii.gz"
        annotator.save_label(sample["id"], str(label), tag="final")  # reviewed: the queue moves on
    # the labels folder it was given holds none of the cases' labels: said at WARNING level, not INFO
    log = servers["audit"].log.read_text()
    warning = [line for line in log.splitlines() if "no training label found for any of 6 case(s)" in line]
    assert warning and "WARNING" in warning[0], log[-2000:]
    assert info["dad"]["original_labels"] == 0


def test_audit_strategy_on_a_plain_scores_file_names_the_missing_column(client):
    with pytest.raises(MONAILabelClientException):
        client.next_sample("audit", {})


# Framework-free helpers (nnunet_diet.report.review), in process.

def test_scores_path_accepts_a_fold_folder_a_dad_folder_or_a_csv(run):
    csv = run["fold"] / "dad" / "scores.csv"
    assert scores_csv(run["fold"]) == scores_csv(run["fold"] / "dad") == scores_csv(csv) == csv
    with pytest.raises(DietError, match="no DAD scores in this folder"):
        scores_csv(run["root"])
    with pytest.raises(DietError, match="no such scores file or fold folder"):
        scores_csv(run["root"] / "missing.csv")


def test_malformed_scores_files_name_the_file_and_the_problem(run, tmp_path):
    good = pd.read_csv(run["fold"] / "dad" / "scores.csv")
    cases = {
        "duplicate id": pd.concat([good, good.iloc[:1]]),
        "dad is not a number in row 4": good.assign(dad=good["dad"].astype(object).where(good.index != 2, "high")),
        "missing column(s) sigma": good.drop(columns="sigma"),
    }
    for problem, frame in cases.items():
        path = tmp_path / f"{problem.split()[0]}.csv"
        frame.to_csv(path, index=False)
        with pytest.raises(DietError, match=re.escape(f"{path}: {problem}")):
            read_dad_scores(path)
    binary = tmp_path / "binary.csv"
    binary.write_bytes((EXAMPLES / "hippocampus_dice.npz").read_bytes()[:2000])
    with pytest.raises(DietError, match=re.escape(f"{binary}: ")):
        read_dad_scores(binary)


def test_nnunet_infer_reads_every_channel_of_a_case(run):
    first, plain = str(run["studies"] / "hippocampus_001_0000.nii.gz"), str(run["studies"] / "hippocampus_003.nii.gz")
    assert channel_files(first, 2, ".nii.gz") == [first, str(run["studies"] / "hippocampus_001_0001.nii.gz")]
    assert channel_files(plain, 1, ".nii.gz") == [plain]
    with pytest.raises(DietError, match="needs 3 channels"):
        channel_files(first, 3, ".nii.gz")
    with pytest.raises(DietError, match="needs 2 channels"):
        channel_files(plain, 2, ".nii.gz")


def test_image_ids_map_to_case_ids():
    images = ["case_1_0000", "case_1_0001", "case_2", "case_3_0000", "BraTS_0001", "BraTS_0002", "other"]
    match = match_images(images, ["case_1", "case_2", "case_3", "BraTS_0001", "BraTS_0002", "case_9"])
    assert match.case_of == {"BraTS_0001": "BraTS_0001", "BraTS_0002": "BraTS_0002", "case_1_0000": "case_1",
                             "case_2": "case_2", "case_3_0000": "case_3", "other": "other"}
    assert match.channels == {"case_1_0001": "case_1_0000"}
    assert (match.unscored, match.unknown) == (["other"], ["case_9"])
    lines = match.messages(Path("s.csv"), "studies")
    assert lines == ["s.csv: 1 scored case(s) have no image in studies, e.g. case_9",
                     "studies: 1 image(s) have no DAD score in s.csv, e.g. other; the DAD queues skip them"]
    unscored = match_images(["x_0000", "x_0001", "y_0000"], [])
    assert unscored.case_of == {"x_0000": "x", "y_0000": "y"} and unscored.channels == {"x_0001": "x_0000"}
    assert unscored.messages(Path("s.csv"), "studies")[-1].startswith("s.csv: no image in studies matches")
    assert np.array_equal(sorted(unscored.unscored), ["x_0000", "y_0000"])
