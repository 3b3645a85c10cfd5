"""Record and replay: every exchange of a client kept in one readable cassette file, so a
notebook that talked to the cloud runs again offline, with the same answers and no credits.

:class:`CassetteTransport` is an httpx transport, plugged in where
:class:`~nemo_notebook._http.Connection` builds its client. Recording, it wraps the real
transport and writes each exchange once it is over; replaying, it answers alone (no network, no
server) and a request it holds no answer to raises :class:`CassetteMissError` at once.

The cassette (JSON, rewritten atomically after every finished exchange, so a crash leaves the
previous complete file)::

    {"format": "nemo-cassette", "version": 1, "recorded_with": "nemo_notebook 0.9.0",
     "exchanges": [
      {"seq": 1, "at": 0.0, "request": {"method": "POST", "url": ".../api/auth/anonymous-token"},
       "response": {"status": 200, "headers": {"content-type": "application/json"},
                    "json": {"code": 0, "data": {"token": "cassette-token-placeholder", ...}}}},
      {"seq": 4, "at": 0.21, "request": {"method": "POST", "url": ".../run_sse", "json": {...}},
       "response": {"status": 200, "headers": {"content-type": "text/event-stream"},
                    "sse": [[0.012, "data: {...}\\n\\n"], ...]}},
      {"seq": 9, "at": 2.4, "request": {"method": "POST", "url": ".../api/upload-video/...",
                   "multipart": [{"name": "files", "filename": "a.png", "sha256": "...", ...}]},
       ...},
      {"seq": 12, "at": 3.1, "request": {"method": "GET", "url": ".../media/r.mp4"},
       "response": {"status": 200, "headers": {"content-type": "video/mp4", ...},
                    "media": {"sha256": "...", "size": 81234, "file": "<sha256>.mp4"}}}]}

Media bodies (downloads, images, uploaded files) live once per content hash in the folder
``<cassette>.media/``; one larger than the cap is not stored (its replay fails, saying so). An
SSE stream keeps each network chunk with its arrival time after the request.

Scrubbed before anything is written: the request headers (``Authorization``, ``X-Client-Id``:
none is kept), any ``nmv_usr_`` token or bearer credential, the ``token`` and ``claim_token``
fields (a fixed placeholder the client accepts), ``ct=`` in URLs, the client id and every
secret :func:`~nemo_notebook._errors.remember_secret` knows. The user id stays: it grants
nothing (it is the ``bind`` of the public register link) and replayed errors name it.

Replay matches by method, path, query and body, in order: the same request recorded twice
answers with its recordings in turn. Fresh ids the client makes (``render_<uuid>``) are mapped
to their recorded counterparts as they are first seen, and answers carry the live ones.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import mimetypes
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from ._atomic_files import write_atomically
from ._config import CassetteSettings, SystemClock
from ._errors import CassetteMissError, ConfigError, remembered_secrets
from ._protocol import ANONYMOUS_TOKEN_PATH
from ._version import __version__

__all__ = [
    "PLACEHOLDER_CLAIM",
    "PLACEHOLDER_CLIENT_ID",
    "PLACEHOLDER_TOKEN",
    "CassetteTransport",
    "NoWaitClock",
    "media_folder",
]

FORMAT = "nemo-cassette"
VERSION = 1
PLACEHOLDER_TOKEN = "cassette-token-placeholder"  # passes the client's token checks
PLACEHOLDER_CLAIM = "cassette-claim-placeholder"
PLACEHOLDER_CLIENT_ID = "cassette-client-id"
REDACTED = "[redacted]"
_PLACEHOLDERS = {PLACEHOLDER_TOKEN, PLACEHOLDER_CLAIM, PLACEHOLDER_CLIENT_ID, REDACTED}
_SECRET_FIELDS = {
    "token": PLACEHOLDER_TOKEN,
    "access_token": PLACEHOLDER_TOKEN,
    "refresh_token": PLACEHOLDER_TOKEN,
    "claim_token": PLACEHOLDER_CLAIM,
}
_MIN_SECRET_CHARS = 8
# Ids the client makes fresh for each request; replay maps them to the recorded ones.
_FRESH_ID = re.compile(r"render_[0-9a-f]{32}")
_MEDIA_TYPES = ("image/", "video/", "audio/", "application/octet-stream")


def media_folder(cassette: Path) -> Path:
    """The folder of a cassette's media bodies: ``<cassette>.media/``."""
    return cassette.with_name(cassette.name + ".media")


