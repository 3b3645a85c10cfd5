"""Writing media files atomically (readers never see a half-written file), the file types and
qualities the renderer writes, and the signed ``/media/`` URLs that only whoever was handed one
can fetch."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..._private_files import NotPrivateError, read_private

__all__ = [
    "MEDIA_SIGNATURE_PARAM",
    "OUTPUT_FORMATS",
    "QUALITY_PRESETS",
    "MediaSigner",
    "OutputFormat",
    "atomic_output",
]

MEDIA_SIGNATURE_PARAM = "sig"
_KEY_FILE = "media-url.key"
_KEY_BYTES = 32
_SIGNATURE_BYTES = 16  # 128 bits: unguessable, and the URL stays short


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
#: A render job's ``output.quality`` -> the x264 preset it renders with.
QUALITY_PRESETS = {"high": "veryfast", "medium": "superfast", "low": "ultrafast"}


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


class MediaSigner:
    """Signs paths under ``media/`` with a key kept in the data dir (mode 0600), so URLs the
    server handed out stay valid across restarts and no one can forge one for another's file."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> MediaSigner:
        return cls(_load_or_create_key(Path(data_dir) / _KEY_FILE))

    def signature(self, rel: str) -> str:
        named = normalize_rel(rel).encode("utf-8", "surrogatepass")  # JSON may carry "\ud800"
        digest = hmac.new(self._key, b"media:" + named, hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:_SIGNATURE_BYTES]).rstrip(b"=").decode()

    def verify(self, rel: str, signature: str | None) -> bool:
        if not signature:
            return False
        sent = signature.encode("utf-8", "surrogatepass")
        return hmac.compare_digest(self.signature(rel).encode(), sent)

    def url(self, base_url: str, rel: str) -> str:
        rel = normalize_rel(rel)
        sig = self.signature(rel)
        return f"{base_url.rstrip('/')}/media/{quote(rel)}?{MEDIA_SIGNATURE_PARAM}={sig}"

    def __repr__(self) -> str:
        return "<MediaSigner>"


def normalize_rel(rel: str) -> str:
    """``a//b/`` and ``a\\b`` name the same file as ``a/b``, so they share one signature."""
    return "/".join(p for p in rel.replace("\\", "/").split("/") if p)


def _load_or_create_key(path: Path) -> bytes:
    key = _read_key(path)
    if key is not None:
        return key
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(_KEY_BYTES))
        with contextlib.suppress(FileExistsError):  # first writer wins; others read its key
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    existing = _read_key(path)
    if existing is None:
        raise RuntimeError(f"cannot use the media key {path}: remove it and start again")
    return existing


def _read_key(path: Path) -> bytes | None:
    """The key in ``path``, or ``None`` when there is none yet (a wrong file is refused)."""
    try:
        key = read_private(path, _KEY_BYTES, secret=True)
    except NotPrivateError as exc:
        raise RuntimeError(f"the media key: {exc}") from exc
    if key is not None and len(key) != _KEY_BYTES:
        raise RuntimeError(f"the media key {path} is not {_KEY_BYTES} bytes long: remove it")
    return key
