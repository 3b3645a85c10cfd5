"""Record and replay: a real session against the emulator over loopback is recorded once, then
replayed with no server and no socket, giving the same answers faster; nothing that grants
access is written."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_integration import FAST

from nemo_notebook import CassetteMissError, ConfigError, NemoClient, TextDelta, ToolCall
from nemo_notebook._cassette import PLACEHOLDER_TOKEN, CassetteTransport, media_folder
from nemo_notebook._config import CassetteSettings


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any connect from now on fails the test (and is listed)."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise AssertionError(f"a replay opened a socket to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def run_session(client: NemoClient, upload: Path, out: Path) -> dict[str, Any]:
    """The whole flow: session, generate, fetch the image, upload, edit, export, download."""
    session = client.create_session(language="en")
    first = session.send("generate a realistic image of a futuristic city at night")
    image_url = next(item["url"] for item in session.state().generated_media if item.get("url"))
    image = client.fetch_bytes(image_url)
    uploaded = session.upload(upload)
    title = session.send("add the title 'Urban Dreams' for 3 seconds")
    summary = session.state().draft.summary()
    job = session.export()
    job.wait()
    video = job.download(out / "video.mp4").read_bytes()
    return {
        "texts": [first.text, title.text],
        "tool_calls": [[call.name for call in reply.tool_calls] for reply in (first, title)],
        "changes": [list(first.changes), list(title.changes)],
        "summary": summary,
        "image": image,
        "uploaded": [(item.filename, item.width, item.height) for item in uploaded],
        "video": video,
        "claim_url": session.claim_url(),
        "credits": client.credits().total,
    }


@pytest.fixture(scope="module")
def recorded(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One session recorded against the emulator, with what a scan must not find."""
    from PIL import Image

    emulator.faults.reset()
    root = tmp_path_factory.mktemp("cassette")
    upload = root / "photo.png"
    Image.new("RGB", (64, 48), "teal").save(upload)
    cassette = root / "session.cassette.json"
    config_dir = root / "config"
    started = time.monotonic()
    with NemoClient(
        api_url=emulator.url,
        timing=FAST,
        env={},
        config_dir=config_dir,
        cassette=cassette,
        cassette_mode="record",
    ) as client:
        result = run_session(client, upload, root)
        token = client.connection.current_token()
    seconds = time.monotonic() - started
    client_id = (config_dir / "client_id").read_text().strip()
    claim = result["claim_url"].partition("ct=")[2]
    return {
        "cassette": cassette,
        "upload": upload,
        "result": result,
        "seconds": seconds,
        "secrets": {"token": token, "client id": client_id, "claim token": claim},
    }


def replay_client(cassette: Path, tmp_path: Path, **kwargs: Any) -> NemoClient:
    return NemoClient(
        api_url=closed_port_url(),
        timing=FAST,
        env={},
        config_dir=tmp_path / "replay-config",
        cassette=cassette,
        cassette_mode=kwargs.pop("cassette_mode", "replay"),
        **kwargs,
    )


def test_a_replay_needs_no_server_and_gives_the_same_answers_faster(
    recorded: dict[str, Any], tmp_path: Path, no_sockets: list[object]
):
    started = time.monotonic()
    with replay_client(recorded["cassette"], tmp_path) as client:
        assert client.connection.cassette is not None and client.connection.cassette.replaying
        replayed = run_session(client, recorded["upload"], tmp_path)
    seconds = time.monotonic() - started
    original = recorded["result"]
    for name in ("texts", "tool_calls", "changes", "summary", "image", "uploaded", "video"):
        assert replayed[name] == original[name], name
    assert replayed["video"][4:8] == b"ftyp"
    assert replayed["credits"] == original["credits"]
    assert "ct=cassette-claim-placeholder" in replayed["claim_url"]
    assert no_sockets == []
    print(f"recorded in {recorded['seconds']:.2f} s, replayed in {seconds:.2f} s")
    assert seconds * 2 <= recorded["seconds"]
    assert not (tmp_path / "replay-config" / "tokens.json").exists()  # no placeholder cached


def test_nothing_that_grants_access_is_written(recorded: dict[str, Any]):
    cassette: Path = recorded["cassette"]
    files = [cassette, *sorted(media_folder(cassette).iterdir())]
    assert len(files) >= 4  # the image, the upload and the video are stored once each
    needles = {name: value.encode() for name, value in recorded["secrets"].items()}
    needles |= {"token shape": b"nmv_usr_", "authorization": b"authorization"}
    for path in files:
        data = path.read_bytes().lower()
        for name, needle in needles.items():
            assert needle.lower() not in data, (name, path.name)
    document = json.loads(cassette.read_text())
    token_answer = next(
        item["response"]["json"]["data"]
        for item in document["exchanges"]
        if item["request"]["url"].endswith("/api/auth/anonymous-token")
    )
    assert token_answer["token"] == PLACEHOLDER_TOKEN
    assert token_answer["user_id"]  # not a credential: the register link's bind