class NoWaitClock(SystemClock):
    """The real clock without the waits: replaying, a back-off before the next poll only
    delays an answer that is already on file."""

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> None:
        return None


# --------------------------------------------------------------------------- scrubbing


class Scrubber:
    """Replaces what grants access: token shapes, ``ct=`` values, claim tokens and every
    secret it learnt (from request headers and answers) or the process remembers."""

    _SHAPES = (
        rb"(?P<token>nmv_usr_[A-Za-z0-9_\-]+)",
        rb"(?P<bearer>(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,})",
        rb"(?P<ct>(?<=[?&]ct=)[^&#\s\"'\\<>]+)",
        rb"(?P<claim>clm_[A-Za-z0-9_\-]{6,})",
    )
    _SHAPE_REPLACEMENTS: ClassVar[dict[str, bytes]] = {
        "token": PLACEHOLDER_TOKEN.encode(),
        "bearer": b"Bearer " + PLACEHOLDER_TOKEN.encode(),
        "ct": PLACEHOLDER_CLAIM.encode(),
        "claim": PLACEHOLDER_CLAIM.encode(),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._learnt: dict[bytes, bytes] = {}
        self._compiled: tuple[frozenset[bytes], re.Pattern[bytes]] | None = None

    def learn(self, value: str | None, replacement: str = REDACTED) -> None:
        if value and len(value) >= _MIN_SECRET_CHARS and value not in _PLACEHOLDERS:
            with self._lock:
                self._learnt[value.encode()] = replacement.encode()

    def learn_from_headers(self, headers: httpx.Headers) -> None:
        authorization = headers.get("authorization", "")
        self.learn(authorization.partition(" ")[2].strip() or authorization, PLACEHOLDER_TOKEN)
        self.learn(headers.get("x-client-id"), PLACEHOLDER_CLIENT_ID)

    def _secrets(self) -> dict[bytes, bytes]:
        with self._lock:
            secrets = dict(self._learnt)
        for value in remembered_secrets():
            if value not in _PLACEHOLDERS:
                secrets.setdefault(value.encode(), REDACTED.encode())
        return secrets

    def _pattern(self, secrets: dict[bytes, bytes]) -> re.Pattern[bytes]:
        key = frozenset(secrets)
        compiled = self._compiled
        if compiled is None or compiled[0] != key:
            literals = b"|".join(re.escape(s) for s in sorted(key, key=len, reverse=True))
            shapes = ([b"(?P<secret>" + literals + b")"] if literals else []) + list(self._SHAPES)
            compiled = (key, re.compile(b"|".join(shapes)))
            self._compiled = compiled
        return compiled[1]

    def spans(self, data: bytes) -> list[tuple[int, int]]:
        return [match.span() for match in self._pattern(self._secrets()).finditer(data)]

    def scrub_bytes(self, data: bytes) -> bytes:
        secrets = self._secrets()

        def replace(match: re.Match[bytes]) -> bytes:
            kind = match.lastgroup or ""
            if kind == "secret":
                return secrets.get(match.group(), REDACTED.encode())
            return self._SHAPE_REPLACEMENTS[kind]

        return self._pattern(secrets).sub(replace, data)

    def scrub_text(self, text: str) -> str:
        return self.scrub_bytes(text.encode("utf-8", "surrogatepass")).decode(
            "utf-8", "surrogatepass"
        )

    def scrub_json(self, value: Any) -> Any:
        """``value`` with secret fields replaced by placeholders (their values learnt, so they
        are scrubbed wherever else they appear) and every string scrubbed."""
        if isinstance(value, dict):
            for name, placeholder in _SECRET_FIELDS.items():
                if isinstance(value.get(name), str):
                    self.learn(value[name], placeholder)
            return {
                self.scrub_text(str(k)): (
                    _SECRET_FIELDS[k]
                    if k in _SECRET_FIELDS and isinstance(v, str)
                    else self.scrub_json(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.scrub_json(item) for item in value]
        if isinstance(value, str):
            return self.scrub_text(value)
        return value

    def scrub_chunks(self, chunks: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
        """Chunks of a stream scrubbed; chunks a secret straddles are joined first (at the
        later arrival time), so no part of one survives a chunk boundary."""
        joined = b"".join(data for _, data in chunks)
        spans = self.spans(joined)
        merged: list[tuple[float, bytes]] = []
        offset = 0
        for t, data in chunks:
            boundary_inside = any(start < offset < end for start, end in spans)
            if merged and boundary_inside:
                merged[-1] = (t, merged[-1][1] + data)
            else:
                merged.append((t, data))
            offset += len(data)
        return [(t, self.scrub_bytes(data)) for t, data in merged]


# --------------------------------------------------------------------------- media files


class MediaStore:
    """Bodies by content hash in ``<cassette>.media/``, each once; larger than ``cap`` bytes
    not at all."""

    def __init__(self, folder: Path, cap: int) -> None:
        self.folder = folder
        self.cap = cap

    def put(self, data: bytes | None, sha256: str, size: int, ext: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"sha256": sha256, "size": size}
        if data is None or size > self.cap:
            entry["omitted"] = f"larger than the cap of {self.cap} bytes"
            return entry
        name = sha256 + (ext if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", ext) else "")
        target = self.folder / name
        if not target.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomically(target, lambda handle: handle.write(data))
        entry["file"] = name
        return entry


def describe_request(
    request: httpx.Request, scrubber: Scrubber, media: MediaStore | None
) -> dict[str, Any]:
    """The scrubbed record of a request: method, URL and body (JSON; multipart files by hash,
    stored in ``media`` when given)."""
    body = request.read()
    entry: dict[str, Any] = {"method": request.method, "url": scrubber.scrub_text(str(request.url))}
    if not body:
        return entry
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        parts = _multipart_parts(body, content_type)
        if parts is not None:
            entry["multipart"] = [_describe_part(h, data, scrubber, media) for h, data in parts]
            return entry
    with contextlib.suppress(ValueError, RecursionError):
        if "json" in content_type:
            entry["json"] = scrubber.scrub_json(json.loads(body))
            return entry
    digest = hashlib.sha256(body).hexdigest()
    if media is not None:
        entry["body"] = media.put(body, digest, len(body), _extension(content_type, ""))
    else:
        entry["body"] = {"sha256": digest, "size": len(body)}
    return entry


def _multipart_parts(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]] | None:
    found = re.search(r'boundary="?([^";]+)"?', content_type)
    if found is None:
        return None
    delimiter = b"--" + found.group(1).encode()
    parts = []
    for piece in body.split(delimiter)[1:]:
        if piece.startswith(b"--"):
            break
        piece = piece.removeprefix(b"\r\n")
        head, _, data = piece.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, data.removesuffix(b"\r\n")))
    return parts


def _describe_part(
    headers: dict[str, str], data: bytes, scrubber: Scrubber, media: MediaStore | None
) -> dict[str, Any]:
    disposition = headers.get("content-disposition", "")
    name = re.search(r'(?:^|;)\s*name="([^"]*)"', disposition)
    filename = re.search(r'filename="([^"]*)"', disposition)
    part: dict[str, Any] = {"name": name.group(1) if name else ""}
    if filename is None:
        part["value"] = scrubber.scrub_text(data.decode("utf-8", "replace"))
        return part
    part["filename"] = scrubber.scrub_text(filename.group(1))
    part["content_type"] = headers.get("content-type", "")
    digest = hashlib.sha256(data).hexdigest()
    ext = _extension(part["content_type"], part["filename"])
    stored = media.put(data, digest, len(data), ext) if media else {"sha256": digest}
    part.update(stored, size=len(data))
    return part


def _extension(content_type: str, filename: str) -> str:
    suffix = Path(filename).suffix
    if suffix:
        return suffix.lower()
    return mimetypes.guess_extension(content_type.partition(";")[0].strip()) or ""


def match_key(entry: dict[str, Any]) -> str:
    """What replay matches a request by: method, path, query and body (files by hash)."""
    url = urlsplit(entry["url"])
    body: dict[str, Any] = {}
    for name in ("json", "body", "multipart"):
        if name in entry:
            body[name] = entry[name]
    if "multipart" in body:
        body["multipart"] = [
            {k: v for k, v in part.items() if k not in ("file", "omitted")}
            for part in body["multipart"]
        ]
    if "body" in body:
        body["body"] = body["body"].get("sha256")
    query = f"?{url.query}" if url.query else ""
    return f"{entry['method']} {url.path}{query} {json.dumps(body, sort_keys=True)}"


# --------------------------------------------------------------------------- the transport


class CassetteTransport(httpx.BaseTransport):
    """Records every exchange through ``inner`` into the cassette, or answers alone from it.

    ``inner`` is the real transport when recording (default: httpx's own, proxies from the
    environment included); replaying never uses it.
    """

    def __init__(self, settings: CassetteSettings, inner: httpx.BaseTransport | None = None):
        self.settings = settings
        self.replaying = settings.replaying
        self._recorder: _Recorder | None = None
        self._player: _Player | None = None
        if self.replaying:
            self._player = _Player(settings)
        else:
            self._recorder = _Recorder(settings, inner or _ClientTransport())

    def __repr__(self) -> str:
        mode = "replaying" if self.replaying else "recording"
        return f"<CassetteTransport {mode} {str(self.settings.path)!r}>"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._player is not None:
            return self._player.answer(request)
        assert self._recorder is not None
        return self._recorder.record(request)

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()


class _ClientTransport(httpx.BaseTransport):
    """httpx's default sending (with the environment's proxies and certificates), as a
    transport a recorder can wrap."""

    def __init__(self) -> None:
        self._client = httpx.Client()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._client.send(request, stream=True)

    def close(self) -> None:
        self._client.close()


# --------------------------------------------------------------------------- recording


class _Recorder:
    def __init__(self, settings: CassetteSettings, inner: httpx.BaseTransport) -> None:
        self.path = settings.path
        self.media = MediaStore(media_folder(settings.path), settings.media_bytes)
        self.scrubber = Scrubber()
        self._inner = inner
        self._lock = threading.Lock()
        self._seq = 0
        self._exchanges: list[dict[str, Any]] = []
        self._started = time.monotonic()

    def record(self, request: httpx.Request) -> httpx.Response:
        self.scrubber.learn_from_headers(request.headers)
        with self._lock:
            self._seq += 1
            seq = self._seq
        started = time.monotonic()
        entry = describe_request(request, self.scrubber, self.media)
        head = {"seq": seq, "at": round(started - self._started, 3), "request": entry}
        request.headers["Accept-Encoding"] = "identity"  # bodies stored as they are read
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as exc:
            self._finish({**head, "response": {"error": type(exc).__name__}})
            raise
        capture = _Capture(response, started, self.media.cap)
        stream = _RecordingStream(
            response, capture, lambda: self._finish({**head, "response": self._answer(capture)})
        )
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=stream,
            extensions=response.extensions,
        )

    def _answer(self, capture: _Capture) -> dict[str, Any]:
        content_type = capture.headers.get("content-type", "")
        answer: dict[str, Any] = {"status": capture.status, "headers": capture.kept_headers()}
        if capture.error is not None:
            answer["stream_error"] = capture.error
        elif not capture.complete:
            answer["partial"] = True  # the client stopped reading here
        if capture.sse:
            answer["sse"] = [
                [round(t, 4), _chunk_json(data)]
                for t, data in self.scrubber.scrub_chunks(capture.chunks)
            ]
            return answer
        body = capture.body()
        if body is None or _is_media(content_type, body):
            ext = _extension(content_type, "")
            answer["media"] = self.media.put(body, capture.sha256(), capture.size, ext)
            return answer
        text = body.decode("utf-8")
        try:
            answer["json"] = self.scrubber.scrub_json(json.loads(text))
        except (ValueError, RecursionError):
            answer["text"] = self.scrubber.scrub_text(text)
        return answer

    def _finish(self, exchange: dict[str, Any]) -> None:
        with self._lock:
            self._exchanges.append(exchange)
            self._exchanges.sort(key=lambda item: item["seq"])
            document = {
                "format": FORMAT,
                "version": VERSION,
                "recorded_with": f"nemo_notebook {__version__}",
                "scrubbed": "tokens, claim tokens, the client id and request headers",
                "exchanges": self._exchanges,
            }
            data = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, lambda handle: handle.write(data.encode("utf-8")))

    def close(self) -> None:
        self._inner.close()


