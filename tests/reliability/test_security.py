"""Secrets and isolation: one user's token never reaches another user's work, tokens are kept
hashed and compared in constant time, the token cache is private, markup stays plain text, and
no issued token is written anywhere (files, data dirs, logs, output) but the token cache.

Keep ``test_no_issued_token_was_written_anywhere`` the last test of this file: it scans what the
tests before it (in every file of the run) left under the pytest basetemp.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _reliability_support import (  # noqa: F401  (leak_guard is an autouse fixture)
    CAPTURED_DIR,
    GENERATE,
    ISSUED_TOKENS,
    audit_ledger,
    leak_guard,
    logged,
    make_client,
    record,
)
from PIL import Image

from nemo_notebook import (
    NemoClient,
    RenderJob,
    Session,
    SessionNotFoundError,
)

pytestmark = pytest.mark.timeout(120)

MARKUP = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(1)</script>"
TOKEN_PATTERN = re.compile(rb"nmv_usr_[A-Za-z0-9_\-]{20,}")


@pytest.fixture(scope="module")
def owner(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A user with a rendered session whose draft carries markup in its labels."""
    root = tmp_path_factory.mktemp("owner")
    with make_client(emulator.url, root) as client:
        session = client.create_session()
        session.send(f"generate a realistic image of {SCRIPT} city at night")
        for message in ("trim the video to 1 second", f"add the title '{MARKUP}'"):
            session.send(message)
        job = session.export().wait()
        yield {"client": client, "session": session, "job": job, "root": root}


@pytest.fixture
def intruder(emulator: Any, tmp_path: Path) -> Iterator[NemoClient]:
    with make_client(emulator.url, tmp_path) as client:
        client.credits()  # has a token and a user of its own
        yield client


def png_file(path: Path) -> Path:
    Image.new("RGB", (16, 16), "red").save(path)
    return path


# -- isolation, through the client ------------------------------------------------------------


def owner_fingerprint(emulator: Any, owner: dict[str, Any]) -> tuple[Any, ...]:
    client, session = owner["client"], owner["session"]
    uploads = Path(emulator.data_dir) / "media" / "uploads" / str(client.user_id)
    return (
        session.state().raw,
        emulator.ledger(client.user_id),
        len(session.history),
        sorted(p.name for p in uploads.rglob("*")) if uploads.exists() else [],
    )


def accepted_posts(emulator: Any) -> int:
    return sum(1 for r in emulator.faults.requests("POST", "/run_sse") if r.status == 200)