def test_the_cassette_is_readable_and_in_order(recorded: dict[str, Any]):
    document = json.loads(recorded["cassette"].read_text())
    exchanges = document["exchanges"]
    assert document["format"] == "nemo-cassette" and document["version"] == 1
    assert [item["seq"] for item in exchanges] == sorted(item["seq"] for item in exchanges)
    turns = [item for item in exchanges if item["request"]["url"].endswith("/run_sse")]
    assert len(turns) == 2
    chunks = turns[0]["response"]["sse"]
    assert chunks and all(isinstance(t, float) for t, _ in chunks)
    assert [t for t, _ in chunks] == sorted(t for t, _ in chunks)
    assert any("functionCall" in text for _, text in chunks)
    upload = next(item for item in exchanges if "multipart" in item["request"])
    part = upload["request"]["multipart"][0]
    assert part["filename"] == "photo.png" and len(part["sha256"]) == 64
    assert (media_folder(recorded["cassette"]) / part["file"]).read_bytes() == (
        recorded["upload"].read_bytes()
    )
    submits = [item for item in exchanges if item["request"]["url"].endswith("/lambda")]
    assert submits[0]["request"]["json"]["id"].startswith("render_")
    videos = [
        item["response"]["media"]
        for item in exchanges
        if item["response"]["headers"].get("content-type", "").startswith("video/")
    ]
    assert len(videos) == 1 and videos[0]["size"] == len(recorded["result"]["video"])


def test_an_unrecorded_request_fails_at_once(
    recorded: dict[str, Any], tmp_path: Path, no_sockets: list[object]
):
    with replay_client(recorded["cassette"], tmp_path) as client:
        started = time.monotonic()
        with pytest.raises(CassetteMissError) as caught:
            client.session("1234567890123456789").state()
        assert time.monotonic() - started < 1.0
    message = str(caught.value)
    assert "GET /api/state/nemo_agent/me/1234567890123456789/latest" in message
    assert "cassette_mode='record'" in message and "NEMO_CASSETTE_MODE=record" in message
    assert no_sockets == []


def test_a_request_recorded_once_answers_once(recorded: dict[str, Any], tmp_path: Path):
    with replay_client(recorded["cassette"], tmp_path) as client:
        client.create_session(language="en")
        with pytest.raises(CassetteMissError, match="no more answers to POST /api/tasks"):
            client.create_session(language="en")


def test_replaying_a_missing_cassette_says_how_to_record(tmp_path: Path):
    with pytest.raises(ConfigError, match="record one first"):
        replay_client(tmp_path / "none.json", tmp_path)