class _Capture:
    """What a recorded response brought: chunks with their arrival times (a stream), or the
    body up to the media cap (then only its hash and size)."""

    def __init__(self, response: httpx.Response, started: float, cap: int) -> None:
        self.status = response.status_code
        self.headers = response.headers
        content_type = self.headers.get("content-type", "").lower()
        self.sse = "text/event-stream" in content_type
        # Only media bodies are capped: API answers are bounded by the client's own limits.
        self._capped = content_type.startswith(_MEDIA_TYPES)
        self.chunks: list[tuple[float, bytes]] = []
        self.size = 0
        self.complete = False
        self.error: str | None = None
        self._started = started
        self._cap = cap
        self._hash = hashlib.sha256()
        self._over_cap = False

    def take(self, data: bytes) -> None:
        self.size += len(data)
        self._hash.update(data)
        if not self._over_cap:
            self.chunks.append((time.monotonic() - self._started, data))
        if self._capped and self.size > self._cap and not self._over_cap:
            self._over_cap = True
            self.chunks.clear()

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def body(self) -> bytes | None:
        """The whole body, decoded; ``None`` past the cap."""
        if self._over_cap:
            return None
        raw = b"".join(data for _, data in self.chunks)
        encoding = self.headers.get("content-encoding", "identity").lower()
        if encoding in ("", "identity"):
            return raw
        with contextlib.suppress(httpx.DecodingError):
            return httpx.Response(200, headers={"content-encoding": encoding}, content=raw).content
        return raw

    def kept_headers(self) -> dict[str, str]:
        kept = {"content-type": self.headers.get("content-type")}
        if not self.sse:
            kept["content-length"] = str(self.size)
        return {name: value for name, value in kept.items() if value}


