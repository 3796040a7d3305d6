"""Shared test fixtures."""

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir():
    """The real-audio folder ``../shared/data`` (or $DEVICEPOOL_SHARED_DATA), or None."""
    env = os.environ.get("DEVICEPOOL_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def shared_data():
    """Path of the real audio folder; skips the test when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real audio in ../shared/data is absent")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)
