"""Background turns (``Session.submit``), attaching to a render by id, the job ledger and batch,
with the real client against the real emulator over loopback."""

from __future__ import annotations

import json
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_integration import FAST

from nemo_notebook import (
    BatchRow,
    Ledger,
    NemoClient,
    ServerError,
    TurnError,
    read_batch_csv,
)
from nemo_notebook._batch import batch_key, run_batch


@pytest.fixture
def client(emulator_url: str):
    with NemoClient(api_url=emulator_url, timing=FAST) as made:
        yield made


def run_sse_posts(emulator: object) -> int:
    return emulator.faults.count("POST", "/run_sse")  # type: ignore[attr-defined]


def render_submits(emulator: object) -> int:
    return emulator.faults.count("POST", "/api/render/proxy/lambda")  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- TurnJob


def test_submit_returns_while_the_turn_runs_and_result_gives_the_reply(client, emulator):
    session = client.create_session()
    seen: list[object] = []
    job = session.submit(
        "generate a realistic image of a futuristic city at night", on_event=seen.append
    )
    assert job.status == "running" and not job.done
    reply = job.result(timeout=60)
    assert job.status == "completed" and job.done
    assert reply.text and reply.tool_calls
    assert seen, "events reach on_event"
    assert session.history[-1].reply is reply


def test_a_cancelled_turn_is_stopped_and_never_sent_again(client, emulator):
    session = client.create_session()
    posts = run_sse_posts(emulator)
    emulator.faults.heartbeat_only(500)  # 5 s at the time scale of the tests
    job = session.submit("generate a realistic image of a lighthouse")
    time.sleep(1.0)  # the turn is on the server, which sends keep-alives only for 5 s
    job.cancel().wait(10)
    assert job.done and job.status == "stopped"
    with pytest.raises(TurnError, match="stopped"):
        job.result()
    deadline = time.monotonic() + 10  # the server logs the request once it noticed the end
    while run_sse_posts(emulator) == posts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_sse_posts(emulator) == posts + 1


def test_result_raises_what_stopped_the_turn(client, emulator):
    session = client.create_session()
    emulator.faults.fail_requests(1, status=500, path_prefix="/run_sse")
    job = session.submit("generate a realistic image of a forest").wait(30)
    assert job.status == "failed"
    with pytest.raises(ServerError):
        job.result()


def test_result_with_a_timeout_says_the_turn_is_still_running(client, emulator):
    session = client.create_session()
    emulator.faults.heartbeat_only(300)  # 3 s at the time scale of the tests
    job = session.submit("generate a realistic image of a desert road")
    with pytest.raises(TimeoutError, match="still running"):
        job.result(timeout=0.1)
    job.cancel().wait(10)


def test_the_callbacks_run_in_the_callers_context(client):
    import contextvars

    where = contextvars.ContextVar("where", default="worker")
    where.set("caller")
    heard: list[str] = []
    session = client.create_session()
    job = session.submit(
        "generate a realistic image of a pier", on_done=lambda _job: heard.append(where.get())
    )
    job.wait(60)
    assert heard == ["caller"]


# --------------------------------------------------------------------------- attach


def test_a_render_started_by_one_client_is_attached_to_and_downloaded_by_another(
    emulator_url, emulator, tmp_path
):
    with NemoClient(api_url=emulator_url, timing=FAST) as first:
        session = first.create_session()
        session.send("generate a realistic image of a futuristic city at night")
        ids: list[str] = []
        job = session.export(on_change=lambda job: ids.append(job.id))
        assert ids and ids[0] == job.id, "the id is known before the submit is sent"
        session_id, render_id = session.id, job.id
    submits = render_submits(emulator)
    with NemoClient(api_url=emulator_url, timing=FAST) as second:
        attached = second.session(session_id).attach_export(render_id)
        path = attached.result().download(tmp_path / "attached.mp4")
    assert path.stat().st_size > 1000
    assert render_submits(emulator) == submits, "attaching submits nothing"


# --------------------------------------------------------------------------- ledger


