"""Hostile input: arbitrary SSE bytes into the client, hostile uploads, crafted drafts and
downloads that try to escape their folder or stop half way."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from _reliability_support import (  # noqa: F401  (leak_guard is an autouse fixture)
    ATTRIBUTION,
    FAST,
    GENERATE,
    leak_guard,
    logged,
    make_client,
    record,
    temp_files,
    wait_until,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nemo_notebook import (
    APIError,
    FileTooLargeError,
    NemoClient,
    NemoError,
    Session,
    Timing,
    TransportError,
    UnsupportedFileError,
)
from nemo_notebook.emulator.media import render

pytestmark = pytest.mark.timeout(180)

MB = 1024 * 1024
LIMIT = 200 * MB
TOKEN = "nmv_usr_" + "H" * 43
API = "http://backend.test"
STATE = {"session_id": "1", "task_id": "t", "task_name": "p", "state": {"draft": {"t": []}}}
HOSTILE_TIMING = Timing(
    still_working_every=0.5,
    heartbeat_timeout=3,
    turn_cap=6,
    recovery_first_wait=0,
    recovery_next_wait=0,
    recovery_max_unchanged=2,
    rate_limit_wait=0,
)


def png_bytes(width: int = 32, height: int = 24, fmt: str = "PNG") -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, fmt)
    return buffer.getvalue()


# -- (a) any bytes on the SSE stream ----------------------------------------------------------


class Chunks(httpx.SyncByteStream):
    """A response body from a list of chunks, optionally broken off after the last one."""

    def __init__(self, chunks: list[bytes], break_off: bool) -> None:
        self.chunks, self.break_off = chunks, break_off

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.break_off:
            raise httpx.ReadError("connection reset by peer")


def sse_client(chunks: list[bytes], break_off: bool = False) -> NemoClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/run_sse":
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, stream=Chunks(chunks, break_off))
        return httpx.Response(200, json={"code": 0, "message": "ok", "data": STATE})

    transport = httpx.MockTransport(handler)
    return NemoClient(API, TOKEN, transport=transport, timing=HOSTILE_TIMING)


def run_turn(chunks: list[bytes], break_off: bool = False) -> tuple[int, str]:
    """Stream one turn; returns (events, outcome). Only NemoError subclasses may escape."""
    events, outcome = 0, "reply"
    started = time.monotonic()
    with sse_client(chunks, break_off) as client:
        try:
            with client.session("1").stream("hi") as turn:
                for _ in turn:
                    events += 1
                    assert events < 1_000_000
        except NemoError as exc:
            outcome = type(exc).__name__
    assert time.monotonic() - started < 10, "the turn did not end in time"
    return events, outcome


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
part = st.fixed_dictionaries(
    {},
    optional={
        "text": json_values,
        "thought": json_values,
        "functionCall": st.fixed_dictionaries(
            {}, optional={"id": json_values, "name": json_values, "args": json_values}
        ),
        "functionResponse": st.fixed_dictionaries(
            {}, optional={"id": json_values, "name": json_values, "response": json_values}
        ),
    },
)
adk_event = st.fixed_dictionaries(
    {},
    optional={
        "content": st.fixed_dictionaries(
            {}, optional={"role": json_values, "parts": st.lists(part, max_size=3) | json_values}
        ),
        "partial": json_values,
        "turnComplete": json_values,
        "actions": st.fixed_dictionaries({}, optional={"stateDelta": json_values}),
        "state_delta": json_values,
        "errorCode": json_values,
        "errorMessage": json_values,
        "error": json_values,
        "type": st.sampled_from(["text", "tool_call", "tool_result", "heartbeat", "x"]),
        "content_text": json_values,
        "name": json_values,
        "args": json_values,
        "result": json_values,
    },
)
payload = st.one_of(
    adk_event.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=80),
    adk_event.map(lambda e: json.dumps(e)[: len(json.dumps(e)) // 2]),  # truncated JSON
)
field_line = st.one_of(
    payload.map(lambda p: b"data: " + p.encode("utf-8", "surrogatepass")),
    payload.map(lambda p: b"data:" + p.encode("utf-8", "surrogatepass")),
    st.binary(max_size=60).map(lambda b: b"data: " + b),  # invalid UTF-8 too
    st.sampled_from([b": keep-alive", b"event: message", b"id: 7", b"retry: x", b"", b"data"]),
    st.binary(max_size=40),
)
separator = st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n", b"\r\n\r\n"])


@st.composite
def sse_bodies(draw: st.DrawFn) -> list[bytes]:
    lines = draw(st.lists(st.tuples(field_line, separator), max_size=12))
    body = b"".join(line + sep for line, sep in lines)
    cuts = sorted(draw(st.lists(st.integers(0, max(len(body), 1)), max_size=6)))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(chunks=sse_bodies(), break_off=st.booleans())
def test_any_sse_stream_ends_in_a_reply_or_a_nemo_error(chunks: list[bytes], break_off: bool):
    run_turn(chunks, break_off)


DEEP = 50_000


def text_event(text: bytes, partial: bool = False) -> bytes:
    flag = b'"partial":true,' if partial else b""
    return b"data: {" + flag + b'"content":{"parts":[{"text":"' + text + b'"}]}}\n\n'


def deep(opening: bytes, closing: bytes, depth: int, core: bytes = b"") -> bytes:
    return opening * depth + core + closing * depth


EXTREME_STREAMS = [
    ("huge data line", [b"data: " + b"x" * (8 * MB) + b"\n\n"]),
    ("big text event", [text_event(b"y" * 50_000)]),
    ("big text of sentences", [text_event(b"Go. " * 65_536)]),
    ("4 MB of partial chunks", [text_event(b"y" * 4000, partial=True)] * 1000),
    ("huge line, no newline", [b"data: " + b"z" * (8 * MB)]),
    ("100k tiny events", [b'data: {"type":"heartbeat"}\n\n' * 100_000]),
    ("100k comments", [b": ping\n\n" * 100_000]),
    ("deep array", [b"data: " + deep(b"[", b"]", DEEP) + b"\n\n"]),
    ("deep open array", [b"data: " + b"[" * DEEP + b"\n\n"]),
    (
        "deep state delta",
        [b'data: {"actions":{"stateDelta":' + deep(b'{"a":', b"}", 900, b"1") + b"}}\n\n"],
    ),
    (
        "deep tool args",
        [
            b'data: {"content":{"parts":[{"functionCall":{"name":"x","args":'
            + deep(b"[", b"]", 900)
            + b"}}]}}\n\n"
        ],
    ),
    ("invalid utf-8 text", [text_event(b"\xff\xfe\xc3")]),
    ("nul bytes", [b"data: \x00\x00\n\n", b"\x00" * 1000]),
    ("lone surrogate escape", [text_event(b"\\ud800")]),
]


@pytest.mark.parametrize(("name", "chunks"), EXTREME_STREAMS)
def test_extreme_streams_end_cleanly(
    name: str, chunks: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    started = time.monotonic()
    events, outcome = run_turn(chunks)
    _, outcome_broken = run_turn(chunks, break_off=True)
    record(
        tmp_path_factory,
        f"extreme_stream_{name.replace(' ', '_')}",
        bytes=sum(map(len, chunks)),
        events=events,
        outcome=outcome,
        outcome_when_broken=outcome_broken,
        seconds=round(time.monotonic() - started, 2),
    )


HUGE_TEXT_TURN = """
import httpx
from nemo_notebook import NemoClient
body = b'data: {"content":{"parts":[{"text":"' + b"y" * (1024 * 1024) + b'"}]}}\\n\\n'
def handler(request):
    if request.url.path == "/run_sse":
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    state = {"session_id": "1", "state": {"draft": {"t": []}}}
    return httpx.Response(200, json={"code": 0, "data": state})
