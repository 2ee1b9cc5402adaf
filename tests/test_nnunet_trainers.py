"""Every DAD trainer name is findable: `nnunet-diet trainers`, docs/nnunet.md and the classes nnU-Net finds agree."""

import importlib
import subprocess
import sys
from pathlib import Path

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

from nnunet_diet.cli.nnunet import EXT_FOLDER
from nnunet_diet.nnunet.trainer import DADRecordingMixin

BIN = Path(sys.executable).parent
DOCS = Path(__file__).resolve().parent.parent / "docs" / "nnunet.md"


def _listed(*args: str) -> str:
    return subprocess.run([BIN / "nnunet-diet", "trainers", *args], capture_output=True, text=True,
                          check=True).stdout


def test_docs_table_is_the_command_output():
    docs = DOCS.read_text()
    table = docs[docs.index("<!-- trainers -->\n") + len("<!-- trainers -->\n"):docs.index("<!-- /trainers -->")]
    assert table == _listed("--markdown")


def test_every_listed_name_is_a_dad_trainer_nnunet_finds():
    names = [line.split()[0] for line in _listed().splitlines()[1:]]
    assert len(names) == len(set(names)) == 123
    for name in ("nnUNetTrainerDAD", "nnUNetTrainerDADNoDeepSupervision", "nnUNetTrainerDADAdam_50epochs_10iters"):
        assert name in names
    # the call nnU-Net's recursive_find_trainer_class_by_name makes for each nnUNet_extTrainer folder
    found = {name: recursive_find_python_class(str(EXT_FOLDER), name, None, base_folder=str(EXT_FOLDER),
                                               cleanup_imports_from_base_folder=True)
             for name in names[:3] + names[-2:]}
    for name, cls in found.items():
        assert cls is not None and cls.__name__ == name, name
        assert issubclass(cls, DADRecordingMixin) and issubclass(cls, nnUNetTrainer)
        # checkpoints and DDP workers import the class by its module and qualified name
        assert getattr(importlib.import_module(cls.__module__), cls.__qualname__) is cls


def test_cpu_trainers_respect_omp_num_threads(monkeypatch):
    # nnUNetv2_train -device cpu calls torch.set_num_threads(cpu_count()) before building the trainer
    import torch

    from nnunet_diet.nnunet.trainer import _respect_omp_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        _respect_omp_threads(torch.device("cpu"))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.delenv("OMP_NUM_THREADS")  # unset: nnU-Net's choice stands
        _respect_omp_threads(torch.device("cpu"))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