def test_the_ledger_keeps_sessions_and_jobs_for_a_new_process(tmp_path):
    ledger = Ledger.in_folder(tmp_path)
    ledger.remember_session("http://b", "main", "111", "task_1", "en")
    ledger.remember_session("http://b", "main", "222", None, "zh")  # moved to another id
    job = ledger.add_job("export", "http://b", "rendering", session_name="main", render_id="r1")
    ledger.update_job(job.id, progress=0.5)
    ledger.close()

    again = Ledger.in_folder(tmp_path)  # a new kernel in the same folder
    [record] = again.sessions("http://b")
    assert (record.session_id, record.language) == ("222", "zh")
    assert again.sessions("http://other") == []
    [unfinished] = again.jobs(unfinished=True)
    assert (unfinished.render_id, unfinished.progress) == ("r1", 0.5)
    again.update_job(job.id, status="completed")
    assert again.jobs(unfinished=True) == []
    folder = tmp_path / ".nemo"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert "*" in (folder / ".gitignore").read_text()


def test_the_ledger_refuses_fields_it_does_not_have(tmp_path):
    ledger = Ledger.in_folder(tmp_path)
    with pytest.raises(TypeError, match="token"):
        ledger.add_job("turn", "http://b", "running", token="nmv_usr_x")