client = NemoClient("http://backend.test", "nmv_usr_" + "H" * 43,
                    transport=httpx.MockTransport(handler))
print(len(client.session("1").send("hi").text))
"""


def test_one_big_text_event_is_shown_in_bounded_time(tmp_path: Path) -> None:
    import subprocess
    import sys

    # In a child process, so that the slow case can be stopped (a thread could not be).
    try:
        result = subprocess.run(
            [sys.executable, "-c", HUGE_TEXT_TURN], capture_output=True, text=True, timeout=6
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a 1 MB text event took more than 6 s")
    assert result.stdout.strip() == str(MB), result.stderr


# -- (c) uploads ------------------------------------------------------------------------------


@pytest.fixture
def owner(emulator: Any, tmp_path: Path) -> Iterator[tuple[NemoClient, Session]]:
    emulator.faults.reset()
    with make_client(emulator.url, tmp_path) as client:
        yield client, client.create_session()


def upload_posts(handle: Any, session: Session, expected: int = 0) -> int:
    return logged(handle, "POST", f"/api/upload-video/nemo_agent/me/{session.id}", expected)


def uploads_dir(handle: Any, client: NemoClient) -> Path:
    return Path(handle.data_dir) / "media" / "uploads" / str(client.user_id)


def stored_files(handle: Any, client: NemoClient) -> list[Path]:
    folder = uploads_dir(handle, client)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize(
    ("name", "content", "refused_before_sending"),
    [
        ("photo.png", png_bytes(fmt="JPEG"), False),
        ("photo.jpg", png_bytes(), False),
        ("clip.mp4", png_bytes(), False),
        ("song.wav", png_bytes(fmt="GIF"), False),
        ("notes.txt.png", b"plain text pretending", False),
        ("empty.png", b"", True),
        ("tool.exe", b"MZ" + b"\0" * 64, True),
        ("photo.png.exe", png_bytes(), True),
        ("noextension", png_bytes(), True),
    ],
)
def test_uploads_whose_content_contradicts_the_name_are_refused(
    emulator: Any,
    owner: tuple[NemoClient, Session],
    tmp_path: Path,
    name: str,
    content: bytes,
    refused_before_sending: bool,
) -> None:
    client, session = owner
    path = tmp_path / name
    path.write_bytes(content)
    posts = upload_posts(emulator, session)
    with pytest.raises(UnsupportedFileError) as caught:
        session.upload(path)
    assert caught.value.code == 4001
    assert "Accepted" in str(caught.value) or "Accepted types" in str(caught.value)
    expected = posts + (0 if refused_before_sending else 1)
    assert upload_posts(emulator, session, expected) == expected
    assert stored_files(emulator, client) == []
    assert temp_files(Path(emulator.data_dir) / "media" / "uploads") == []


@pytest.mark.parametrize("name", ["empty.mp4", "empty.mp3"])
def test_a_zero_byte_media_upload_is_refused(
    owner: tuple[NemoClient, Session], tmp_path: Path, name: str
) -> None:
    _, session = owner
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(UnsupportedFileError):
        session.upload(tmp_path / name)


def sparse_mp4(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        handle.write(b"\x00\x00\x00\x18ftypmp42")
        handle.truncate(size)
    return path


class Zeros(httpx.SyncByteStream):
    """A multipart body of ``size`` zero bytes in one file part, generated on the fly."""

    boundary = "reliabilityboundary"

    def __init__(self, size: int, name: str = "over.mp4") -> None:
        self.size = size
        self.head = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{name}"\r\nContent-Type: video/mp4\r\n\r\n'
        ).encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def length(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head + b"\x00\x00\x00\x18ftypmp42"
        left = self.size - 12
        block = b"\0" * MB
        while left > 0:
            yield block[: min(left, MB)]
            left -= MB
        yield self.tail


def auth_headers(client: NemoClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.connection.current_token()}", **ATTRIBUTION}


@pytest.mark.slow
def test_exactly_200_mb_is_accepted_and_one_byte_more_refused_on_both_sides(
    emulator: Any,
    owner: tuple[NemoClient, Session],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    client, session = owner
    exact = sparse_mp4(tmp_path / "exact.mp4", LIMIT)
    started = time.monotonic()
    (uploaded,) = session.upload(exact)
    upload_s = time.monotonic() - started
    assert uploaded.filename == "exact.mp4" and uploaded.file_type == "video"
    (stored,) = stored_files(emulator, client)
    assert stored.stat().st_size == LIMIT
    stored.unlink()
    exact.unlink()

    over = sparse_mp4(tmp_path / "over.mp4", LIMIT + 1)
    posts = upload_posts(emulator, session)
    with pytest.raises(FileTooLargeError, match="over the 200 MB limit") as caught:
        session.upload(over)
    assert caught.value.code == 4002
    assert upload_posts(emulator, session) == posts  # refused before any byte was sent
    over.unlink()

    body = Zeros(LIMIT + 1)
    headers = {
        **auth_headers(client),
        "Content-Type": f"multipart/form-data; boundary={body.boundary}",
        "Content-Length": str(body.length),
    }
    path = f"/api/upload-video/nemo_agent/me/{session.id}"
    with httpx.Client(base_url=emulator.url, timeout=60) as http:
        response = http.post(path, content=body, headers=headers)
    assert response.status_code == 413 and response.json()["code"] == 4002
    assert stored_files(emulator, client) == []
    assert temp_files(Path(emulator.data_dir) / "media") == []
    record(
        tmp_path_factory,
        "upload_size_limits",
        exact_bytes=LIMIT,
        exact_upload_s=round(upload_s, 2),
        over_refused_by_client=True,
        over_refused_by_server=response.status_code,
    )


HOSTILE_NAMES = [
    "../../../../etc/cron.d/evil.png",
    "..\\..\\windows\\evil.png",
    "/absolute/evil.png",
    "bell\x07escape\x1b[31mred.png",
    "new\nline.png",
    "<img src=x onerror=alert(1)>.png",
    ".hidden.png",
    "....png",
    " spaces .png",
    "名字.png",
    "a" * 400 + ".png",
]


def raw_multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = "hostilenames"
    encoded = name.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8")
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="'.encode()
        + encoded
        + b'"\r\nContent-Type: image/png\r\n\r\n'
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_hostile_file_names_stay_inside_the_uploads_folder(
    emulator: Any,
    owner: tuple[NemoClient, Session],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    client, session = owner
    root = uploads_dir(emulator, client)
    outcomes: dict[str, str] = {}
    with httpx.Client(base_url=emulator.url, timeout=30) as http:
        for name in HOSTILE_NAMES:
            body, content_type = raw_multipart(name, png_bytes())
            response = http.post(
                f"/api/upload-video/nemo_agent/me/{session.id}",
                content=body,
                headers={**auth_headers(client), "Content-Type": content_type},
            )
            envelope = response.json()
            assert response.status_code < 500 and "code" in envelope
            if envelope["code"] != 0:
                assert envelope["code"] in (400, 4001), envelope
                outcomes[name] = f"refused {envelope['code']}"
                continue
            (info,) = envelope["data"]["files"]
            stored = info["filename"]
            assert "/" not in stored and "\\" not in stored and not stored.startswith(".")
            assert all(ch.isprintable() for ch in stored) and "<" not in stored
            assert http.get(info["cdn_url"]).content == png_bytes()
            outcomes[name] = stored
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root.resolve())
    files = stored_files(emulator, client)
    assert len(files) == sum(not v.startswith("refused") for v in outcomes.values())
    assert all(len(p.relative_to(root).parts) == 2 for p in files)  # <upload id>/<name>
    record(
        tmp_path_factory,
        "hostile_file_names",
        names_tried=len(HOSTILE_NAMES),
        stored=len(files),
        refused=len(HOSTILE_NAMES) - len(files),
    )


def test_a_local_file_name_with_control_characters_is_sanitized(
    emulator: Any, owner: tuple[NemoClient, Session], tmp_path: Path
) -> None:
    client, session = owner
    path = tmp_path / "bad\x01\x1fname\x7f.png"
    path.write_bytes(png_bytes())
    (uploaded,) = session.upload(path)
    (stored,) = stored_files(emulator, client)
    assert stored.name == uploaded.filename and stored.name.endswith(".png")
    assert all(ch.isprintable() for ch in stored.name)  # httpx sends them %-encoded
    assert stored.resolve().is_relative_to(uploads_dir(emulator, client).resolve())


class _Redirect(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "http://example.com/evil.png")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/photo.png"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://example.com/a.png", "offline"),
        ("https://169.254.169.254/latest/meta-data/a.png", "offline"),
        ("http://0.0.0.0:80/a.png", "offline"),
        ("http://127.0.0.1.nip.io/a.png", "offline"),
        ("http://localhost.localdomain/a.png", "offline"),
        ("http://2130706433/a.png", "offline"),
        ("http://user@10.0.0.1/a.png", "offline"),
        ("http://[fe80::1]/a.png", "offline"),
    ],
)
def test_url_uploads_to_other_hosts_are_refused(
    emulator: Any, owner: tuple[NemoClient, Session], url: str, said: str
) -> None:
    client, session = owner
    with pytest.raises(APIError, match=said) as caught:
        session.upload_url(url)
    assert caught.value.status == 400
    assert stored_files(emulator, client) == []


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/a.png", "/etc/passwd", "data:image/png,xx"]
)
def test_url_uploads_that_are_not_http_are_refused_before_sending(
    emulator: Any, owner: tuple[NemoClient, Session], url: str
) -> None:
    _, session = owner
    posts = upload_posts(emulator, session)
    with pytest.raises(UnsupportedFileError, match="http"):
        session.upload_url(url)
    assert upload_posts(emulator, session) == posts


def test_a_loopback_url_that_redirects_elsewhere_is_not_followed(
    emulator: Any, owner: tuple[NemoClient, Session], redirecting_url: str
) -> None:
    client, session = owner
    with pytest.raises(APIError, match="HTTP 302"):
        session.upload_url(redirecting_url)
    assert stored_files(emulator, client) == []


class Trickle(httpx.SyncByteStream):
    """A multipart body sent in small pieces with pauses; may break off half way."""

    def __init__(self, body: bytes, pieces: int, pause: float, break_after: int | None) -> None:
        size = -(-len(body) // pieces)
        self.parts = [body[i : i + size] for i in range(0, len(body), size)]
        self.pause, self.break_after = pause, break_after

    def __iter__(self) -> Iterator[bytes]:
        for index, piece in enumerate(self.parts):
            if self.break_after is not None and index == self.break_after:
                raise OSError("the sender went away")
            yield piece
            time.sleep(self.pause)


@pytest.mark.parametrize("break_after", [None, 4])
def test_a_slow_upload_completes_or_leaves_nothing_behind(
    emulator: Any,
    owner: tuple[NemoClient, Session],
    tmp_path_factory: pytest.TempPathFactory,
    break_after: int | None,
) -> None:
    client, session = owner
    image = png_bytes(400, 300)
    body, content_type = raw_multipart("slow.png", image)
    stream = Trickle(body, pieces=8, pause=0.15, break_after=break_after)
    headers = {**auth_headers(client), "Content-Type": content_type}
    path = f"/api/upload-video/nemo_agent/me/{session.id}"
    started = time.monotonic()
    with httpx.Client(base_url=emulator.url, timeout=30) as http:
        if break_after is None:
            response = http.post(path, content=stream, headers=headers)
            assert response.status_code == 200
            (stored,) = stored_files(emulator, client)
            assert stored.read_bytes() == image
        else:
            with pytest.raises((OSError, httpx.HTTPError)):
                http.post(path, content=stream, headers=headers)
            uploads = Path(emulator.data_dir) / "media" / "uploads"
            assert wait_until(lambda: temp_files(uploads) == [], timeout=10)
            assert stored_files(emulator, client) == []
            assert session.state().video_infos == []
    record(
        tmp_path_factory,
        f"slow_upload_{'complete' if break_after is None else 'broken'}",
        bytes=len(body),
        pieces=8,
        seconds=round(time.monotonic() - started, 2),
    )


# -- (d) crafted drafts -----------------------------------------------------------------------


def crafted_draft(src: str) -> dict[str, Any]:
    return {
        "d": 1000,
        "m": {"width": 160, "height": 90, "fps": 10},
        "t": [{"id": "v", "tt": 0, "sg": [{"id": "s", "st": 0, "d": 1000, "src": src}]}],
    }


OUTSIDE_SOURCES = [
    "file:///etc/passwd",
    "/etc/passwd",
    "../emulator.sqlite3",
    "http://127.0.0.1/media/../emulator.sqlite3",
    "http://127.0.0.1/media/%2e%2e/emulator.sqlite3",
    "http://127.0.0.1/media/..%2femulator.sqlite3",
    "http://127.0.0.1/media/%2fetc/passwd",
    "http://127.0.0.1/media/generated/%00.png",
    "http://127.0.0.1/other/emulator.sqlite3",
    "ftp://127.0.0.1/media/x.png",
    "data:image/png;base64,iVBORw0KGgo=",
    "concat:/etc/passwd|/etc/hosts",
]


def test_drafts_pointing_outside_the_media_folder_fail_with_a_reason(
    emulator: Any, owner: tuple[NemoClient, Session], tmp_path_factory: pytest.TempPathFactory
) -> None:
    client, session = owner
    ids = {}
    with httpx.Client(base_url=emulator.url, timeout=30, headers=auth_headers(client)) as http:
        for index, src in enumerate(OUTSIDE_SOURCES):
            render_id = f"render_outside_{index}_{session.id}"
            body = {"id": render_id, "sessionId": session.id, "draft": crafted_draft(src)}
            assert http.post("/api/render/proxy/lambda", json=body).json()["code"] == 0
            ids[render_id] = src

        def status(render_id: str) -> dict[str, Any]:
            return dict(http.get(f"/api/render/proxy/lambda/{render_id}").json()["data"])

        assert wait_until(
            lambda: all(status(r)["status"] == "failed" for r in ids), timeout=30, step=0.1
        ), {r: status(r)["status"] for r in ids}
        for render_id in ids:
            data = status(render_id)
            assert data["error"] and data["outputUrl"] is None, data
            assert "internal" not in data["error"], data
            download = http.get(f"/api/render/proxy/{render_id}/download")
            assert download.status_code == 409
    renders = Path(emulator.data_dir) / "media" / "renders"
    assert not any((renders / f"{r}.mp4").exists() for r in ids)
    assert temp_files(renders) == []
    record(tmp_path_factory, "renders_refusing_outside_sources", sources_tried=len(ids))


def media_only_resolver(media: Path) -> Any:
    """The documented rule: only http(s) URLs under /media/ resolving inside ``media``."""
    from urllib.parse import unquote, urlsplit

    def resolve(src: str) -> Path:
        parts = urlsplit(src)
        if parts.scheme not in ("http", "https") or not parts.path.startswith("/media/"):
            raise ValueError("only /media/ URLs")
        path = (media / unquote(parts.path[len("/media/") :])).resolve()
        if not path.is_relative_to(media.resolve()):
            raise ValueError("outside the media folder")
        return path

    return resolve


@pytest.mark.parametrize("src", OUTSIDE_SOURCES)
def test_render_draft_refuses_sources_outside_the_media_folder(tmp_path: Path, src: str) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (tmp_path / "emulator.sqlite3").write_bytes(b"SQLite format 3\0")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(render.RenderError):
        render.render_draft(
            crafted_draft(src),
            out / "x.mp4",
            resolve_media=media_only_resolver(media),
            width=160,
            height=90,
        )
    assert list(out.iterdir()) == []


def text_draft(style: dict[str, Any], text: str = "hostile") -> dict[str, Any]:
    segment = {"id": "s", "st": 0, "d": 1000, "tx": text, "style": style}
    return {"d": 1000, "t": [{"id": "t", "tt": 7, "n": "Title", "sg": [segment]}]}


@pytest.mark.parametrize(
    "style",
    [
        {"color": "red:enable=0';movie=/etc/passwd[x]"},
        {"position": "../../../etc"},
        {"fontSize": -5, "animIn": "<script>", "animInMs": 1e300},
        {"fontSize": "NaN"},
    ],
)
def test_hostile_text_styles_render_or_fail_cleanly(tmp_path: Path, style: dict[str, Any]) -> None:
    text = "'; movie=/etc/passwd [x] %{pts} <script>alert(1)</script>"
    try:
        result = render.render_draft(
            text_draft(style, text),
            tmp_path / "x.mp4",
            resolve_media=media_only_resolver(tmp_path),
            width=160,
            height=90,
            fps=5,
        )
    except render.RenderError:
        assert not (tmp_path / "x.mp4").exists()
    else:
        assert render.probe(result["path"])["duration_s"] == pytest.approx(1.0, abs=0.25)
    assert temp_files(tmp_path) == []


def test_a_huge_font_size_is_clamped_to_the_canvas(tmp_path: Path) -> None:
    """An absurd fontSize renders (clamped) instead of making Pillow allocate gigabytes."""
    result = render.render_draft(
        text_draft({"fontSize": 1e9}),
        tmp_path / "x.mp4",
        resolve_media=media_only_resolver(tmp_path),
        width=160,
        height=90,
        fps=5,
    )
    assert render.probe(result["path"])["width"] == 160


# -- (e) downloads ----------------------------------------------------------------------------


DRAFT_READY = {"d": 1000, "t": [{"tt": 0, "sg": [{"st": 0, "d": 1000, "src": "x"}]}]}
VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"v" * 5000


class Broken(httpx.SyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: len(self.data) // 2]
        raise httpx.ReadError("connection reset mid-body")


def export_backend(download: str, hostile_id: str = "../../../evil") -> httpx.MockTransport:
    """A server that completes renders and answers downloads as ``download`` says."""
    done = {
        "id": hostile_id,
        "status": "completed",
        "progress": 1,
        "output": {"url": f"{API}/media/../../../outside/{hostile_id}.mp4"},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/api/state/"):
            data = {**STATE, "state": {"draft": DRAFT_READY}}
            return httpx.Response(200, json={"code": 0, "data": data})
        if path == "/api/render/proxy/lambda":
            return httpx.Response(200, json={"code": 0, "data": {"status": "pending"}})
        if path.startswith("/api/render/proxy/lambda/"):
            return httpx.Response(200, json={"code": 0, "data": done})
        headers = {"content-disposition": 'attachment; filename="../../../evil.mp4"'}
        if download == "ok":
            return httpx.Response(200, headers=headers, content=VIDEO)
        if download == "short":  # Content-Length says more than is sent
            headers["content-length"] = str(len(VIDEO) * 2)
            return httpx.Response(200, headers=headers, stream=httpx.ByteStream(VIDEO))
        if download == "broken":
            return httpx.Response(200, headers=headers, stream=Broken(VIDEO))
        if download == "fallback" and "/media/" in path:
            return httpx.Response(200, headers=headers, stream=Broken(VIDEO))
        if download == "fallback":
            return httpx.Response(200, headers=headers, content=VIDEO)
        return httpx.Response(500, json={"code": 500, "message": "no"})

    return httpx.MockTransport(handler)


def exported_job(download: str) -> tuple[NemoClient, Any]:
    timing = Timing(render_poll_min=0, render_poll_max=0, render_timeout=5)
    client = NemoClient(API, TOKEN, transport=export_backend(download), timing=timing)
    job = client.session("1").export().wait()
    return client, job


def every_file(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("crafted_id", ["../../../evil", "/etc/passwd", "..", "", "a/../../b"])
def test_a_download_cannot_escape_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crafted_id: str
) -> None:
    folder = tmp_path / "sandbox" / "downloads"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    client, job = exported_job("ok")
    with client:
        job.id = crafted_id  # as if the id came from the server
        into_folder = job.download(folder)
        into_cwd = job.download()
    for target in (into_folder, into_cwd):
        assert target.resolve().parent == folder.resolve()
        assert target.read_bytes() == VIDEO
    assert every_file(tmp_path) == sorted(
        {f"sandbox/downloads/{into_folder.name}", f"sandbox/downloads/{into_cwd.name}"}
    )


@pytest.mark.parametrize("download", ["broken", "short"])
def test_an_interrupted_download_leaves_no_file(
    tmp_path: Path, download: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client, job = exported_job(download)
    target = tmp_path / "video.mp4"
    with client, pytest.raises(TransportError):
        job.download(target)
    assert every_file(tmp_path) == []
    previous = b"an earlier export"
    target.write_bytes(previous)
    client, job = exported_job(download)
    with client, pytest.raises(TransportError):
        job.download(target)
    assert target.read_bytes() == previous and every_file(tmp_path) == ["video.mp4"]
    record(tmp_path_factory, f"download_{download}", attempts=2, urls_per_attempt=2, left=0)


def test_a_broken_output_url_falls_back_to_the_proxy_download(tmp_path: Path) -> None:
    client, job = exported_job("fallback")
    with client:
        target = job.download(tmp_path / "video.mp4")
    assert target.read_bytes() == VIDEO and every_file(tmp_path) == ["video.mp4"]
