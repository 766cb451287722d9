import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


def _shared() -> Path | None:
    from weightlab import paths

    return paths.shared_root()


@pytest.fixture(scope="session")
def shared() -> Path:
    root = _shared()
    if root is None:
        pytest.skip("shared data not found (set WEIGHTLAB_SHARED to the shared folder)")
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