def test_threads_write_the_ledger_at_once(tmp_path):
    ledger = Ledger.in_folder(tmp_path)
    job = ledger.add_job("export", "http://b", "rendering")

    def bump(step: int) -> None:
        for _ in range(50):
            ledger.update_job(job.id, progress=step / 10)

    threads = [threading.Thread(target=bump, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.job(job.id) is not None


# --------------------------------------------------------------------------- batch


def test_a_batch_gives_each_row_a_session_turn_and_video_and_a_bad_row_stops_nothing(
    client, emulator, tmp_path
):
    photo = Path(__file__).parents[1] / "fixtures" / "photo.png"
    if not photo.exists():
        from PIL import Image

        photo = tmp_path / "photo.png"
        Image.new("RGB", (64, 48), (200, 120, 40)).save(photo)
    rows = [
        BatchRow("generate a realistic image of a futuristic city at night"),
        BatchRow("explain what this AI image is and how it was made", str(photo)),
        BatchRow("generate a realistic image of a lake", str(tmp_path / "missing.png")),
    ]
    ledger = Ledger.in_folder(tmp_path)
    result = client.batch(rows, out_dir=tmp_path, concurrency=3, ledger=ledger)
    assert [row.status for row in result.rows] == ["completed", "completed", "failed"]
    assert "missing.png" in (result.rows[2].error or "")
    for row in result.rows[:2]:
        assert row.video is not None and row.video.stat().st_size > 1000
    assert len({row.session for row in result.rows[:2]}) == 2
    frame = result.dataframe
    assert list(frame.columns) == ["status", "session", "video", "credits", "error", "prompt"]
    assert result.credits_spent is not None and result.credits_spent > 0

    posts, submits = run_sse_posts(emulator), render_submits(emulator)
    again = client.batch(rows, out_dir=tmp_path, concurrency=3, ledger=ledger)
    assert [row.status for row in again.rows] == ["completed", "completed", "failed"]
    assert (run_sse_posts(emulator), render_submits(emulator)) == (posts, submits), (
        "a rerun redoes nothing that finished"
    )


def test_one_row_at_a_time_tells_what_each_row_spent(client, tmp_path):
    result = client.batch(
        ["generate a realistic image of a red barn"], out_dir=tmp_path, concurrency=1,
        ledger=Ledger.in_folder(tmp_path),
    )  # fmt: skip
    [row] = result.rows
    assert row.status == "completed" and row.credits is not None and row.credits > 0
    assert row.credits == result.credits_spent


def test_a_row_whose_turn_was_sent_before_a_crash_is_recovered_not_resent(
    client, emulator, tmp_path
):
    rows = [BatchRow("generate a realistic image of a harbour at dawn")]
    ledger = Ledger.in_folder(tmp_path)
    # What a run that died mid-turn left: the row's session, the state before, status "turn".
    session = client.create_session()
    before = session.state()
    record = ledger.add_job(
        "row", client.api_url, "turn", batch=batch_key(rows), row=1, message=rows[0].prompt,
        session_id=session.id, state_before=json.dumps(before.raw), format="mp4",
    )  # fmt: skip
    session.send(rows[0].prompt)  # the turn the dead run had sent; the server finished it
    posts = run_sse_posts(emulator)
    result = run_batch(client, rows, out_dir=tmp_path, ledger=ledger, sleep=lambda _s: None)
    [row] = result.rows
    assert row.status == "completed" and row.session == session.id
    assert run_sse_posts(emulator) == posts, "the row's message was not sent again"
    assert ledger.job(record.id).status == "completed"  # type: ignore[union-attr]


def test_a_budget_that_says_no_skips_rows_before_anything_is_sent(client, emulator, tmp_path):
    posts = run_sse_posts(emulator)
    result = run_batch(
        client, ["generate a realistic image of a canyon"], out_dir=tmp_path,
        ledger=Ledger.in_folder(tmp_path), may_start=lambda: False,
    )  # fmt: skip
    assert [row.status for row in result.rows] == ["skipped"]
    assert run_sse_posts(emulator) == posts


def test_read_batch_csv_takes_prompt_and_input_relative_to_the_file(tmp_path):
    (tmp_path / "rows.csv").write_text(
        "prompt,input\n"
        "a city at night,\n"
        "explain this,photos/one.png\n"
        "from the web,https://example.com/a.png\n",
        encoding="utf-8",
    )
    rows = read_batch_csv(tmp_path / "rows.csv")
    assert rows[0] == BatchRow("a city at night")
    assert rows[1].input == "photos/one.png"  # as written: the batch's key does not move
    assert rows[1].local_input == tmp_path.resolve() / "photos" / "one.png"
    assert rows[2].input == "https://example.com/a.png"
    (tmp_path / "bad.csv").write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'prompt' column"):
        read_batch_csv(tmp_path / "bad.csv")


def test_the_ledger_file_holds_no_token_or_client_id(client, tmp_path, isolated_config):
    ledger = Ledger.in_folder(tmp_path)
    client.batch(["generate a realistic image of a meadow"], out_dir=tmp_path, ledger=ledger)
    ledger.close()
    client_id = (isolated_config / "client_id").read_text().strip()
    tokens = json.loads((isolated_config / "tokens.json").read_text())
    secrets = [client_id.encode(), b"nmv_usr_", *(json.dumps(tokens).encode()[:0],)]
    secrets += [str(entry.get("token", "")).encode() for entry in _entries(tokens) if entry]
    for path in (tmp_path / ".nemo").iterdir():
        data = path.read_bytes()
        for secret in secrets:
            assert not secret or secret not in data, path.name


def _entries(tokens: object) -> list[dict]:
    if isinstance(tokens, dict):
        found = [tokens] if "token" in tokens else []
        for value in tokens.values():
            found += _entries(value)
        return found
    return []


def test_a_batch_waits_out_rate_limits_with_the_clients_timing(emulator_url, emulator, tmp_path):
    """429s beyond the connection's one retry: the row waits the batch back-off of its
    client's Timing (shrunk here) and goes on; nothing was run twice."""
    waits: list[float] = []
    timing = replace(FAST, batch_rate_limit_backoff=(0.01, 0.02, 0.03))
    emulator.faults.fail_requests(4, status=429, path_prefix="/api/tasks/")
    with NemoClient(api_url=emulator_url, timing=timing) as client:
        result = run_batch(
            client,
            ["generate a realistic image of a quiet bay"],
            out_dir=tmp_path,
            ledger=Ledger.in_folder(tmp_path),
            sleep=waits.append,
        )
    [row] = result.rows
    assert row.status == "completed", row.error
    # four 429s, two an attempt (the connection retries once): the batch waited twice
    assert waits == [0.01, 0.02]
