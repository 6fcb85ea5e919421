"""Fixtures for the recommender tests (helpers live in recommender_testing.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread; on a shared CPU, extra OpenMP threads mostly spin.
    Restored afterwards so other test folders keep their settings."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
