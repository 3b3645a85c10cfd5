"""Receiving an upload's files: multipart bodies streamed straight to temporary files, or
loopback URLs fetched, each within the upload's quota and with a safe file name."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

import httpx
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from .envelope import ApiError, bad_request
from .handlers import is_loopback_host
from .upload_checks import FILE_KINDS, unsupported_type
from .upload_quota import UploadQuota, too_large

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FILES_PER_UPLOAD = 20
_CONTENT_TYPE_EXTENSIONS = {
    "video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm", "video/x-matroska": "mkv",
    "video/x-msvideo": "avi", "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif",
    "image/webp": "webp", "audio/mpeg": "mp3", "audio/wav": "wav", "audio/x-wav": "wav",
    "audio/mp4": "m4a", "audio/aac": "aac",
}  # fmt: skip


def sanitize_filename(name: str, fallback_ext: str = "") -> str:
    """A safe file name: no path components, no control characters, no leading dots."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/").split("/")[-1])
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip().lstrip(".").strip()
    name = re.sub(r'[<>:"|?*]', "_", name)[:180]
    if not name or name in {".", ".."}:
        name = "upload" + (f".{fallback_ext}" if fallback_ext else "")
    return name


def extension_of(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


@dataclass
class ReceivedFile:
    """One uploaded file written to a temporary path."""

    filename: str
    extension: str
    temp_path: Path
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)


