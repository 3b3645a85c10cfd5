"""Shared fixtures: an isolated config dir for every test, and one emulator per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

NEMO_ENV = (
    "NEMO_TOKEN", "NEMO_API_URL", "NEMO_WEB_URL", "NEMO_CLIENT_ID", "SKILL_SOURCE",
    "NEMO_CASSETTE", "NEMO_CASSETTE_MODE",
)  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test reads or writes the real ~/.config/nemovideo or sees a real NEMO_* setting."""
    config_home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    for name in NEMO_ENV:
        monkeypatch.delenv(name, raising=False)
    return config_home / "nemovideo"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real emulator on a free loopback port, shared by the session, work sped up 100x."""
    from nemo_notebook.emulator import start

    data_dir = tmp_path_factory.mktemp("emulator-data")
    with start(data_dir, time_scale=0.01, tokens_per_ip=100_000) as handle:
        yield handle


@pytest.fixture
def emulator_url(emulator: object) -> str:
    return str(emulator.url)  # type: ignore[attr-defined]


def pytest_configure(config: pytest.Config) -> None:
    # Artifacts (browser screenshots) go here; CI keeps the folder when a test fails.
    os.environ.setdefault("NEMO_TEST_ARTIFACTS", str(Path(config.rootpath) / "test-artifacts"))
