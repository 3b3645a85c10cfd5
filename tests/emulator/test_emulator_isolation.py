"""Co-users on one machine: the emulator's admin endpoints, media files and per-IP token limit.

Every local user reaches a loopback server, so "is loopback" proves nothing: admin needs the
per-server secret, media URLs are signed, the renderer takes only signed media, and forwarded
headers are not believed. All over loopback against a real uvicorn server.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nemo_notebook.emulator import start
from nemo_notebook.emulator.media.files import MediaSigner
from nemo_notebook.emulator.server import ADMIN_SECRET_ENV, running

pytestmark = pytest.mark.timeout(120)

ATTRIBUTION = {
    "X-Skill-Source": "nemo-notebook",
    "X-Skill-Version": "test",
    "X-Skill-Platform": "pytest",
}
ANY_CHARACTER = st.characters(exclude_categories=())  # lone surrogates too (JSON allows them)
ADMIN_CALLS = [
    ("GET", "/_emulator/faults", None),
    ("POST", "/_emulator/faults", {"reset": True}),
    ("POST", "/_emulator/expire-tokens", None),
    ("POST", "/_emulator/credits", {"user_id": "anon_x", "available": 5}),
    ("GET", "/_emulator/ledger?user_id=anon_x", None),
    ("GET", "/_emulator/requests", None),
    ("POST", "/_emulator/tokens", {}),
    ("GET", "/_emulator/history?session_id=1", None),
    ("GET", "/_emulator/variants", None),
    ("POST", "/_emulator/variants", {"variants": []}),
    ("POST", "/_emulator/forget-session", {"session_id": "1"}),
]


@dataclass
class Person:
    """A user of the shared server with only their own bearer token."""

    http: httpx.Client
    token: str
    user_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **ATTRIBUTION}

    def new_session(self) -> str:
        response = self.http.post(
            "/api/tasks/me/with-session/nemo_agent", json={}, headers=self.auth
        )
        return str(response.json()["data"]["session_id"])

    def chat(self, session_id: str, text: str) -> None:
        body = {
            "app_name": "nemo_agent",
            "user_id": "me",
            "session_id": session_id,
            "new_message": {"role": "user", "parts": [{"text": text}]},
            "streaming": True,
        }
        with self.http.stream("POST", "/run_sse", json=body, headers=self.auth) as response:
            assert response.status_code == 200
            for _ in response.iter_bytes():
                pass

    def state(self, session_id: str) -> dict[str, Any]:
        url = f"/api/state/nemo_agent/me/{session_id}/latest"
        return dict(self.http.get(url, headers=self.auth).json()["data"]["state"])

    def upload_png(self, session_id: str) -> dict[str, Any]:
        buffer = BytesIO()
        Image.new("RGB", (64, 36), (30, 120, 200)).save(buffer, "PNG")
        files = [("files", ("mine.png", buffer.getvalue(), "image/png"))]
        response = self.http.post(
            f"/api/upload-video/nemo_agent/me/{session_id}", files=files, headers=self.auth
        )
        return dict(response.json()["data"]["files"][0])

    def render(self, render_id: str, session_id: str, src: str) -> dict[str, Any]:
        draft = {
            "d": 1000,
            "m": {"width": 160, "height": 90, "fps": 10},
            "t": [{"id": "v", "tt": 0, "sg": [{"id": "s", "st": 0, "d": 1000, "src": src}]}],
        }
        body = {"id": render_id, "sessionId": session_id, "draft": draft}
        submitted = self.http.post("/api/render/proxy/lambda", json=body, headers=self.auth)
        assert submitted.json()["code"] == 0
        deadline = time.monotonic() + 60
        while True:
            url = f"/api/render/proxy/lambda/{render_id}"
            data = dict(self.http.get(url, headers=self.auth).json()["data"])
            if data["status"] in ("completed", "failed") or time.monotonic() > deadline:
                return data
            time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("emulator-isolation")
    with start(data_dir, time_scale=0.001, tokens_per_ip=10_000) as handle:
        yield handle


@pytest.fixture
def http(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def person(server: Any, http: httpx.Client) -> Person:
    issued = server.issue_token()
    return Person(http, issued.token, issued.user_id)


@pytest.fixture
def alice(server: Any, http: httpx.Client) -> Person:
    return person(server, http)


@pytest.fixture
def bob(server: Any, http: httpx.Client) -> Person:
    return person(server, http)


def admin(http: httpx.Client, method: str, path: str, body: Any, **headers: str) -> httpx.Response:
    return http.request(method, path, json=body, headers=headers)


def bare(url: str) -> str:
    """The media URL without its signature: what a co-user can guess from a file name."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


