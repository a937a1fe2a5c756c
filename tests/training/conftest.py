from __future__ import annotations

import pytest

from coldstream_data.base import Dataset
from coldstream_data.music_world import generate_world


@pytest.fixture(scope="session")
def tiny_world() -> Dataset:
    return generate_world("tiny")
