"""A media worker process: makes images, clips and music for the emulator's agent.

Run as ``python -m nemo_notebook.emulator.media.media_worker``. It reads one JSON request a line
on stdin (``{"job": "scenes.save_image", "kwargs": {...}}``, see ``jobs``), runs it and answers
one JSON line on stdout (``{"ok": true}`` or ``{"ok": false, "error": "..."}``). It runs at the
lowest CPU priority, so a burst of generation cannot delay the server's responses, and it
exits when stdin closes (the server stopped or died).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, BinaryIO

from .jobs import job_from_request

NICENESS = 19


def answer(request_line: bytes) -> dict[str, Any]:
    """Run the job one request line names; what went wrong, if anything, as the reply."""
    try:
        request = json.loads(request_line)
        if not isinstance(request, dict):
            raise ValueError("a request must be a JSON object")
        job_from_request(request).run()
    except Exception as exc:
        return {"ok": False, "error": str(exc) or type(exc).__name__, "type": type(exc).__name__}
    return {"ok": True}


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until the input closes."""
    for line in requests:
        if not line.strip():
            continue
        replies.write(json.dumps(answer(line)).encode("utf-8") + b"\n")
        replies.flush()


def lower_priority() -> None:
    """Run only when the CPU is otherwise idle (Linux ``SCHED_IDLE``), else at the lowest nice
    level: media generation waits for the server's request handling, never the other way."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(NICENESS)


def main() -> None:
    lower_priority()
    # Replies get their own copy of stdout; stray prints from libraries go to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