class UploadSink:
    """Streaming multipart callbacks that write ``files`` parts straight to disk."""

    FILE_FIELDS = ("files", "file")

    def __init__(
        self,
        temp_dir: Path,
        max_bytes: int,
        max_files: int = MAX_FILES_PER_UPLOAD,
        quota: UploadQuota | None = None,
    ):
        self.temp_dir = temp_dir
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.quota = quota
        self.files: list[ReceivedFile] = []
        self._current: ReceivedFile | None = None
        self._handle: Any = None
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}

    @property
    def in_a_file(self) -> bool:
        """A file part has begun and not ended (a body that stops here was cut short)."""
        return self._current is not None

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers[name] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition = self._headers.get("content-disposition", b"").decode("latin-1")
        _, options = parse_options_header(disposition)
        field_name = options.get(b"name", b"").decode("latin-1")
        raw_name = options.get(b"filename")
        if field_name not in self.FILE_FIELDS or raw_name is None:
            return  # other form fields are ignored (never buffered)
        if len(self.files) >= self.max_files:
            raise bad_request(f"at most {self.max_files} files per upload")
        filename = sanitize_filename(_decode_filename(raw_name))
        ext = extension_of(filename)
        if ext not in FILE_KINDS:
            raise unsupported_type(f"{filename!r} has extension {ext or '(none)'!r}")
        temp = self.temp_dir / f".part-{secrets.token_hex(8)}"
        self._current = ReceivedFile(filename, ext, temp)
        self._handle = temp.open("wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        current = self._current
        if current is None:
            return
        current.size += end - start
        if current.size > self.max_bytes:
            raise too_large(self.max_bytes)
        if self.quota is not None:
            self.quota.charge(end - start)
        chunk = data[start:end]
        self._handle.write(chunk)
        current.sha256.update(chunk)

    def _part_end(self) -> None:
        if self._current is None:
            return
        self._handle.close()
        self.files.append(self._current)
        self._current, self._handle = None, None

    def discard(self) -> None:
        """Remove every temporary file (on any failure)."""
        if self._handle is not None:
            self._handle.close()
        leftovers = [f.temp_path for f in self.files]
        if self._current is not None:
            leftovers.append(self._current.temp_path)
        for path in leftovers:
            path.unlink(missing_ok=True)


def _decode_filename(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def receive_multipart(request: Request, sink: UploadSink) -> None:
    """Feed the body to a streaming multipart parser in worker threads, 1 MB at a time."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary or len(boundary) > 70:
        raise bad_request("multipart/form-data with a boundary expected")
    parser = MultipartParser(boundary, cast("MultipartCallbacks", sink.callbacks()))
    pending = bytearray()
    async for chunk in request.stream():
        pending += chunk
        if len(pending) >= 1024 * 1024:
            await run_in_threadpool(_feed, parser, bytes(pending))
            pending.clear()
    if pending:
        await run_in_threadpool(_feed, parser, bytes(pending))
    await run_in_threadpool(parser.finalize)
    if sink.in_a_file:
        raise bad_request("the multipart body ended in the middle of a file")


def _feed(parser: MultipartParser, data: bytes) -> None:
    try:
        parser.write(data)
    except ApiError:
        raise
    except Exception as exc:  # python-multipart's parse errors
        raise bad_request(f"malformed multipart body: {exc}") from exc


async def drain(request: Request, limit: int) -> None:
    """Read and drop the rest of a refused body so the client gets to read our answer."""
    seen = 0
    with contextlib.suppress(Exception):
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                return


def check_fetch_url(url: Any) -> str:
    """Allow only http(s) URLs on loopback hosts: the emulator is offline."""
    if not isinstance(url, str) or not url or len(url) > 2000:
        raise bad_request("each URL must be a non-empty string of at most 2000 characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in url):
        raise bad_request("URLs must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise bad_request(f"not a valid URL: {url[:200]!r}") from exc
    if parts.scheme not in ("http", "https"):
        raise bad_request(
            f"only http(s) URLs can be fetched, not {parts.scheme or 'a bare path'!r}: "
            "this emulator is offline"
        )
    offline = bad_request(
        "this emulator is offline: it only fetches URLs on loopback addresses "
        "(127.0.0.0/8, ::1, localhost)"
    )
    if not is_loopback_host(host):
        raise offline
    try:
        parsed_host = httpx.URL(url).host
    except (ValueError, httpx.InvalidURL) as exc:
        raise bad_request(f"not a valid URL: {url[:200]!r}") from exc
    if not is_loopback_host(parsed_host):
        raise offline
    return url


class UrlFetcher:
    """Downloads loopback URLs to temporary files with the upload size limit."""

    def __init__(self, temp_dir: Path, max_bytes: int, quota: UploadQuota | None = None) -> None:
        self.temp_dir = temp_dir
        self.max_bytes = max_bytes
        self.quota = quota
        self.files: list[ReceivedFile] = []

    async def fetch_all(self, urls: Iterable[str]) -> None:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=30) as http:
            for url in urls:
                await self._fetch(http, url)

    async def _fetch(self, http: httpx.AsyncClient, url: str) -> None:
        try:
            async with http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise bad_request(f"could not fetch {url[:200]}: HTTP {response.status_code}")
                received = self._new_file(url, response.headers.get("content-type", ""))
                self.files.append(received)
                with received.temp_path.open("wb") as handle:
                    async for chunk in response.aiter_bytes():
                        received.size += len(chunk)
                        if received.size > self.max_bytes:
                            raise too_large(self.max_bytes)
                        if self.quota is not None:
                            self.quota.charge(len(chunk))
                        handle.write(chunk)
                        received.sha256.update(chunk)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise bad_request(f"could not fetch {url[:200]}: {type(exc).__name__}") from exc

    def _new_file(self, url: str, content_type: str) -> ReceivedFile:
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        guessed = _CONTENT_TYPE_EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "")
        filename = sanitize_filename(name, guessed)
        ext = extension_of(filename)
        if ext not in FILE_KINDS and guessed:
            filename, ext = f"{filename}.{guessed}", guessed
        if ext not in FILE_KINDS:
            raise unsupported_type(f"{url[:200]} is not a supported media file")
        return ReceivedFile(filename, ext, self.temp_dir / f".part-{secrets.token_hex(8)}")

    def discard(self) -> None:
        for received in self.files:
            received.temp_path.unlink(missing_ok=True)
