"""Uploads (``/api/upload-video/…``): multipart files streamed to disk or loopback URLs
fetched, each checked against its extension and probed, then kept under ``media/uploads``."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

import httpx
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .envelope import ApiError, bad_request, envelope, read_json_object
from .handlers import Handlers, base_url_of, is_loopback_host
from .limits import MB, Limits
from .store import SessionRecord

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

    from .app import Emulator


MAX_FILES_PER_UPLOAD = 20
SUPPORTED_UPLOAD_TYPES = (
    "mp4", "mov", "avi", "webm", "mkv", "jpg", "png", "gif", "webp", "mp3", "wav", "m4a", "aac",
)  # fmt: skip
_FILE_TYPES = {
    **dict.fromkeys(("mp4", "mov", "avi", "webm", "mkv"), "video"),
    **dict.fromkeys(("jpg", "jpeg", "png", "gif", "webp"), "image"),
    **dict.fromkeys(("mp3", "wav", "m4a", "aac"), "audio"),
}
_IMAGE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP"}
_CONTENT_TYPE_EXTENSIONS = {
    "video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm", "video/x-matroska": "mkv",
    "video/x-msvideo": "avi", "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif",
    "image/webp": "webp", "audio/mpeg": "mp3", "audio/wav": "wav", "audio/x-wav": "wav",
    "audio/mp4": "m4a", "audio/aac": "aac",
}  # fmt: skip


class UploadHandlers(Handlers):
    """The upload endpoint: multipart files or JSON ``{"urls": [...]}``."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(emulator)
        self.in_flight = InFlightBytes()

    async def upload(self, request: Request) -> Response:
        info = self.authenticate(request, "upload")
        params = request.path_params
        session = self.owned_session(info, params["session_id"], params["user"])
        user_dir = self.emu.media_dir / "uploads" / info.user_id
        user_dir.mkdir(parents=True, exist_ok=True)
        content_type = request.headers.get("content-type", "").lower()
        quota = self._quota(info.user_id)
        try:
            if content_type.startswith("multipart/form-data"):
                received = await self._receive_files(request, user_dir, quota)
            elif content_type.startswith("application/json"):
                received = await self._fetch_urls(request, user_dir, quota)
            else:
                raise ApiError(
                    415, 415, "send multipart/form-data (field 'files') or JSON {\"urls\": [...]}"
                )
            files = await self._store_uploads(session, received, user_dir, base_url_of(request))
        finally:
            quota.close()  # after the kept files are in the store, so they are never uncounted
        return envelope({"files": files})

    def _quota(self, user_id: str) -> UploadQuota:
        limits: Limits = self.emu.config.limits
        return UploadQuota(
            user_id,
            self.in_flight,
            lambda: self.store.storage_used(user_id),
            limits.upload_request_bytes,
            limits.user_storage_bytes,
        )

    async def _receive_files(
        self, request: Request, user_dir: Path, quota: UploadQuota
    ) -> list[ReceivedFile]:
        limit = self.emu.config.max_upload_bytes
        sink = UploadSink(user_dir, limit, quota=quota)
        try:
            await receive_multipart(request, sink)
        except ApiError:
            sink.discard()
            await drain(request, 4 * limit)
            raise
        except BaseException:
            sink.discard()
            raise
        if not sink.files:
            raise bad_request("no files in the upload: send them in the multipart field 'files'")
        return sink.files

    async def _fetch_urls(
        self, request: Request, user_dir: Path, quota: UploadQuota
    ) -> list[ReceivedFile]:
        body = await read_json_object(request, self.emu.config.max_json_bytes)
        urls = body.get("urls")
        if body.get("source_type", "url") != "url":
            raise bad_request("source_type must be 'url'")
        if not isinstance(urls, list) or not urls or len(urls) > MAX_FILES_PER_UPLOAD:
            raise bad_request(f"'urls' must be a list of 1-{MAX_FILES_PER_UPLOAD} URLs")
        checked = [check_fetch_url(url) for url in urls]
        fetcher = UrlFetcher(user_dir, self.emu.config.max_upload_bytes, quota)
        try:
            await fetcher.fetch_all(checked)
        except BaseException:
            fetcher.discard()
            raise
        return fetcher.files

    async def _store_uploads(
        self, session: SessionRecord, received: list[ReceivedFile], user_dir: Path, base_url: str
    ) -> list[dict[str, Any]]:
        max_pixels = self.emu.config.limits.image_pixels
        try:
            probes = [
                await run_in_threadpool(
                    check_content, f.temp_path, f.extension, f.filename, max_pixels
                )
                for f in received
            ]
        except BaseException:
            for f in received:
                f.temp_path.unlink(missing_ok=True)
            raise
        views = []
        for item, probe in zip(received, probes, strict=True):
            views.append(self._keep_upload(session, item, probe, user_dir, base_url))
        self._add_video_infos(session.session_id, views)
        return views

    def _keep_upload(
        self,
        session: SessionRecord,
        item: ReceivedFile,
        probe: dict[str, Any],
        user_dir: Path,
        base_url: str,
    ) -> dict[str, Any]:
        upload_id = "up_" + secrets.token_hex(8)
        final = user_dir / upload_id / item.filename
        final.parent.mkdir()
        item.temp_path.replace(final)
        rel = final.relative_to(self.emu.media_dir).as_posix()
        record = {
            "id": upload_id,
            "session_id": session.session_id,
            "user_id": session.user_id,
            "filename": item.filename,
            "file_type": _FILE_TYPES[item.extension],
            "rel_path": rel,
            "size": item.size,
            "hash": item.sha256.hexdigest(),
            **probe,
        }
        self.store.add_upload(record)
        view = upload_view(self.emu, record, base_url)
        del view["path"]
        return view

    def _add_video_infos(self, session_id: str, views: list[dict[str, Any]]) -> None:
        state = self.store.latest_state(session_id)
        infos = state.get("video_infos")
        state["video_infos"] = [*(infos if isinstance(infos, list) else []), *views]
        self.store.save_state(session_id, state, "upload")


