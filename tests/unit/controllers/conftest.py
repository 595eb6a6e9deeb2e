"""Fixtures of the controllers' unit tests: a clock moved by hand."""

from __future__ import annotations

import pytest

from tests.unit.controllers.objects import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
