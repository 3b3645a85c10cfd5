"""Hostile input and greedy co-users against the emulator over loopback: per-user render and
storage limits, fair render queueing, per-request upload limits, image pixel limits, hostile
provenance metadata, and odd media paths. Every refusal is an envelope, never HTTP 500."""

from __future__ import annotations

import io
import json
import logging
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from nemo_notebook.emulator import start
from nemo_notebook.emulator.limits import Limits

pytestmark = pytest.mark.timeout(120)

KB, MB = 1024, 1024 * 1024
ATTRIBUTION = {"X-Skill-Source": "nemo-notebook", "X-Skill-Version": "t", "X-Skill-Platform": "t"}
LIMITS_ENV = {
    "NEMO_EMULATOR_UPLOAD_REQUEST_BYTES": str(1 * MB),
    "NEMO_EMULATOR_USER_STORAGE_BYTES": str(3 * MB),
    "NEMO_EMULATOR_RENDERS_PER_USER": "2",
}


@dataclass
class User:
    http: httpx.Client
    token: str
    user_id: str
    session_id: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **ATTRIBUTION}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, headers=self.headers, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, headers=self.headers, **kwargs)

    def upload(self, *files: tuple[str, bytes]) -> httpx.Response:
        multipart = [("files", item) for item in files]
        return self.post(f"/api/upload-video/nemo_agent/me/{self.session_id}", files=multipart)

    def state_response(self) -> httpx.Response:
        return self.get(f"/api/state/nemo_agent/me/{self.session_id}/latest")

    def turn(self, message: str) -> None:
        body = {
            "app_name": "nemo_agent",
            "user_id": "me",
            "session_id": self.session_id,
            "new_message": {"role": "user", "parts": [{"text": message}]},
        }
        with self.http.stream("POST", "/run_sse", json=body, headers=self.headers) as response:
            assert response.status_code == 200
            for _ in response.iter_lines():
                pass

    def render(self, render_id: str, draft: dict[str, Any]) -> httpx.Response:
        body = {"id": render_id, "sessionId": self.session_id, "draft": draft,
                "output": {"quality": "low"}}  # fmt: skip
        return self.post("/api/render/proxy/lambda", json=body)