class _RecordingStream(httpx.SyncByteStream):
    def __init__(
        self, response: httpx.Response, capture: _Capture, on_done: Callable[[], None]
    ) -> None:
        self._response = response
        self._capture = capture
        self._on_done = on_done
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            stream = self._response.stream
            assert isinstance(stream, httpx.SyncByteStream)
            for chunk in stream:
                self._capture.take(chunk)
                yield chunk
        except Exception as exc:
            self._capture.error = type(exc).__name__
            raise
        self._capture.complete = True

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            if not self._done:
                self._done = True
                self._on_done()


def _chunk_json(data: bytes) -> str | dict[str, str]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


def _chunk_bytes(value: Any) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value.get("b64", ""))
    return str(value).encode("utf-8")


def _is_media(content_type: str, body: bytes) -> bool:
    if content_type.lower().startswith(_MEDIA_TYPES):
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# --------------------------------------------------------------------------- replaying


class _Player:
    def __init__(self, settings: CassetteSettings) -> None:
        self.settings = settings
        self.path = settings.path
        self.folder = media_folder(settings.path)
        self.scrubber = Scrubber()
        self._lock = threading.Lock()
        self._queues: dict[str, deque[dict[str, Any]]] = {}
        self._recorded_ids: list[str] = []
        self._live_to_recorded: dict[str, str] = {}
        for exchange in _load(settings.path):
            key = match_key(exchange["request"])
            self._queues.setdefault(key, deque()).append(exchange)
            for found in _FRESH_ID.findall(key):
                if found not in self._recorded_ids:
                    self._recorded_ids.append(found)

    def answer(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        self.scrubber.learn_from_headers(request.headers)
        entry = describe_request(request, self.scrubber, None)
        with self._lock:
            key = self._to_recorded(match_key(entry))
            queue = self._queues.get(key)
            exchange = queue.popleft() if queue else None
            live = {recorded: live for live, recorded in self._live_to_recorded.items()}
        path = urlsplit(entry["url"]).path
        if exchange is None:
            if path == ANONYMOUS_TOKEN_PATH:  # recorded with a given or cached token
                return _placeholder_token_answer()
            raise CassetteMissError(self._miss_text(entry, path, queue is not None))
        return self._respond(exchange["response"], request.method, path, started, live)

    def _to_recorded(self, key: str) -> str:
        """``key`` with each fresh id replaced by its recorded counterpart, mapping an id not
        seen before to the next recorded one (or itself, when it was recorded)."""
        for found in _FRESH_ID.findall(key):
            if found not in self._live_to_recorded:
                taken = set(self._live_to_recorded.values())
                free = [rid for rid in self._recorded_ids if rid not in taken]
                self._live_to_recorded[found] = found if found in free else (free or [found])[0]
        return _FRESH_ID.sub(lambda m: self._live_to_recorded.get(m.group(), m.group()), key)

    def _respond(
        self,
        answer: dict[str, Any],
        method: str,
        path: str,
        started: float,
        live_ids: dict[str, str],
    ) -> httpx.Response:
        if "error" in answer:
            error = getattr(httpx, str(answer["error"]), None)
            if not (isinstance(error, type) and issubclass(error, httpx.TransportError)):
                error = httpx.ConnectError
            raise error(f"recorded in the cassette: {answer['error']}")
        status = int(answer.get("status", 200))
        headers = {"content-type": answer.get("headers", {}).get("content-type", "")}
        headers = {name: value for name, value in headers.items() if value}
        broke_off = answer.get("stream_error")
        if "sse" in answer:
            chunks = [(float(t), _chunk_bytes(data)) for t, data in answer["sse"]]
            real = self.settings.timing == "real"
            replayed = _ReplayStream(chunks, started if real else None, broke_off)
            return httpx.Response(status, headers=headers, stream=replayed)
        if "media" in answer:
            file = self._media_file(answer["media"], method, path)
            headers["content-length"] = str(file.stat().st_size)
            stream = _FileStream(file, broke_off)
            return httpx.Response(status, headers=headers, stream=stream)
        if "json" in answer:
            text = json.dumps(answer["json"], ensure_ascii=False)
        else:
            text = str(answer.get("text", ""))
        for recorded, live in live_ids.items():
            text = text.replace(recorded, live)
        return httpx.Response(status, headers=headers, content=text.encode("utf-8"))

    def _media_file(self, media: dict[str, Any], method: str, path: str) -> Path:
        if "file" not in media:
            raise CassetteMissError(
                f"The cassette {self.path} did not store the body of {method} {path} "
                f"({media.get('size', '?')} bytes, {media.get('omitted', 'not stored')}). "
                f"{self._record_again()}, with cassette_media_bytes above its size."
            )
        file = self.folder / str(media["file"])
        if not file.is_file():
            raise CassetteMissError(
                f"The cassette's media file {file} for {method} {path} is missing; "
                f"copy the folder {self.folder.name} beside the cassette, or "
                f"{self._record_again().lower()}."
            )
        return file

    def _miss_text(self, entry: dict[str, Any], path: str, recorded: bool) -> str:
        why = "no more answers" if recorded else "no answer"
        message = _chat_message(entry)
        what = f'the message "{message}"' if message is not None else f"{entry['method']} {path}"
        return (
            f"The cassette {self.path} holds {why} to {what}; a replay never goes to the "
            f"network. {self._record_again()}."
        )

    def _record_again(self) -> str:
        return (
            "Record it again: `%nemo connect --record FILE` in a notebook, "
            "cassette_mode='record' or NEMO_CASSETTE_MODE=record in Python"
        )


def _chat_message(entry: dict[str, Any]) -> str | None:
    """The text of a chat turn's request (``new_message.parts[].text``), shortened."""
    body = entry.get("json")
    message = body.get("new_message") if isinstance(body, dict) else None
    parts = message.get("parts") if isinstance(message, dict) else None
    if not isinstance(parts, list):
        return None
    text = " ".join(str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p)
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:79] + "…"


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"There is no cassette {path} to replay; record one first (`%nemo connect "
            "--record FILE`, cassette_mode='record' or 'once', or NEMO_CASSETTE_MODE=record)."
        ) from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise ConfigError(f"The cassette {path} cannot be read ({exc}); record it again.") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a nemo_notebook cassette; record it again.")
    if document.get("version") != VERSION:
        raise ConfigError(
            f"The cassette {path} has version {document.get('version')!r}; this nemo_notebook "
            f"reads version {VERSION}. Record it again."
        )
    exchanges = document.get("exchanges")
    if not isinstance(exchanges, list):
        raise ConfigError(f"The cassette {path} holds no exchanges; record it again.")
    return sorted(
        (item for item in exchanges if isinstance(item, dict) and "request" in item),
        key=lambda item: item.get("seq", 0),
    )


