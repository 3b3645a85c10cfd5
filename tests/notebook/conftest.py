"""Fixtures of the notebook-layer tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernel_support import Kernel


@pytest.fixture
def kernels() -> Iterator[list[Kernel]]:
    """Real kernels a test starts (append them); each is shut down after the test."""
    started: list[Kernel] = []
    yield started
    for kernel in started:
        kernel.kill()
