"""Writing media files atomically (readers never see a half-written file), and the file
types the renderer writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OUTPUT_FORMATS", "OutputFormat", "atomic_output"]


@dataclass(frozen=True)
class OutputFormat:
    """A file type the renderer writes (``output.format`` of a render job)."""

    name: str
    extension: str
    content_type: str
    has_audio: bool = True


OUTPUT_FORMATS: dict[str, OutputFormat] = {
    "mp4": OutputFormat("mp4", ".mp4", "video/mp4"),
    "webm": OutputFormat("webm", ".webm", "video/webm"),
    "gif": OutputFormat("gif", ".gif", "image/gif", has_audio=False),
    "png": OutputFormat("png", ".png", "image/png", has_audio=False),
}


@contextlib.contextmanager
def atomic_output(target: Path, suffix: str) -> Iterator[Path]:
    """A temp path next to ``target`` (``.<name>.*.part<suffix>``), renamed onto it on success
    and removed on failure. Render workers clean leftovers of that pattern after a crash."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".part{suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
