"""The :class:`Store`: every table of one emulator data directory behind one object."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .render_jobs import RenderJobTable
from .sessions import SessionTable
from .tokens import TokenTable
from .uploads import UploadTable


class Store(TokenTable, SessionTable, UploadTable, RenderJobTable):
    """All persistent state of one emulator data directory."""

    def __init__(
        self,
        path: Path,
        *,
        initial_credits: int = 100,
        tokens_per_ip: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(path, clock)
        self.initial_credits = initial_credits
        self.tokens_per_ip = tokens_per_ip
        self._grants = {}
        self._grants_generation = 0
        self._sessions = {}
