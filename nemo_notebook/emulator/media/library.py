"""The files under a data directory's ``media/`` folder: found without leaving it, handed out
as signed URLs, and a draft's media URL mapped back to its file."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .ffmpeg import RenderError
from .files import MEDIA_SIGNATURE_PARAM, MediaSigner

__all__ = ["MediaLibrary"]


class MediaLibrary:
    """One server's media folder and the key that signs its URLs."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "media"
        self.root.mkdir(parents=True, exist_ok=True)
        self.signer = MediaSigner.for_data_dir(Path(data_dir))

    def file_at(self, rel: str) -> Path | None:
        """The file under ``media/`` that ``rel`` names, or ``None`` (traversal, hidden, absent)."""
        parts = [p for p in rel.replace("\\", "/").split("/") if p]
        if not parts or any(p.startswith(".") or "\x00" in p for p in parts):
            return None
        root = self.root.resolve()
        try:
            candidate = root.joinpath(*parts).resolve()
            found = candidate.is_relative_to(root) and candidate.is_file()
        except OSError:  # a name too long for the file system, no permission…
            return None
        return candidate if found else None

    def signed_url(self, base_url: str, path: Path) -> str:
        """The signed URL of a file under ``media/`` (only whoever is handed it can fetch it)."""
        rel = path.resolve().relative_to(self.root.resolve()).as_posix()
        return self.signer.url(base_url, rel)

    def signed_file(self, rel: str, signature: str | None) -> Path | None:
        """The file ``rel`` names if ``signature`` is the one this server gave it, else ``None``."""
        if not self.signer.verify(rel, signature):
            return None
        return self.file_at(rel)

    def file_for_source(self, src: str) -> Path:
        """Map a signed ``<any host>/media/<rel>?sig=…`` URL back to the file; refuse everything
        else (a draft naming another user's file by its bare path renders nothing of it)."""
        parts = urlsplit(src) if isinstance(src, str) else None
        if parts is None or parts.scheme not in ("http", "https"):
            raise RenderError(f"refusing media source {str(src)[:200]!r}: only /media/ URLs")
        if not parts.path.startswith("/media/"):
            raise RenderError(f"refusing media source {src[:200]!r}: not under /media/")
        signature = parse_qs(parts.query).get(MEDIA_SIGNATURE_PARAM, [None])[0]
        path = self.signed_file(unquote(parts.path[len("/media/") :]), signature)
        if path is None:
            raise RenderError(f"media not found: {src[:200]}")
        return path