def upload_view(emulator: Emulator, row: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    path = emulator.media_dir / row["rel_path"]
    return {
        "filename": row["filename"],
        "file_type": row["file_type"],
        "path": path,
        "cdn_url": emulator.media_url(base_url, path),
        "width": row["width"],
        "height": row["height"],
        "duration": row["duration"],
        "fps": row["fps"],
        "hash": row["hash"],
    }


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


def unsupported_type(detail: str) -> ApiError:
    accepted = ", ".join(SUPPORTED_UPLOAD_TYPES)
    return ApiError(400, 4001, f"unsupported file type: {detail}. Accepted types: {accepted}")


def too_large(limit: int) -> ApiError:
    return ApiError(
        413, 4002, f"file too large: the limit is {limit} bytes ({limit // (1024 * 1024)} MB)"
    )


def _mb(size: int) -> str:
    return f"{size / MB:.0f} MB" if size >= MB else f"{size} bytes"


def request_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        4002,
        f"upload too large: one request may carry at most {_mb(limit)} in all; "
        "send the files in several requests",
    )


def storage_full(limit: int) -> ApiError:
    return ApiError(
        413,
        4002,
        f"storage full: this user's uploads and renders may take at most {_mb(limit)}; "
        "start the emulator with a larger NEMO_EMULATOR_USER_STORAGE_BYTES or a new data directory",
    )


def image_too_large(filename: str, max_pixels: int, size: tuple[int, int] | None) -> ApiError:
    dims = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    return ApiError(
        413,
        4002,
        f"image too large: {filename!r} has {dims}, over the limit of "
        f"{max_pixels / 1e6:.0f} megapixels; scale it down and upload it again",
    )


class InFlightBytes:
    """Bytes each user's unfinished upload requests have written so far (all requests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: dict[str, int] = {}

    def add(self, user_id: str, size: int) -> int:
        """Add ``size`` (negative to release) and return the user's new total."""
        with self._lock:
            total = self._bytes.get(user_id, 0) + size
            if total > 0:
                self._bytes[user_id] = total
            else:
                self._bytes.pop(user_id, None)
            return max(total, 0)