def _placeholder_token_answer() -> httpx.Response:
    expires = datetime.now(timezone.utc) + timedelta(days=7)
    body = {
        "code": 0,
        "message": "ok",
        "data": {"token": PLACEHOLDER_TOKEN, "expires_at": expires.isoformat()},
    }
    return httpx.Response(200, json=body)


class _ReplayStream(httpx.SyncByteStream):
    """Recorded chunks, at once or (``started`` given) at their recorded times after it."""

    def __init__(
        self, chunks: list[tuple[float, bytes]], started: float | None, broke_off: str | None
    ) -> None:
        self._chunks = chunks
        self._started = started
        self._broke_off = broke_off
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        for t, data in self._chunks:
            if self._started is not None:
                self._closed.wait(max(0.0, self._started + t - time.monotonic()))
            if self._closed.is_set():
                return
            yield data
        if self._broke_off:
            raise httpx.ReadError(f"recorded in the cassette: {self._broke_off}")

    def close(self) -> None:
        self._closed.set()


class _FileStream(httpx.SyncByteStream):
    def __init__(self, path: Path, broke_off: str | None) -> None:
        self._path = path
        self._broke_off = broke_off

    def __iter__(self) -> Iterator[bytes]:
        with self._path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk
        if self._broke_off:
            raise httpx.ReadError(f"recorded in the cassette: {self._broke_off}")