# -- admin ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_endpoints_refuse_requests_without_the_secret(
    server: Any, http: httpx.Client, method: str, path: str, body: Any
) -> None:
    for headers in ({}, {"X-Emulator-Admin": "guess"}, {"X-Emulator-Admin": ""}):
        response = admin(http, method, path, body, **headers)
        assert response.status_code == 403
        assert response.json()["code"] == 403
        assert "X-Emulator-Admin" in response.json()["message"]
        assert server.admin_secret not in response.text
    assert admin(http, method, path, body, **server.admin_headers()).status_code == 200


def test_a_co_user_cannot_read_history_or_the_request_log(
    server: Any, alice: Person, bob: Person
) -> None:
    session_id = alice.new_session()
    alice.chat(session_id, "add a title Secret Plans")
    for path in (f"/_emulator/history?session_id={session_id}", "/_emulator/requests"):
        response = bob.http.get(path, headers=bob.auth)
        assert response.status_code == 403
        assert "Secret Plans" not in response.text and session_id not in response.text
    owner_view = bob.http.get(
        f"/_emulator/history?session_id={session_id}", headers=server.admin_headers()
    )
    assert "Secret Plans" in owner_view.text


def test_expiring_every_token_needs_the_secret(server: Any, alice: Person, bob: Person) -> None:
    assert bob.http.post("/_emulator/expire-tokens", headers=bob.auth).status_code == 403
    balance = alice.http.get("/api/credits/balance/simple", headers=alice.auth)
    assert balance.json()["code"] == 0


def test_the_handle_keeps_the_secret_out_of_its_repr(server: Any) -> None:
    assert len(server.admin_secret) >= 32
    assert server.admin_headers() == {"X-Emulator-Admin": server.admin_secret}
    assert server.admin_secret not in repr(server)
    assert server.admin_secret not in repr(server._emulator.config)
    assert running(server.url) is server


def test_every_server_has_its_own_secret(tmp_path: Path, server: Any) -> None:
    with start(tmp_path) as other:
        assert other.admin_secret != server.admin_secret
        response = httpx.get(f"{other.url}/_emulator/faults", headers=server.admin_headers())
        assert response.status_code == 403
    assert running(other.url) is None