class UploadQuota:
    """What one upload request may still write: the per-request limit, and the user's storage
    limit counting what is stored and what the user's other uploads are writing right now.

    Charged chunk by chunk while the body streams, so a refusal comes before the bytes land.
    """

    _REFRESH_BYTES = 8 * MB  # re-read the stored total this often (renders finish meanwhile)

    def __init__(
        self,
        user_id: str,
        in_flight: InFlightBytes,
        stored: Callable[[], int],
        request_limit: int,
        user_limit: int,
    ) -> None:
        self.user_id = user_id
        self.in_flight = in_flight
        self.read_stored = stored
        self.request_limit = request_limit
        self.user_limit = user_limit
        self.received = 0
        self._stored = stored()
        self._refreshed_at = 0

    def charge(self, size: int) -> None:
        self.received += size
        writing = self.in_flight.add(self.user_id, size)
        if self.received > self.request_limit:
            raise request_too_large(self.request_limit)
        if self.received - self._refreshed_at >= self._REFRESH_BYTES:
            self._stored, self._refreshed_at = self.read_stored(), self.received
        if self._stored + writing > self.user_limit:
            raise storage_full(self.user_limit)

    def close(self) -> None:
        """Release this request's bytes from the in-flight count (once)."""
        self.in_flight.add(self.user_id, -self.received)
        self.received = 0


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
        if ext not in _FILE_TYPES:
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
    if sink._current is not None:
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


_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"\xff\xd8\xff", "jpg"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
)


def sniff(head: bytes) -> str | None:
    """The family a file's first bytes announce: png, jpg, gif, webp, riff-media, …, or None."""
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if head[:4] == b"RIFF":
        return {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}.get(head[8:12], "riff")
    if head[4:8] == b"ftyp":
        return "iso-media"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


_EXPECTED_FAMILIES = {
    "jpg": {"jpg"}, "jpeg": {"jpg"}, "png": {"png"}, "gif": {"gif"}, "webp": {"webp"},
    "mp4": {"iso-media"}, "mov": {"iso-media"}, "m4a": {"iso-media"}, "avi": {"avi"},
    "webm": {"matroska"}, "mkv": {"matroska"}, "wav": {"wav"}, "mp3": set(), "aac": set(),
}  # fmt: skip


def check_content(
    path: Path, ext: str, filename: str, max_pixels: int = Limits.image_pixels
) -> dict[str, Any]:
    """Refuse content that contradicts the extension, and images over ``max_pixels``; return
    probed width/height/duration/fps."""
    with path.open("rb") as handle:
        head = handle.read(32)
    if not head:
        raise unsupported_type(f"{filename!r} is empty (0 bytes); upload a real media file")
    family = sniff(head)
    expected = _EXPECTED_FAMILIES[ext]
    if _FILE_TYPES[ext] == "image" and family not in expected:
        raise unsupported_type(f"{filename!r} is not a valid .{ext} image ({family or 'unknown'})")
    if family is not None and family not in expected:
        raise unsupported_type(f"{filename!r} has extension .{ext} but its content is {family}")
    if _FILE_TYPES[ext] == "image":
        return _probe_image(path, ext, filename, max_pixels)
    return _probe_media(path)


def _probe_image(path: Path, ext: str, filename: str, max_pixels: int) -> dict[str, Any]:
    """Format and size from the header only: pixels are never decoded here."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
    except Image.DecompressionBombError as exc:  # over Pillow's own ceiling, size unknown
        raise image_too_large(filename, max_pixels, None) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise unsupported_type(f"{filename!r} is not a readable image") from exc
    if fmt != _IMAGE_FORMATS[ext]:
        raise unsupported_type(f"{filename!r} has extension .{ext} but contains {fmt}")
    if width * height > max_pixels:
        raise image_too_large(filename, max_pixels, (width, height))
    return {"width": width, "height": height, "duration": None, "fps": None}


def _probe_media(path: Path) -> dict[str, Any]:
    empty: dict[str, Any] = {"width": None, "height": None, "duration": None, "fps": None}
    try:
        from .media.render import probe

        info = probe(path)
    except Exception:  # unknown or damaged media: stored, just not described
        return empty
    return {
        "width": info.get("width"),
        "height": info.get("height"),
        "duration": info.get("duration_s"),
        "fps": info.get("fps"),
    }


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
        if ext not in _FILE_TYPES and guessed:
            filename, ext = f"{filename}.{guessed}", guessed
        if ext not in _FILE_TYPES:
            raise unsupported_type(f"{url[:200]} is not a supported media file")
        return ReceivedFile(filename, ext, self.temp_dir / f".part-{secrets.token_hex(8)}")

    def discard(self) -> None:
        for received in self.files:
            received.temp_path.unlink(missing_ok=True)
