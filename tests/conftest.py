import socket

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
