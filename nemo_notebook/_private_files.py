"""Small files that belong to one user: the client's config folder (client id, token cache)
and the emulator's media key.

Another local user must not be able to plant such a file (a token of theirs, so the victim
works in their account) or to make the reader hang (a FIFO in its place). So the folder is
made 0700 and must be ours; a file is opened without following links and without blocking,
and must be a regular file of ours (and, for secrets, readable by us alone). Pure standard
library: the emulator uses it too.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["NotPrivateError", "ensure_private_dir", "read_private", "write_private"]

_CHECKS_OWNER = hasattr(os, "getuid")  # Windows has no owner bits to check


class NotPrivateError(Exception):
    """A file or folder that is not safely ours; the message names it and what to do."""


def ensure_private_dir(path: Path) -> None:
    """Make ``path`` (mode 0700) or check that it is a folder of ours, then tighten it to 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise NotPrivateError(f"{path} is not a folder; remove it")
    if not _CHECKS_OWNER:
        return
    if info.st_uid != os.getuid():
        raise NotPrivateError(f"the folder {path} belongs to another user; remove it")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)


def read_private(path: Path, max_bytes: int, *, secret: bool = False) -> bytes | None:
    """The bytes of ``path``, or ``None`` when there is no such file.

    Refuses (:class:`NotPrivateError`) a link, anything but a regular file, a file of another
    user, one larger than ``max_bytes`` and, with ``secret``, one others may read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a symbolic link; EACCES: not ours to read
        raise NotPrivateError(f"{path} cannot be read safely ({exc.strerror}); remove it") from exc
    try:
        problem = _problem(os.fstat(fd), secret)
        if problem:
            raise NotPrivateError(f"{path} {problem}")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NotPrivateError(f"{path} is larger than {max_bytes} bytes; remove it")
    return data


def _problem(info: os.stat_result, secret: bool) -> str:
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a pipe, a device or a folder); remove it"
    if not _CHECKS_OWNER:
        return ""
    if info.st_uid != os.getuid():
        return "belongs to another user; remove it"
    if secret and info.st_mode & 0o077:
        return "may be read by other users; remove it, or make it private with chmod 600"
    return ""


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (a reader never sees half of it)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
