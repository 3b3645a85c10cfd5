"""The real client against the real emulator over loopback: flows, error codes and faults."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from nemo_notebook import (
    AuthError,
    FileTooLargeError,
    InsufficientCreditsError,
    NemoClient,
    NothingToExportError,
    Recovering,
    RenderFailedError,
    ServerError,
    SessionNotFoundError,
    StillWorking,
    TextDelta,
    Timing,
    UnsupportedFileError,
)

FAST = Timing(
    still_working_every=0.2,
    heartbeat_timeout=30,
    turn_cap=60,
    recovery_first_wait=0.3,
    recovery_next_wait=0.5,
    rate_limit_wait=0.01,
    render_poll_min=0.05,
    render_poll_max=0.2,
    render_timeout=180,
)


@pytest.fixture
def client(emulator):
    emulator.faults.reset()
    with NemoClient(api_url=emulator.url, timing=FAST) as client:
        yield client


def probe(path: Path) -> dict:
    from nemo_notebook.emulator.media.render import probe as probe_media

    return probe_media(path)


def test_the_done_when_flow_in_english(client: NemoClient, tmp_path: Path):
    session = client.create_session(language="en")
    first = session.send("generate a realistic image of a futuristic city at night")
    assert first.text and "generate_image" in [call.name for call in first.tool_calls]
    assert any(change.startswith("Video added") for change in first.changes)
    music = session.send("add lo-fi background music at 35%")
    assert "35%" in session.state().draft.summary() or any("35%" in c for c in music.changes)
    title = session.send("add the title 'Urban Dreams' for 3 seconds")
    assert any("Urban Dreams" in change for change in title.changes)
    summary = session.state().draft.summary()
    assert 'Title: "Urban Dreams" (0-3s)' in summary

    job = session.export()
    progress: list[float] = []
    job.wait(on_progress=progress.append)
    assert progress[-1] == 1.0 and progress == sorted(progress)
    video = job.download(tmp_path / "urban-dreams.mp4")
    info = probe(video)
    assert (info["width"], info["height"]) == (1920, 1080)
    assert info["video_codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["has_audio"]
    duration_ms = session.state().draft.duration_ms
    assert abs(info["duration_s"] * 1000 - duration_ms) <= 1000 / 30 + 1
    assert session.claim_url().startswith(client.web_url + "/workspace/claim?ct=")


def test_the_done_when_flow_in_chinese(client: NemoClient, tmp_path: Path):
    session = client.create_session(language="zh")
    reply = session.send("生成一张海边日落的图片")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in reply.text)
    session.send("添加背景音乐")
    kinds = [track.kind for track in session.state().draft.tracks]
    assert "Video" in kinds and "BGM" in kinds
    video = session.export().wait().download(tmp_path / "sunset.mp4")
    assert probe(video)["has_audio"]


def test_streaming_yields_text_deltas_and_tool_calls(client: NemoClient):
    session = client.create_session()
    with session.stream("generate a realistic image of a sunset over a mountain lake") as turn:
        events = list(turn)
    assert sum(isinstance(e, TextDelta) for e in events) >= 2
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == turn.reply.text


def test_credits_are_frozen_then_settled_once(client: NemoClient, emulator):
    before = client.credits()
    session = client.create_session()
    session.send("generate a realistic image of a futuristic city at night")
    after = client.credits()
    assert after.frozen == 0
    assert after.available < before.available
    assert after.total == after.available + after.frozen
    spent = [row for row in emulator.ledger(client.user_id) if row.get("state") == "settled"]
    assert len({row["reservation_id"] for row in spent}) == len(spent)


def test_export_of_an_empty_session_says_generate_first(client: NemoClient):
    with pytest.raises(NothingToExportError):
        client.create_session().export()


def test_another_users_session_is_not_found(client: NemoClient, emulator):
    mine = client.create_session()
    with (
        NemoClient(api_url=emulator.url, client_id="11111111-2222-3333-4444-555555555555") as other,
        pytest.raises(SessionNotFoundError),
    ):
        other.session(mine.id).state()


def test_uploads_checked_and_accepted(client: NemoClient, tmp_path: Path):
    from PIL import Image

    session = client.create_session()
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), "teal").save(photo)
    uploaded = session.upload(photo)
    assert (uploaded[0].width, uploaded[0].height) == (64, 48)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"this is not an image")
    with pytest.raises(UnsupportedFileError):
        session.upload(fake)
    huge = tmp_path / "huge.mp4"
    with huge.open("wb") as handle:
        handle.truncate(200 * 1024 * 1024 + 1)
    with pytest.raises(FileTooLargeError):
        session.upload(huge)


# ----------------------------------------------------------------------------- faults


@pytest.mark.parametrize("events", [1, 3, 6])
def test_dropped_stream_is_recovered_by_state_polling(client: NemoClient, emulator, events: int):
    session = client.create_session()
    posts = emulator.faults.count("POST", "/run_sse")
    emulator.faults.drop_stream_after(events)
    seen: list[object] = []
    reply = session.send("generate a realistic image of a futuristic city at night", seen.append)
    assert emulator.faults.count("POST", "/run_sse") == posts + 1
    assert any(isinstance(e, Recovering) for e in seen)
    assert reply.recovered and any(c.startswith("Video added") for c in reply.changes)


def test_heartbeat_only_turn_times_out_then_recovers(emulator):
    impatient = dataclasses.replace(FAST, heartbeat_timeout=0.6)
    client = NemoClient(api_url=emulator.url, timing=impatient)
    session = client.create_session()
    emulator.faults.heartbeat_only(seconds=300)  # scaled by the emulator's time scale
    seen: list[object] = []
    posts = emulator.faults.count("POST", "/run_sse")
    reply = session.send("generate a realistic image of a quiet forest at dawn", seen.append)
    assert emulator.faults.count("POST", "/run_sse") == posts + 1
    assert any(isinstance(e, StillWorking) for e in seen)
    assert reply.recovered and reply.changes


def test_rate_limit_once_is_retried(client: NemoClient, emulator):
    emulator.faults.fail_requests(1, status=429, path_prefix="/api/credits")
    assert client.credits().total >= 0


def test_server_error_is_reported(client: NemoClient, emulator):
    emulator.faults.fail_requests(1, status=500, path_prefix="/api/credits")
    with pytest.raises(ServerError, match="Try again"):
        client.credits()
    assert client.credits().total >= 0


def test_expired_token_is_renewed_once(client: NemoClient, emulator):
    client.credits()
    emulator.faults.expire_tokens()
    assert client.credits().total >= 0


def test_expired_user_token_is_reported(emulator):
    with NemoClient(api_url=emulator.url) as anonymous:
        anonymous.credits()
        token = anonymous.connection.current_token()
    emulator.faults.expire_tokens()
    client = NemoClient(api_url=emulator.url, token=token)
    with client, pytest.raises(AuthError, match="NEMO_TOKEN") as caught:
        client.credits()
    assert token not in str(caught.value)


def ready_session(client: NemoClient):
    session = client.create_session()
    session.send("generate a realistic image of a sunset over a mountain lake")
    return session


def test_render_failing_once_is_resubmitted(client: NemoClient, emulator, tmp_path: Path):
    session = ready_session(client)
    emulator.faults.fail_renders(1, reason="encoder crashed")
    job = session.export()
    job.wait()
    assert job.resubmitted and job.status == "completed"
    assert job.download(tmp_path / "ok.mp4").stat().st_size > 10_000


def test_render_failing_twice_raises(client: NemoClient, emulator):
    session = ready_session(client)
    emulator.faults.fail_renders(2, reason="encoder crashed")
    with pytest.raises(RenderFailedError, match="encoder crashed"):
        session.export().wait()


def test_out_of_credits_names_the_registration_link(client: NemoClient, emulator):
    session = client.create_session()
    client.credits()
    emulator.set_credits(client.user_id, 3)
    with pytest.raises(InsufficientCreditsError, match=r"\?bind="):
        session.send("generate a realistic image of a futuristic city at night")


def test_stop_from_another_thread_posts_once(client: NemoClient, emulator):
    session = client.create_session()
    emulator.faults.heartbeat_only(seconds=300)
    posts = emulator.faults.count("POST", "/run_sse")
    turn = session.stream("generate a realistic image of a harbor at night")
    threading.Timer(0.3, turn.close).start()
    with turn:
        for _ in turn:
            pass
    assert turn.reply is not None and turn.reply.stopped
    # The log records a request when the server finishes it (its heartbeats run on for ~3 s).
    assert wait_for(lambda: emulator.faults.count("POST", "/run_sse") == posts + 1)
    time.sleep(0.5)
    assert emulator.faults.count("POST", "/run_sse") == posts + 1


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