def test_cli_serve_prints_the_secret_once(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "nemo_notebook._cli", "serve", "--port", "0"]
    command += ["--data-dir", str(tmp_path)]
    env = {**os.environ, ADMIN_SECRET_ENV: "s3cret-for-this-test-only-0123456789"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        url = lines[0].rsplit(" ", 1)[1].strip()
        assert [line.count("s3cret-for-this-test-only-0123456789") for line in lines] == [0, 1, 0]
        secret = {"X-Emulator-Admin": "s3cret-for-this-test-only-0123456789"}
        assert httpx.get(f"{url}/_emulator/faults", headers=secret).status_code == 200
        assert httpx.get(f"{url}/_emulator/faults").status_code == 403
    finally:
        process.terminate()
        process.wait(15)


# -- media ------------------------------------------------------------------------------------


def test_uploaded_media_needs_the_signed_url(alice: Person, bob: Person) -> None:
    session_id = alice.new_session()
    url = alice.upload_png(session_id)["cdn_url"]
    assert "sig=" in url
    assert alice.http.get(url).status_code == 200  # no auth header: <img> tags work
    assert bob.http.get(bare(url)).status_code == 404
    assert bob.http.get(bare(url) + "?sig=" + "A" * 22).status_code == 404
    assert bob.http.get(bare(url) + "?sig=").status_code == 404


def test_generated_media_in_state_is_signed(alice: Person, bob: Person) -> None:
    session_id = alice.new_session()
    alice.chat(session_id, "generate an image of a harbor at dawn")
    urls = [entry["url"] for entry in alice.state(session_id)["generated_media"]]
    sources = [
        s["src"] for t in alice.state(session_id)["draft"]["t"] for s in t["sg"] if "src" in s
    ]
    assert urls and sources
    for url in {*urls, *sources}:
        assert alice.http.get(url).status_code == 200
        assert bob.http.get(bare(url)).status_code == 404


def test_a_render_is_only_for_its_owner(alice: Person, bob: Person) -> None:
    session_id = alice.new_session()
    image = alice.upload_png(session_id)["cdn_url"]
    job = alice.render(f"render_iso_{session_id}", session_id, image)
    assert job["status"] == "completed", job
    url = job["output"]["url"]
    assert job["outputUrl"] == url and "sig=" in url
    video = alice.http.get(url)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert bob.http.get(bare(url)).status_code == 404
    download = f"/api/render/proxy/{job['id']}/download"
    assert alice.http.get(download, headers=alice.auth).status_code == 200
    assert bob.http.get(download, headers=bob.auth).status_code == 404
    assert bob.http.get(download).status_code == 401


def test_a_draft_naming_another_users_file_renders_nothing_of_it(
    alice: Person, bob: Person
) -> None:
    theirs = alice.upload_png(alice.new_session())["cdn_url"]
    session_id = bob.new_session()
    job = bob.render(f"render_steal_{session_id}", session_id, bare(theirs))
    assert job["status"] == "failed" and job["outputUrl"] is None, job
    assert "not found" in job["error"]


def test_the_media_key_is_private_and_survives_a_restart(tmp_path: Path) -> None:
    with start(tmp_path) as first:
        signed = first._emulator.media_signer.url(first.url, "uploads/x.png")
    mode = (tmp_path / "media-url.key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    with start(tmp_path) as second:
        assert second._emulator.media_signer.url(first.url, "uploads/x.png") == signed


@pytest.mark.parametrize("kind", ["readable by others", "fifo", "symlink", "short"])
def test_a_planted_media_key_is_refused(tmp_path: Path, kind: str) -> None:
    key = tmp_path / "media-url.key"
    if kind == "fifo":
        os.mkfifo(key, 0o600)  # opening it for reading would block without O_NONBLOCK
    elif kind == "symlink":
        (tmp_path / "elsewhere").write_bytes(b"k" * 32)
        (tmp_path / "elsewhere").chmod(0o600)
        key.symlink_to(tmp_path / "elsewhere")
    else:
        key.write_bytes(b"k" * (32 if kind == "readable by others" else 5))
        key.chmod(0o644 if kind == "readable by others" else 0o600)
    with pytest.raises(RuntimeError, match="remove it"):
        start(tmp_path)


@settings(max_examples=200, deadline=None)
@given(rel=st.text(ANY_CHARACTER, max_size=80), sig=st.text(ANY_CHARACTER, max_size=60))
def test_no_forged_signature_verifies(rel: str, sig: str) -> None:
    signer = MediaSigner(b"k" * 32)
    real = signer.signature(rel)
    assert signer.verify(rel, real)
    assert signer.verify(rel, sig) is (sig == real)
    assert not MediaSigner(b"j" * 32).verify(rel, real)


@pytest.mark.parametrize(
    "query", ["sig=%00", "sig=" + "x" * 6000, "sig=%C3%A9t%C3%A9", "sig=a&sig=b", "sig"]
)
def test_odd_signatures_are_404(http: httpx.Client, query: str) -> None:
    response = http.get(f"/media/uploads/x.png?{query}")
    assert response.status_code == 404 and response.json()["code"] == 404


# -- the per-IP token limit -------------------------------------------------------------------


def test_forwarded_headers_do_not_bypass_the_per_ip_token_limit(tmp_path: Path) -> None:
    with start(tmp_path) as handle, httpx.Client(base_url=handle.url, timeout=30) as http:
        statuses = []
        for n in range(20):
            headers = {
                "X-Client-Id": f"forwarded-{n}",
                "X-Forwarded-For": f"198.51.100.{n + 1}",
                "X-Real-IP": f"203.0.113.{n + 1}",
                "Forwarded": f"for=192.0.2.{n + 1}",
            }
            statuses.append(http.post("/api/auth/anonymous-token", headers=headers).status_code)
        assert statuses == [200] * 10 + [429] * 10
        limited = http.post("/api/auth/anonymous-token", headers={"X-Client-Id": "plain"})
        assert limited.status_code == 429
        assert json.loads(limited.text)["code"] == 429