def test_once_records_then_replays_from_the_environment(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    emulator.faults.reset()
    cassette = tmp_path / "once.json"
    monkeypatch.setenv("NEMO_CASSETTE", str(cassette))  # NEMO_CASSETTE_MODE: "once"

    def turn(url: str) -> tuple[str, list[str], bool]:
        with NemoClient(api_url=url, timing=FAST, config_dir=tmp_path / "cfg") as client:
            assert client.connection.cassette is not None
            reply = client.create_session().send("generate an image of a red fox in the snow")
            return (
                reply.text,
                [c.name for c in reply.tool_calls],
                client.connection.cassette.replaying,
            )

    first = turn(emulator.url)
    assert cassette.exists() and first[2] is False
    second = turn(closed_port_url())
    assert second[2] is True and second[:2] == first[:2]


@pytest.fixture
def slow_turns(emulator: Any) -> Iterator[float]:
    """Each turn of the emulator waits 0.6 s before its first event (keep-alives meanwhile)."""
    emulator.faults.reset()
    before = emulator.turn_latency_s
    emulator.turn_latency_s = 0.6 / emulator.faults.time_scale
    try:
        yield 0.6
    finally:
        emulator.turn_latency_s = before


def first_event_after(client: NemoClient, message: str) -> float:
    """Seconds from sending ``message`` to its first text or tool call (the turn is read to
    its end)."""
    session = client.create_session()
    started = time.monotonic()
    first: float | None = None
    with session.stream(message) as turn:
        for event in turn:
            if first is None and isinstance(event, TextDelta | ToolCall):
                first = time.monotonic() - started
    assert first is not None, "the turn had no event"
    return first


def test_real_timing_keeps_a_recorded_pause_and_fast_drops_it(
    emulator: Any, slow_turns: float, tmp_path: Path
):
    cassette = tmp_path / "pause.json"
    message = "generate an image of a lighthouse at dusk"
    with NemoClient(
        api_url=emulator.url, timing=FAST, config_dir=tmp_path / "cfg",
        cassette=cassette, cassette_mode="record",
    ) as client:  # fmt: skip
        recorded = first_event_after(client, message)
    assert recorded >= slow_turns
    with replay_client(cassette, tmp_path, cassette_timing="real") as client:
        real = first_event_after(client, message)
    with replay_client(cassette, tmp_path, cassette_timing="fast") as client:
        fast = first_event_after(client, message)
    assert abs(real - recorded) < 0.25, (real, recorded)
    assert fast < 0.2, fast


def test_media_over_the_cap_is_not_stored_and_its_replay_fails_clearly(
    emulator: Any, tmp_path: Path
):
    emulator.faults.reset()
    cassette = tmp_path / "capped.json"

    def fetch_image(client: NemoClient) -> bytes:
        session = client.create_session()
        session.send("generate an image of a sailing boat")
        url = next(item["url"] for item in session.state().generated_media if item.get("url"))
        return client.fetch_bytes(url)

    with NemoClient(
        api_url=emulator.url, timing=FAST, config_dir=tmp_path / "cfg",
        cassette=cassette, cassette_mode="record", cassette_media_bytes=1000,
    ) as client:  # fmt: skip
        image = fetch_image(client)
    assert len(image) > 1000
    media = [
        item["response"]["media"]
        for item in json.loads(cassette.read_text())["exchanges"]
        if "media" in item.get("response", {})
    ]
    assert media and all("file" not in entry and "omitted" in entry for entry in media)
    assert not media_folder(cassette).exists()
    with (
        replay_client(cassette, tmp_path) as client,
        pytest.raises(CassetteMissError, match="did not store the body of GET /media/"),
    ):
        fetch_image(client)


# --------------------------------------------------------------------------- the transport alone


def sse_transport(chunks: list[bytes]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/auth/anonymous-token":
            token = {"token": "nmv_usr_" + "a" * 43, "user_id": "anon_1", "expires_at": None}
            return httpx.Response(200, json={"code": 0, "data": token})
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"".join(chunks)))

    return httpx.MockTransport(handler)


class Chunked(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def test_a_secret_split_across_chunks_is_scrubbed_whole(tmp_path: Path):
    secret = b"nmv_usr_" + b"s" * 43
    chunks = [
        b'data: {"text": "your key is ' + secret[:12],
        secret[12:] + b'"}\n\n',
        b"data: {}\n\n",
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Chunked(chunks)
        )

    cassette = tmp_path / "c.json"
    transport = CassetteTransport(
        CassetteSettings(cassette, "record"), httpx.MockTransport(handler)
    )
    with httpx.Client(transport=transport) as http:
        response = http.post(
            "http://api.test/run_sse",
            json={"x": 1},
            headers={"Authorization": "Bearer " + "t" * 20},
        )
        assert response.read() == b"".join(chunks)  # the client sees what the server sent
    text = cassette.read_text()
    assert "nmv_usr_" not in text and "ssss" not in text and "tttt" not in text
    sse = json.loads(text)["exchanges"][0]["response"]["sse"]
    assert len(sse) == 2 and PLACEHOLDER_TOKEN in sse[0][1]


def test_an_anonymous_token_not_recorded_is_a_placeholder(tmp_path: Path):
    """Recorded with a given (or cached) token, a cassette still replays anonymously."""
    cassette = tmp_path / "given.json"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"code": 0, "data": {"available": 5, "frozen": 0, "total": 5}}
        )

    with NemoClient(
        api_url="http://api.test", token="nmv_usr_" + "g" * 43, config_dir=tmp_path / "cfg",
        transport=httpx.MockTransport(handler), cassette=cassette, cassette_mode="record",
    ) as client:  # fmt: skip
        assert client.credits().total == 5
    with replay_client(cassette, tmp_path) as client:
        assert client.credits().total == 5
        assert client.connection.current_token() == PLACEHOLDER_TOKEN


def test_cassette_settings_are_checked(tmp_path: Path):
    cassette = str(tmp_path / "c.json")
    with pytest.raises(ConfigError, match="record, replay, once"):
        NemoClient(env={"NEMO_CASSETTE": cassette, "NEMO_CASSETTE_MODE": "rewind"})
    with pytest.raises(ConfigError, match="cassette_timing"):
        NemoClient(cassette=cassette, cassette_timing="slow", env={})
    with pytest.raises(ConfigError, match="transport="), httpx.Client() as http:
        NemoClient(cassette=cassette, http_client=http, env={})
    with NemoClient(env={}, config_dir=tmp_path / "cfg") as client:
        assert client.connection.cassette is None