def data_of(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def assert_refused(response: httpx.Response, status: int, code: int, text: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and text in body["message"], body


_client_ids = iter(range(10**9))


def new_user(http: httpx.Client) -> User:
    headers = {"X-Client-Id": f"limits-{next(_client_ids)}"}
    token = data_of(http.post("/api/auth/anonymous-token", headers=headers))
    user = User(http, token["token"], token["user_id"])
    session = data_of(user.post("/api/tasks/me/with-session/nemo_agent", json={}))
    user.session_id = session["session_id"]
    return user


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in LIMITS_ENV.items():
            env.setenv(name, value)
        data_dir = tmp_path_factory.mktemp("emulator-limits")
        with start(data_dir, time_scale=0.01, tokens_per_ip=10_000) as handle:
            yield handle


@pytest.fixture
def http(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def png_bytes(width: int = 32, height: int = 18) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that announces ``width`` x ``height`` (its pixel data is a stub)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))  # fmt: skip


def png_with_text(*chunks: bytes) -> bytes:
    data = png_bytes(64, 36)
    end = data.rindex(b"IEND") - 4
    return data[:end] + b"".join(chunks) + data[end:]


def stored_files(server: Any, user: User) -> list[Path]:
    folder = server.data_dir / "media" / "uploads" / user.user_id
    return [p for p in folder.rglob("*") if p.is_file()]


def test_limits_come_from_the_environment() -> None:
    limits = Limits.from_env(LIMITS_ENV)
    assert (limits.upload_request_bytes, limits.renders_per_user) == (MB, 2)
    assert Limits.from_env({}) == Limits()
    with pytest.raises(ValueError, match="NEMO_EMULATOR_RENDERS_PER_USER"):
        Limits.from_env({"NEMO_EMULATOR_RENDERS_PER_USER": "many"})


# -- uploads ----------------------------------------------------------------------------------


def test_one_request_over_the_request_limit_is_4002_and_leaves_nothing(
    server: Any, http: httpx.Client
) -> None:
    user = new_user(http)
    response = user.upload(("a.mp3", b"\0" * (600 * KB)), ("b.mp3", b"\0" * (600 * KB)))
    assert_refused(response, 413, 4002, "one request may carry at most 1 MB")
    assert stored_files(server, user) == []  # the first file and the partial second are gone
    assert data_of(user.state_response())["state"]["video_infos"] == []
    assert server.store.storage_used(user.user_id) == 0


def test_a_user_over_the_storage_limit_gets_4002(server: Any, http: httpx.Client) -> None:
    user, other = new_user(http), new_user(http)
    for n in range(3):  # exactly the request limit each, and the storage limit in all
        data_of(user.upload((f"part{n}.mp3", b"\0" * MB)))
    response = user.upload(("one-more.mp3", b"\0"))
    assert_refused(response, 413, 4002, "storage full")
    assert len(stored_files(server, user)) == 3
    assert not list((server.data_dir / "media").rglob(".part-*"))
    refused = user.render("render_full_1", {"d": 1000, "t": []})
    assert_refused(refused, 413, 4002, "storage full")
    data_of(other.upload(("mine.mp3", b"\0" * (600 * KB))))  # the limit is per user


def test_a_20000_square_image_is_4002_not_500(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    user = new_user(http)
    caplog.set_level(logging.ERROR)
    assert_refused(
        user.upload(("huge.png", png_header_only(20000, 20000))), 413, 4002, "megapixels"
    )
    assert_refused(user.upload(("big.png", png_header_only(9000, 9000))), 413, 4002, "9000x9000")
    assert not [r for r in caplog.records if r.name.startswith("nemo_notebook")]


def test_a_6_kb_media_path_is_404_not_500(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    for path in ("/media/" + "a" * 6000, "/media/uploads/" + "b/" * 3000 + "c.png"):
        response = http.get(path)
        assert response.status_code == 404, response.text[:200]
        assert response.json()["code"] == 404
    assert not [r for r in caplog.records if r.name.startswith("nemo_notebook")]


# -- renders ----------------------------------------------------------------------------------


def still_draft(user: User, width: int, height: int, duration_ms: int, fps: int) -> dict[str, Any]:
    image = data_of(user.upload(("still.png", png_bytes())))["files"][0]["cdn_url"]
    segment = {"id": "s", "st": 0, "d": duration_ms, "src": image}
    return {"d": duration_ms, "m": {"width": width, "height": height, "fps": fps},
            "t": [{"id": "v", "tt": 0, "sg": [segment]}]}  # fmt: skip


def wait_until_finished(server: Any, render_ids: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [server.store.get_render(render_id) for render_id in render_ids]
        if all(job["status"] in ("completed", "failed") for job in jobs):
            assert {job["status"] for job in jobs} == {"completed"}, jobs
            return
        time.sleep(0.05)
    raise AssertionError("renders did not finish")


def test_renders_are_limited_per_user_and_queued_fairly(server: Any, http: httpx.Client) -> None:
    greedy, fair, blocker = new_user(http), new_user(http), new_user(http)
    small = still_draft(greedy, 320, 180, 8000, 30)
    theirs = still_draft(fair, 320, 180, 8000, 30)
    # A slow job first, so the others are all waiting when the worker picks the next one.
    data_of(blocker.render("render_block", still_draft(blocker, 1280, 720, 40_000, 30)))
    data_of(greedy.render("render_greedy_1", small))
    data_of(greedy.render("render_greedy_2", small))
    assert_refused(greedy.render("render_greedy_3", small), 429, 429, "at most 2 render jobs")
    data_of(fair.render("render_fair_1", theirs))  # the limit is per user
    assert server.store.get_render("render_block")["status"] in ("pending", "processing")
    ids = ["render_block", "render_greedy_1", "render_greedy_2", "render_fair_1"]
    wait_until_finished(server, ids)
    done = {render_id: server.store.get_render(render_id)["updated_at"] for render_id in ids}
    # Round-robin: the other user's single export comes before the greedy user's second job.
    assert done["render_greedy_1"] < done["render_fair_1"] < done["render_greedy_2"]
    data_of(greedy.render("render_greedy_3", small))  # slots free again once jobs finished


# -- provenance of hostile images -------------------------------------------------------------


def explain(user: User, content: bytes) -> dict[str, Any]:
    data_of(user.upload(("mystery.png", content)))
    user.turn("what is this image")
    state = user.state_response()
    assert len(state.content) < 100_000, f"a state read is {len(state.content)} bytes"
    analyses = data_of(state)["state"]["video_analyses"]
    assert analyses and analyses[-1]["type"] == "image_provenance"
    return analyses[-1]["provenance"]


def test_a_compressed_text_bomb_stays_out_of_state(server: Any, http: httpx.Client) -> None:
    user = new_user(http)
    # 900 KB of text in ~1 KB: under Pillow's own limit, over the reader's per-chunk cap.
    packed = zlib.compress(b"a" * (900 * KB), 9)
    bomb = png_chunk(b"iTXt", b"parameters\0\x01\x00en\0\0" + packed)
    provenance = explain(user, png_with_text(bomb))
    assert provenance["prompt"] is None
    versions = server.store.state_versions(user.session_id)
    assert len(json.dumps(versions, default=str)) < 1_000_000


def test_a_hostile_text_chunk_does_not_stall_other_clients(server: Any, http: httpx.Client) -> None:
    user, other = new_user(http), new_user(http)
    hostile = "a lake\nSteps: 20, " + "x" * 60_000 + "\nSteps: 4, Seed: 7"
    content = png_with_text(png_chunk(b"tEXt", b"parameters\0" + hostile.encode()))
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(explain(user, content)))
    worker.start()
    # Meanwhile another client is served; the old parser held the GIL for most of a minute.
    with httpx.Client(base_url=server.url, timeout=10) as own:
        for _ in range(10):
            balance = own.get("/api/credits/balance/simple", headers=other.headers)
            assert balance.status_code == 200
            time.sleep(0.05)
    worker.join(timeout=60)
    assert not worker.is_alive(), "the explain turn did not finish"
    assert outcome["parameters"]["Seed"] == "7"


def test_the_render_queue_takes_users_in_turn() -> None:
    from nemo_notebook.emulator.render_worker import FairQueue

    queue = FairQueue()
    for user, render_id in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("c", "c1")]:
        queue.push(user, render_id)
    assert [queue.pop(), queue.pop()] == ["a1", "b1"]
    queue.push("b", "b2")  # b was served more recently than c: c goes first
    assert queue.remove("a3") and not queue.remove("nope")
    assert [queue.pop() for _ in range(5)] == ["c1", "a2", "b2", None, None]
    assert len(queue) == 0
