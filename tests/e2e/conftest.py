from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One `pinnace up` per test module."""
    base = tmp_path_factory.mktemp("cluster")
    c = Cluster(data_dir=base / "data", home=base / "home")
    c.home.mkdir()
    c.start()
    try:
        yield c
    finally:
        c.stop()