def test_another_user_cannot_read_change_or_upload_to_a_session(
    emulator: Any,
    owner: dict[str, Any],
    intruder: NemoClient,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    before = owner_fingerprint(emulator, owner)
    target = intruder.session(owner["session"].id)
    posts = accepted_posts(emulator)
    intruder_uploads = Path(emulator.data_dir) / "media" / "uploads" / str(intruder.user_id)
    attempts = {
        "state": target.state,
        "run_sse": lambda: target.send("remove the title"),
        "upload": lambda: target.upload(png_file(tmp_path / "mine.png")),
        "upload_url": lambda: target.upload_url(f"{emulator.url}/media/x.png"),
        "claim": target.claim_url,
        "export": target.export,
    }
    for name, attempt in attempts.items():
        with pytest.raises(SessionNotFoundError):
            attempt()
        assert owner_fingerprint(emulator, owner) == before, name
    target.task_id = owner["session"].task_id  # even knowing the task id does not help
    with pytest.raises(SessionNotFoundError):
        target.claim_url()
    assert accepted_posts(emulator) == posts  # refused with 1002: no turn ran
    assert not intruder_uploads.exists() or not any(intruder_uploads.rglob("*.png"))
    assert owner_fingerprint(emulator, owner) == before
    record(tmp_path_factory, "isolation_session", attempts=len(attempts) + 1, leaked=0)


def test_another_user_cannot_render_poll_or_download_a_render(
    emulator: Any,
    owner: dict[str, Any],
    intruder: NemoClient,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    before = owner_fingerprint(emulator, owner)
    draft = owner["session"].state().draft.to_dict()
    held = threading.Lock()
    held.acquire()  # as Session.export() hands it over: the job releases it when done
    job = RenderJob(intruder.session(owner["session"].id), draft, "low", held)
    submits = emulator.faults.count("POST", "/api/render/proxy/lambda")
    with pytest.raises(SessionNotFoundError):
        job.submit()  # a refusal is not retried with a new id
    assert logged(emulator, "POST", "/api/render/proxy/lambda", submits + 1) == submits + 1

    job.id = owner["job"].id
    with pytest.raises(SessionNotFoundError):
        job.refresh()
    with pytest.raises(SessionNotFoundError):
        job.wait()
    job.status, job.output_url = "completed", None  # as if it believed the job was done
    downloads = tmp_path / "downloads"
    with pytest.raises(SessionNotFoundError):
        job.download(downloads / "stolen.mp4")
    assert list(downloads.iterdir()) == []
    assert owner_fingerprint(emulator, owner) == before
    assert owner["job"].download(downloads / "mine.mp4").stat().st_size > 1000
    record(tmp_path_factory, "isolation_render", attempts=4, leaked=0)


def test_a_lost_session_is_replaced_by_a_new_one_of_ones_own(
    emulator: Any, owner: dict[str, Any], intruder: NemoClient
) -> None:
    """With ``recreate_missing_sessions`` the client moves to a fresh session: never the other."""
    before = owner_fingerprint(emulator, owner)
    intruder.recreate_missing_sessions = True
    target = intruder.session(owner["session"].id)
    assert target.send("hello").text
    assert target.id != owner["session"].id
    assert intruder.session(target.id).state().session_id == target.id
    assert owner_fingerprint(emulator, owner) == before


# -- tokens at rest ---------------------------------------------------------------------------


def test_tokens_are_stored_hashed_and_compared_in_constant_time(
    emulator: Any, intruder: NemoClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = intruder.connection.current_token()
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert intruder.credits().total >= 0
    monkeypatch.undo()
    assert calls, "authentication did not use hmac.compare_digest"
    assert all(token not in (a, b) for a, b in calls)
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert any(digest in (a, b) for a, b in calls)

    secret = token.encode()
    for path in Path(emulator.data_dir).glob("emulator.sqlite3*"):
        data = path.read_bytes()
        assert secret not in data and secret[8:] not in data, path.name


def test_the_token_cache_and_client_id_files_are_private(emulator: Any, tmp_path: Path) -> None:
    config_dir = tmp_path / "nemovideo"
    with NemoClient(api_url=emulator.url, config_dir=config_dir) as client:
        client.credits()  # writes the client id, fetches and caches a token
        token = client.connection.current_token()
    for name in ("tokens.json", "client_id", "tokens.lock"):
        assert stat.S_IMODE((config_dir / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    assert (config_dir / "tokens.lock").read_bytes() == b""  # the lock holds no token
    entries = json.loads((config_dir / "tokens.json").read_text(encoding="utf-8"))
    assert [entry["token"] for entry in entries.values()] == [token]
    assert all(re.fullmatch(r"[0-9a-f]{64}", key) for key in entries)  # keys are hashed too
    names = sorted(p.name for p in config_dir.iterdir())
    assert names == ["client_id", "tokens.json", "tokens.lock"]


def test_the_token_is_never_in_a_url_repr_or_error(
    emulator: Any, owner: dict[str, Any], intruder: NemoClient
) -> None:
    token = intruder.connection.current_token()
    claim = owner["session"].claim_url()
    assert token not in claim and owner["client"].connection.current_token() not in claim
    assert token not in repr(intruder) and token not in str(intruder.connection.settings)
    with pytest.raises(SessionNotFoundError) as caught:
        intruder.session(owner["session"].id).state()
    assert token not in str(caught.value) and token not in repr(caught.value)
    for request in emulator.requests():
        assert "nmv_usr_" not in request.path


# -- markup stays plain text ------------------------------------------------------------------


def test_markup_in_labels_titles_and_replies_stays_plain_text(
    emulator: Any, owner: dict[str, Any]
) -> None:
    session: Session = owner["session"]
    first = session.history[0].reply
    assert SCRIPT in first.text
    state = session.state()
    tracks = state.raw["draft"]["t"] if "draft" in state.raw else state.draft.to_dict()["t"]
    labels = [seg.get("n") or seg.get("tx") for track in tracks for seg in track["sg"]]
    assert any(label and SCRIPT in label for label in labels)
    assert MARKUP in [seg.get("tx") for track in tracks for seg in track["sg"]]

    summary = state.draft.summary()
    assert SCRIPT in summary and f'"{MARKUP}"' in summary
    assert "&lt;" not in summary
    frame = state.draft.to_dataframe()
    assert MARKUP in set(frame["label"]) and any(SCRIPT in str(v) for v in frame["label"])
    assert frame.attrs["caption"] == summary

    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        raw = http.get(
            f"/api/state/nemo_agent/me/{session.id}/latest",
            headers={"Authorization": f"Bearer {owner['client'].connection.current_token()}"},
        )
    assert MARKUP in raw.json()["data"]["state"]["draft"]["t"][-1]["sg"][0]["tx"]
    assert "\\u003c" not in raw.text and "&lt;" not in raw.text


def test_markup_in_file_names_is_defused_by_the_server(
    emulator: Any, owner: dict[str, Any], tmp_path: Path
) -> None:
    session: Session = owner["session"]
    path = png_file(tmp_path / "x.png").rename(tmp_path / f"{MARKUP}.png")
    (uploaded,) = session.upload(path)
    assert "<" not in uploaded.filename and ">" not in uploaded.filename
    infos = session.state().video_infos
    assert infos[-1]["filename"] == uploaded.filename
    with httpx.Client(timeout=10) as http:
        assert http.get(uploaded.cdn_url).status_code == 200


# -- the scan: keep this test last ------------------------------------------------------------


def issued_token_hashes(root: Path) -> set[str]:
    """The hashes of every token any emulator under ``root`` issued (its SQLite ``tokens``)."""
    hashes: set[str] = set()
    for database in root.rglob("emulator.sqlite3"):
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                rows = connection.execute("SELECT token_hash FROM tokens").fetchall()
        except sqlite3.Error:
            continue
        hashes.update(str(row[0]) for row in rows)
    return hashes


def cached_tokens(root: Path) -> set[str]:
    tokens: set[str] = set()
    for cache in root.rglob("tokens.json"):
        try:
            entries = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        tokens.update(str(e.get("token")) for e in entries.values() if isinstance(e, dict))
    return tokens


def token_strings_in(path: Path) -> set[bytes]:
    found: set[bytes] = set()
    with path.open("rb") as handle:
        tail = b""
        while chunk := handle.read(8 * 1024 * 1024):
            data = tail + chunk
            found.update(TOKEN_PATTERN.findall(data))
            tail = data[-128:]
    return found


def test_no_issued_token_was_written_anywhere(
    emulator: Any,
    tmp_path_factory: pytest.TempPathFactory,
    capfd: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path_factory.getbasetemp()
    hashes = issued_token_hashes(root)
    issued = {t for t in cached_tokens(root) if hashlib.sha256(t.encode()).hexdigest() in hashes}
    issued |= ISSUED_TOKENS
    secrets = {token.encode() for token in issued}
    secret_parts = re.compile(b"|".join(re.escape(s[8:]) for s in secrets)) if secrets else None
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "tokens.json"]
    scanned_bytes, leaks = 0, []
    for path in files:
        scanned_bytes += path.stat().st_size
        for found in token_strings_in(path):
            if found in secrets or hashlib.sha256(found).hexdigest() in hashes:
                leaks.append(f"{path.relative_to(root)}: {found[:12].decode()}…")
        if secret_parts is not None and path.stat().st_size < 64 * 1024 * 1024:
            match = secret_parts.search(path.read_bytes())
            if match:
                leaks.append(f"{path.relative_to(root)}: the secret part of a token")
    out, err = capfd.readouterr()
    for token in issued:
        assert token not in out and token not in err
    assert leaks == []
    record(
        tmp_path_factory,
        "token_scan",
        tokens_issued_known=len(issued),
        token_hashes_in_databases=len(hashes),
        files_scanned=len(files),
        megabytes_scanned=round(scanned_bytes / 1024 / 1024, 1),
        captured_logs=len(list((root / CAPTURED_DIR).glob("*.log"))),
        leaks=0,
    )
    assert issued, "the scan found no issued token to look for"
