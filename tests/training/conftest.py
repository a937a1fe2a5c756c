from __future__ import annotations

import pytest

from training.datasets.base import Dataset
from training.datasets.music_world import generate_world


@pytest.fixture(scope="session")
def tiny_world() -> Dataset:
    return generate_world("tiny")
