"""A real IPython kernel for tests (``jupyter_client``): run a cell and get what it showed."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jupyter_client

__all__ = ["Kernel", "Ran"]


@dataclass
class Ran:
    """What one cell gave: its stdout, its displays and the error, if any."""

    stdout: str = ""
    displays: list[dict[str, Any]] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)  # of each display
    updates: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    error: str | None = None
    result: dict[str, Any] | None = None

    def html(self) -> str:
        return "\n".join(str(shown.get("text/html", "")) for shown in self.displays)


class Kernel:
    """A real IPython kernel in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.manager = jupyter_client.KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(folder), env=dict(os.environ))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120) -> Ran:
        msg_id = self.client.execute(code)
        ran = Ran()
        deadline = time.monotonic() + timeout
        while True:
            message = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content["name"] == "stdout":
                ran.stdout += content["text"]
            elif kind == "display_data":
                ran.displays.append(content["data"])
                ran.metadata.append(content["metadata"])
            elif kind == "update_display_data":
                ran.updates.append((content["data"], content["metadata"]))
            elif kind == "execute_result":
                ran.result = content["data"]
            elif kind == "error":
                ran.error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                return ran

    def start(self, code: str) -> str:
        """Send a cell without waiting for it."""
        return str(self.client.execute(code))

    def messages(self, until: Any, timeout: float = 60) -> list[dict[str, Any]]:
        """Every output message, of any cell, until ``until(messages)`` holds."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not until(seen):
            assert time.monotonic() < deadline, "timed out"
            seen.append(self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic())))
        return seen

    def kill(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
