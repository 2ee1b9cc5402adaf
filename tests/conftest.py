import socket
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the DDP rendezvous and the MONAI Label server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_png(path: Path, shape: tuple, seed: int) -> None:
    """A PNG of seeded random uint8 values (``shape`` H x W or H x W x C), its folders created."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)).save(path)


def error_line(capsys) -> str:
    """What the command wrote on stderr, asserted to be exactly one line."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]
