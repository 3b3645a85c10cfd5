"""The chat panel, driven through the methods its buttons call and the messages its view sends;
the tests assert on the widget's synced traits, its transcript pieces and on the requests the
backend recorded (the real client over FakeBackend, or the real emulator)."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_backend import (
    API_URL,
    FakeBackend,
    Gate,
    adk_call,
    adk_question,
    adk_text,
    draft_with_video,
    error_frame,
    fake_client,
    scripted_turn,
    sse,
)

from nemo_notebook._client import NemoClient, Session
from nemo_notebook._errors import NemoError, ServerError, StreamFailedError
from nemo_notebook._events import Question, StillWorking, TextDelta, ToolCall, ToolResult
from nemo_notebook._panel import Panel
from nemo_notebook._panel_turn import TurnInPanel
from nemo_notebook._panel_views import WORDS
from nemo_notebook._workflows import replaced_line

CITY = "generate a realistic image of a futuristic city at night"
XSS = "<img src=x onerror=alert(1)>"
EN = WORDS["en"]


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def assert_idle(panel: Panel) -> None:
    assert not panel.busy
    assert panel.activity == ""
    assert not panel.can_stop
    assert panel.progress == -1


def pieces_of(panel: Panel, *kinds: str) -> list[Any]:
    return [piece for piece in panel.pieces if not kinds or piece.kind in kinds]


def live_html(panel: Panel) -> str:
    """Everything the view draws from Python-made HTML."""
    parts = [piece.html for piece in panel.pieces]
    parts += [panel.timeline_html, panel.claim_html, panel.status, panel.credits]
    parts += [json.dumps(panel.actions), json.dumps(panel.options), panel.export_note]
    return "\n".join(parts)


def view_says(panel: Panel, event: str, **content: Any) -> None:
    """A message from the browser view, as the widget's comm delivers it."""
    panel._handle_custom_msg({"event": event, **content}, [])


# --------------------------------------------------------------------------- scripted backend


def idle_session(tmp_path: Path) -> Session:
    """A real session over a scripted backend, for panels that make no request."""
    return fake_client(FakeBackend(), tmp_path / "config").session("1234567890123456789")


def fake_session(backend: FakeBackend, tmp_path: Path, *, read_state: bool = True) -> Session:
    """A real session over ``backend``; with ``read_state`` its state is read first, so each
    turn reads the state once, after it ends (the diff is of ``drafts[0]`` and the next)."""
    session = fake_client(backend, tmp_path / "config").create_session()
    if read_state:
        session.state()
    return session


def title_draft(title: str) -> dict[str, Any]:
    return {"t": [{"tt": 7, "n": "Title", "sg": [{"st": 0, "d": 3000, "tx": title}]}]}


def test_a_new_panel_is_ready_with_its_labels_and_nothing_to_stop(tmp_path: Path) -> None:
    panel = Panel(session=idle_session(tmp_path))
    assert panel.labels["send"] == "Send" and panel.labels["export"] == "Export"
    assert panel.status == "Ready." and panel.status_tone == "idle"
    assert panel.session_label == "session 1234…6789"
    assert panel.pieces == () and panel.groups == []
    assert panel.timeline_html == "" and panel.export_name == "" and panel.credits == ""
    assert_idle(panel)
    assert panel.submit("") is False
    assert panel.status == "Type a message first."
    panel.stop()
    assert panel.status == "Nothing to stop."


def test_the_view_ships_in_the_package_and_is_theme_aware() -> None:
    import nemo_notebook

    assets = Path(nemo_notebook.__file__).parent / "_panel_assets"
    script, css = (assets / "panel.js").read_text(), (assets / "panel.css").read_text()
    assert Panel._esm == script and Panel._css == css
    assert "export default { render }" in script
    assert 'event.key !== "Enter"' in script and "event.shiftKey" in script  # Enter sends
    assert "node.loop = false" in script  # the exported video never loops
    for variable in ("--jp-layout-color1", "--jp-ui-font-color1", "--jp-border-color1"):
        assert f"var({variable}," in css  # a fallback where a frontend has no JupyterLab theme
    assert "@media (forced-colors: active)" in css
    rules = [line for line in css.splitlines() if line and line[0] not in " /@}"]
    assert all(rule.startswith((".nemo-panel", "}")) for rule in rules), "unscoped CSS"


def test_a_turn_renders_markdown_status_lines_and_escapes_everything(tmp_path: Path) -> None:
    said = (
        f"**{XSS}** set. Click Export to render it. Preview it in the timeline. "
        "Drag the clip to move it."
    )
    backend = FakeBackend(
        turn=scripted_turn(
            sse(adk_text("Setting the title.")), sse(adk_call("add_text", {"text": XSS})),
            sse(adk_text(said)),
        ),
        drafts=[title_draft("old"), title_draft(XSS)],
        fail_next=[("/api/credits", 503, {"code": 503, "message": "credits are down"})],
    )  # fmt: skip
    session = fake_session(backend, tmp_path)
    panel = Panel(session=session)
    panel.prompt = f"set the title to {XSS}"
    assert panel.submit() is True
    assert panel.wait(10)
    assert_idle(panel)
    assert panel.last_error is None, panel.last_error
    assert backend.sent_messages() == [f"set the title to {XSS}"]
    assert panel.prompt == ""
    you, words, status, more = panel.pieces
    assert (you.role, you.kind) == ("you", "text")
    assert "&lt;img src=x onerror=alert(1)&gt;" in you.html
    assert (words.role, words.kind, status.kind, more.kind) == ("nemo", "words", "status", "words")
    assert words.bubble == status.bubble == more.bubble != you.bubble  # one agent bubble
    assert words.html == "<p>Setting the title.</p>\n"
    assert "<strong>&lt;img src=x onerror=alert(1)&gt;</strong>" in more.html  # Markdown
    assert "Click Export" not in more.html  # GUI phrases translated (PROTOCOL §3)
    assert status.html == "<span class='nemo-st-text'>adding title…</span>"
    assert not status.running
    assert XSS in panel.transcript and XSS not in live_html(panel)
    assert XSS not in panel.transcript_html and XSS not in panel._static_bundle()["text/html"]
    assert "&lt;img" in panel.timeline_html and "<caption>" in panel.timeline_html
    reply = session.history[-1].reply
    assert reply.actions == ("export", "status", "chat")  # "chat" has no chip
    assert panel.actions == [
        {"id": "export", "label": "Export video"},  # a small secondary chip, never a button
        {"id": "status", "label": "Show timeline"},
    ]
    assert panel.credits == "credits: ?"
    assert panel.status == "Done." and panel.status_tone == "done"
    assert panel.last_reply is reply


def test_streamed_words_update_at_most_ten_times_a_second(tmp_path: Path) -> None:
    """The words piece changes only when the stream writes (``stream_turn``'s sink, at most
    ``rate`` writes a second), however many pieces of text arrive in between."""
    from nemo_notebook._display import StreamSink, TurnPrinter

    panel = Panel(session=idle_session(tmp_path))
    now = [0.0]
    view = TurnInPanel(panel._transcript, panel._words, lambda: now[0])
    printer = TurnPrinter(StreamSink(view.write, rate=10, clock=lambda: now[0]))
    updates: list[str] = []
    for number in range(100):  # 100 pieces of text within one second
        now[0] = number * 0.01
        event = TextDelta(f"w{number} ")
        view.on_event(event)  # what stream_turn does with each event
        printer.handle(event)
        if number == 0:
            (words,) = pieces_of(panel, "words")
            words.observe(lambda change: updates.append(change["new"]), "html")
    printer.close()
    view.end(None)
    assert 5 <= len(updates) <= 11  # ~10 in that second, then the final flush
    assert words.html == "<p>" + " ".join(f"w{n}" for n in range(100)) + "</p>\n"


def test_a_long_tool_call_shows_its_elapsed_time(tmp_path: Path) -> None:
    panel = Panel(session=idle_session(tmp_path))
    now = [100.0]
    view = TurnInPanel(panel._transcript, panel._words, lambda: now[0])
    view.on_event(ToolCall("generate_video", {"prompt": "sea"}, "call_v"))
    view.write("· generating video…\n")  # a (rate-limited) write of the stream shows it
    (status,) = pieces_of(panel, "status")
    assert status.running and status.elapsed == 0  # the view counts on from here
    now[0] = 220.0
    view.on_event(StillWorking(120.0))  # heartbeats only: the line's clock is set again
    view.write("· still working… (2 min so far, nothing needs doing)\n")
    assert status.running and status.elapsed == 120.0
    assert not pieces_of(panel, "note")  # the running line says it; no extra note
    now[0] = 245.0
    view.on_event(ToolResult("generate_video", {}, "call_v"))
    view.on_event(TextDelta("Here is your video."))
    view.end(None)
    assert status.html == (
        "<span class='nemo-st-text'>generating video…</span> "
        "<span class='nemo-st-time'>2 min 25 s</span>"
    )
    assert not status.running and status.elapsed == 145.0
    assert pieces_of(panel, "words")[0].html == "<p>Here is your video.</p>\n"
    assert panel.transcript == (
        "· generating video…\n· still working… (2 min so far, nothing needs doing)\n"
    )
    quick = TurnInPanel(panel._transcript, panel._words, lambda: now[0])
    quick.on_event(ToolCall("add_music", {}, "call_m"))
    quick.end(None)  # a tool that answered at once shows no time
    assert pieces_of(panel, "status")[-1].html == "<span class='nemo-st-text'>adding music…</span>"


def test_a_status_line_runs_until_its_tool_answers(tmp_path: Path) -> None:
    backend = FakeBackend(turn=scripted_turn(sse(adk_call("generate_image", {}, "c1"))))
    backend.turn_gate = gate = Gate()
    panel = Panel(session=fake_session(backend, tmp_path), stream_rate=0)
    panel.submit("an image")
    assert gate.reached.wait(10)
    assert wait_until(lambda: bool(pieces_of(panel, "status")))
    (status,) = pieces_of(panel, "status")
    assert status.running and "generating image…" in status.html  # the view ticks its clock
    assert panel.can_stop and panel.activity == "turn"
    gate.open()
    assert panel.wait(10)
    assert not status.running  # the turn ended: no line keeps spinning


ASPECT = Question("Which aspect ratio?", ("16:9 landscape", "9:16 portrait"), "call_1")


def test_a_question_becomes_buttons_that_send_the_answer(tmp_path: Path) -> None:
    ask = adk_question(ASPECT.text, list(ASPECT.options), "call_1")
    backend = FakeBackend(turn=scripted_turn(sse(ask)))  # every turn asks it again
    panel = Panel(session=fake_session(backend, tmp_path))
    panel.submit("make a video of the sea")
    assert panel.wait(10)
    assert panel.last_reply is not None and panel.last_reply.question == ASPECT
    assert "Which aspect ratio?\n1. 16:9 landscape\n2. 9:16 portrait\n" in panel.transcript
    assert panel.options == ["16:9 landscape", "9:16 portrait"]
    (listed,) = pieces_of(panel, "options")
    assert listed.html == (
        "<ol class='nemo-options-list'><li>16:9 landscape</li><li>9:16 portrait</li></ol>"
    )
    assert panel.status_tone == "question" and "asked a question" in panel.status
    backend.turn_gate = Gate()  # the answer's turn runs until the gate opens
    view_says(panel, "answer", number=2)  # the second option's button
    assert backend.turn_gate.reached.wait(10)
    assert backend.sent_messages() == ["make a video of the sea", "9:16 portrait"]
    assert panel.busy and panel.options == []  # gone once answered; chips disabled while busy
    backend.turn_gate.open()
    assert panel.wait(10)
    assert "› 9:16 portrait\n" in panel.transcript
    backend.turn_gate = None
    panel.prompt = "1"  # typing the number works as well
    panel.submit()
    assert panel.wait(10) and backend.sent_messages()[-1] == "16:9 landscape"
    assert "› 1\n· answering: 16:9 landscape\n" in panel.transcript
    you_note = [piece for piece in pieces_of(panel, "note") if piece.role == "you"]
    assert "answering: 16:9 landscape" in you_note[-1].html
    panel.submit("something else entirely")
    assert panel.wait(10) and backend.sent_messages()[-1] == "something else entirely"
    assert len(backend.sent_messages()) == 4


def test_the_view_drives_the_panel_with_messages(tmp_path: Path) -> None:
    backend = FakeBackend(
        turn=scripted_turn(sse(adk_text("Hello."))),
        drafts=[draft_with_video()],
        render_script=[{"status": "completed", "progress": 100}],
        rendered={"mp4": b"\x00\x00\x00\x18ftypmp42 not a real mp4"},
    )
    panel = Panel(session=fake_session(backend, tmp_path), base_dir=tmp_path)
    sent: list[Any] = []
    panel.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    view_says(panel, "submit", text="  hello  ")  # Enter in the input box
    assert panel.wait(10) and backend.sent_messages() == ["hello"]
    assert sent == [{"event": "sent", "text": "hello"}]  # the view then clears its input box
    view_says(panel, "export")
    assert panel.wait(10) and panel.last_error is None, panel.last_error
    assert backend.export_formats() == ["mp4"]
    view_says(panel, "action", id="credits")
    assert panel.wait(10) and panel.credits == "70 credits"
    assert panel.credits_title == "Credits available (reserved by running work: 10)"
    view_says(panel, "action", id="delete-everything")  # not an action: ignored
    view_says(panel, "stop")
    assert panel.status == "Nothing to stop."
    assert backend.sent_messages() == ["hello"]


def test_a_silent_turn_with_unknown_changes_says_so(tmp_path: Path) -> None:
    backend = FakeBackend(turn=scripted_turn(sse(adk_call("trim", {"to": "tight"}))))
    backend.state_down_after = 1  # the state endpoint fails once the turn has ended
    panel = Panel(session=fake_session(backend, tmp_path, read_state=False))
    panel.submit("tighten the cut")
    assert panel.wait(10)
    assert panel.last_reply is not None and not panel.last_reply.changes_known
    assert "· What changed in the timeline is unknown" in panel.transcript
    assert "did not change" not in panel.transcript
    (note,) = pieces_of(panel, "note")
    assert "What changed in the timeline is unknown" in note.html


def test_a_silent_turn_lists_what_changed(tmp_path: Path) -> None:
    backend = FakeBackend(
        turn=scripted_turn(sse(adk_call("add_text", {}))),
        drafts=[title_draft("Old"), title_draft("New")],
    )
    panel = Panel(session=fake_session(backend, tmp_path))
    panel.submit("retitle")
    assert panel.wait(10) and panel.last_error is None, panel.last_error
    (changes,) = pieces_of(panel, "changes")
    assert changes.html.startswith("<div class='nemo-changes-title'>What changed</div><ul><li>")
    assert "New" in changes.html


def test_exported_stills_and_videos_show_by_kind(tmp_path: Path) -> None:
    panel = Panel(session=idle_session(tmp_path), base_dir=tmp_path)
    still, clip, other = tmp_path / "a.png", tmp_path / "a.webm", tmp_path / "a.xyz"
    for path in (still, clip, other):
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
    panel._show_export(still)
    assert (panel.export_name, panel.export_mime) == ("a.png", "image/png") and panel.export_data
    panel._show_export(clip)
    assert (panel.export_mime, panel.export_data) == ("video/webm", clip.read_bytes())
    panel._show_export(other)
    assert panel.export_mime == "" and panel.export_data == b""
    assert "does not play here" in panel.export_note
    panel.embed_limit_mb = 0
    panel._show_export(clip)
    assert panel.export_data == b"" and "too large to show here" in panel.export_note
    assert panel._next_export_path("png") == tmp_path / "nemo-panel-1.png"


def test_errors_show_in_the_panel_and_the_buttons_come_back(tmp_path: Path) -> None:
    backend = FakeBackend(
        turn=scripted_turn(sse(adk_text("partial")), sse(error_frame(f"boom {XSS}"))),
        state_down_after=0,  # and the state cannot be read at all
    )
    panel = Panel(session=fake_session(backend, tmp_path, read_state=False))
    panel.submit("anything")
    assert panel.wait(10)
    assert_idle(panel)
    assert isinstance(panel.last_error, StreamFailedError)
    assert f"boom {XSS}" in str(panel.last_error)
    assert panel.status_tone == "error" and panel.status.startswith("Error: ")
    assert f"boom {XSS}" in panel.status  # a text trait: the view shows it as text
    (error,) = pieces_of(panel, "error")
    assert error.role == "system" and "boom &lt;img" in error.html and XSS not in error.html
    assert "Error: The agent reported an error: boom" in panel.transcript
    assert backend.count("POST", "/run_sse") == 1  # nothing was retried
    panel.show_tracks()  # the timeline path recovers from a failure too
    assert panel.wait(10)
    assert_idle(panel)
    assert isinstance(panel.last_error, ServerError)
    assert "state is down" in panel.status


def test_chinese_labels_and_status_lines(tmp_path: Path) -> None:
    backend = FakeBackend(
        turn=scripted_turn(sse(adk_call("generate_image", {})), sse(adk_text("好")))
    )
    panel = Panel(session=fake_session(backend, tmp_path), language="zh-CN")
    assert panel.labels["send"] == "发送" and panel.status == "就绪。"
    assert panel.labels == WORDS["zh"] and set(WORDS["zh"]) == set(EN)
    panel.submit("生成一张图片")
    assert panel.wait(10) and panel.last_error is None, panel.last_error
    (status,) = pieces_of(panel, "status")
    assert "正在生成图片…" in status.html
    assert panel.status == "完成。" and panel.credits == "70 积分"
    panel.submit("")
    assert panel.status == "请先输入消息。"
    assert Panel(session=idle_session(tmp_path), language="fr").labels["send"] == "Send"


def test_a_panel_on_a_session_with_turns_shows_them(tmp_path: Path) -> None:
    ask = adk_question(ASPECT.text, list(ASPECT.options))
    backend = FakeBackend(
        turn=scripted_turn(sse(adk_text("A **city** at night.")), sse(ask)),
        drafts=[{}, draft_with_video("Night")],
    )
    session = fake_session(backend, tmp_path)
    session.send("generate a city at night")  # e.g. a %%nemo cell, before the panel opened
    credits_before = backend.count("GET", "/api/credits/balance/simple")
    panel = Panel(session=session)
    you, words, options = panel.pieces
    assert "generate a city at night" in you.html and "<strong>city</strong>" in words.html
    assert options.kind == "options" and panel.options == list(ASPECT.options)
    assert panel.status_tone == "question"
    assert "data-tracks='2'" in panel.timeline_html and "Night" in panel.timeline_html
    assert panel.wait(10)  # the header's credits are read in the background
    assert panel.credits == "70 credits"
    assert backend.count("GET", "/api/credits/balance/simple") == credits_before + 1
    assert "› generate a city at night\nA **city** at night." in panel.transcript
    session.send("1")  # a turn made outside the panel since it opened is shown first
    panel.submit("and add music")
    assert panel.wait(10) and panel.last_error is None, panel.last_error
    messages = [piece.html for piece in pieces_of(panel, "text")]
    assert len(messages) == 3 and ">1<" in messages[1] and "and add music" in messages[2]


def test_the_panel_publishes_a_static_copy_that_follows_the_conversation(tmp_path: Path) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    backend = FakeBackend(turn=scripted_turn(sse(adk_text(f"Here is *{XSS}*."))))
    panel = Panel(session=fake_session(backend, tmp_path))
    with capture_output() as captured:
        panel._ipython_display_()
        panel.submit("hello there")
        assert panel.wait(10)
    live, copy, update = captured.outputs
    assert live.data["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.model_id
    assert "text/html" in live.data and "NemoVideo" in live.data["text/plain"]
    display_id = f"nemo-panel-{panel.panel_id}"
    assert copy.transient == {"display_id": display_id} and not copy.update
    assert f"nemo-static-{panel.panel_id}" in copy.data["text/html"]
    assert "No messages yet." in copy.data["text/html"]
    assert update.update and update.transient == {"display_id": display_id}
    saved = update.data["text/html"]
    assert "hello there" in saved and "<em>&lt;img src=x onerror=alert(1)&gt;</em>" in saved
    assert XSS not in saved and "<style>" in saved
    assert "› hello there" in update.data["text/plain"]
    data, _metadata = panel._repr_mimebundle_()
    assert data["text/html"] == saved and panel.model_id in json.dumps(data)


# --------------------------------------------------------------------------- against the emulator


@pytest.fixture
def client(emulator: Any) -> Iterator[NemoClient]:
    with NemoClient(api_url=emulator.url) as nemo:
        yield nemo


def test_panel_turn_and_export_against_the_emulator(
    client: NemoClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    panel = Panel(client=client)
    panel.submit(CITY)
    assert panel.wait(60)
    assert_idle(panel)
    assert panel.last_error is None, panel.last_error
    reply = panel.last_reply
    assert reply is not None and reply.text
    shown = [line for line in panel.transcript.split("\n") if not line.startswith("· ")]
    assert " ".join(reply.text.split()) in " ".join(" ".join(shown).split())
    assert panel.transcript.startswith(f"Connected to {client.api_url}.\n")
    connected = panel.pieces[0]
    assert connected.role == "system" and client.api_url in connected.html
    assert "/workspace/claim?ct=" in panel.claim_html  # right after the session started
    assert "a server on this machine" in panel.claim_html
    first_claim = panel.claim_html
    assert "<caption>Timeline (" in panel.timeline_html
    assert panel.credits.endswith(" credits")
    assert len(pieces_of(panel, "image")) == 1 and pieces_of(panel, "status")

    can_stop_during_export: list[bool] = []
    panel.observe(lambda change: can_stop_during_export.append(change["new"]), "can_stop")
    panel.export()
    assert panel.activity == "export" and not panel.can_stop  # an export cannot stop
    assert panel.wait(120)
    assert_idle(panel)
    assert panel.last_error is None, panel.last_error
    assert True not in can_stop_during_export
    assert panel.last_video == tmp_path / "nemo-panel-1.mp4"
    assert panel.export_name == "nemo-panel-1.mp4" and panel.export_mime == "video/mp4"
    assert panel.export_data[4:8] == b"ftyp"
    assert "/workspace/claim?ct=" in panel.claim_html
    assert panel.claim_html != first_claim  # a fresh link delivered with the video
    assert panel.status == "Saved nemo-panel-1.mp4."
    assert pieces_of(panel, "note")[-1].html.endswith("Exported nemo-panel-1.mp4.</span>")
    static = panel._static_bundle()["text/html"]
    assert "href='nemo-panel-1.mp4'" in static and "data:image/" in static
    assert "nmv_usr_" not in live_html(panel) + panel.transcript + static


def test_a_panel_from_the_notebook_writes_its_turns_and_exports_to_the_ledger(
    emulator: Any, tmp_path: Path
) -> None:
    from IPython.utils.capture import capture_output

    from nemo_notebook import Ledger
    from nemo_notebook._commands import SessionArgs
    from nemo_notebook._workspace import Workspace

    workspace = Workspace(base_dir=tmp_path)
    with capture_output():
        workspace.connect(emulator.url)
        panel = workspace.panel(SessionArgs())
    panel.submit(CITY)
    assert panel.wait(60) and panel.last_error is None
    panel.export()
    assert panel.wait(120) and panel.last_error is None
    jobs = Ledger.in_folder(tmp_path).jobs()
    assert [(job.kind, job.status, job.session_name) for job in jobs] == [
        ("export", "completed", "main"),
        ("turn", "completed", "main"),
    ]
    assert jobs[0].render_id and jobs[0].output == str(panel.last_video)
    workspace.close()


def test_panel_uploads_several_files_in_one_request(
    client: NemoClient, emulator: Any, tmp_path: Path
) -> None:
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63f8cf80c00f0004850180848a9c2100000000"
        "49454e44ae426082"
    )
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for path in paths:
        path.write_bytes(png)
    panel = Panel(client=client)
    panel.show_tracks()  # connect first
    assert panel.wait(30)
    upload_path = f"/api/upload-video/nemo_agent/me/{panel._session.id}"
    assert panel.upload(*map(str, paths))
    assert panel.wait(30)
    assert panel.last_error is None, panel.last_error
    assert emulator.faults.count("POST", upload_path) == 1
    assert "· Uploaded a.png, b.png.\n" in panel.transcript
    assert panel.status == "Uploaded a.png, b.png."


def test_a_lost_session_is_replaced_and_said_in_the_panel(client: NemoClient) -> None:
    client.recreate_missing_sessions = True  # as the magics' client and the panel's own are
    panel = Panel(client=client)
    panel.show_tracks()
    assert panel.wait(30)
    lost = panel._session.id = "9" * 19
    panel.submit("add a title 'Back Again'")
    assert panel.wait(60)
    assert panel.last_error is None, panel.last_error
    assert replaced_line(lost, panel._session.id) in panel.transcript


def test_a_panel_of_its_own_replaces_lost_sessions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made: list[dict[str, Any]] = []
    backend = FakeBackend(turn=scripted_turn(sse(adk_text("Hello."))))

    def recorded(**kwargs: Any) -> NemoClient:  # the real client, over the scripted backend
        made.append(kwargs)
        return NemoClient(
            api_url=API_URL, transport=backend.transport(), config_dir=tmp_path, **kwargs
        )

    monkeypatch.setattr("nemo_notebook._workflows.NemoClient", recorded)
    panel = Panel()
    panel.submit("hello")
    assert panel.wait(10)
    assert panel.last_error is None, panel.last_error
    assert made == [{"language": "en", "recreate_missing_sessions": True}]
    assert panel._session is not None and panel._session.client.recreate_missing_sessions
    assert backend.sent_messages() == ["hello"]


def test_a_question_of_the_agent_answered_with_a_button(client: NemoClient, emulator: Any) -> None:
    emulator.set_variants("ask-question")  # the first generation request is asked back
    try:
        panel = Panel(client=client)
        panel.submit(CITY + " for 1 second")
        assert panel.wait(60) and panel.last_error is None, panel.last_error
        question = panel.last_reply.question
        assert question is not None and len(question.options) >= 2
        assert panel.options == list(question.options)
        assert question.text in panel.transcript and f"2. {question.options[1]}" in panel.transcript
        view_says(panel, "answer", number=1)
        assert panel.wait(60) and panel.last_error is None, panel.last_error
    finally:
        emulator.set_variants(None)
    assert f"› {question.options[0]}\n" in panel.transcript
    assert panel.options == []
    assert panel.last_reply.message == question.options[0] and panel.last_reply.text
    assert len(pieces_of(panel, "image")) == 1


def test_routed_messages_in_the_panel(client: NemoClient) -> None:
    panel = Panel(client=client)
    panel.submit("show tracks")
    assert panel.wait(30)
    assert panel.last_error is None, panel.last_error
    assert pieces_of(panel, "text")[0].html == "<div class='nemo-you-text'>show tracks</div>"
    assert panel.status.startswith("Timeline (0 tracks)")
    assert panel.timeline_html == ""  # an empty timeline draws no card
    panel.submit("export")
    assert panel.wait(30)
    assert_idle(panel)
    assert panel.status_tone == "error" and "Nothing to export yet" in panel.status


def test_stop_mid_stream_never_resends(client: NemoClient, emulator: Any) -> None:
    faults = emulator.faults
    panel = Panel(client=client)
    panel.show_tracks()  # connect first, so the request log below holds only the turn
    assert panel.wait(30)
    faults.heartbeat_only(3000)  # 30 s of keep-alives at the test time scale
    faults.clear_requests()
    try:
        panel.submit("add a title 'Stop Me'")
        assert wait_until(lambda: panel.events_seen >= 2), "no heartbeat arrived"
        assert panel.busy and panel.can_stop and panel.activity == "turn"
        assert panel.submit("a second message") is False  # one request at a time
        assert "press Stop" in panel.status
        view_says(panel, "stop")
        assert panel.wait(10)
        assert_idle(panel)
        assert panel.last_error is None, panel.last_error
        assert panel.status == EN["stopped"] and panel.status_tone == "stopped"
        # it names only what exists: the "Show timeline" chip is there
        assert panel.actions == [{"id": "status", "label": "Show timeline"}]
        assert "Show tracks" not in panel.status and "%nemo" not in panel.status
        assert panel.transcript.endswith("(stopped)\n")
        assert wait_until(lambda: faults.count("POST", "/run_sse") >= 1)
        time.sleep(0.3)
        assert faults.count("POST", "/run_sse") == 1
    finally:
        faults.reset()


def test_stop_is_refused_while_an_export_runs(tmp_path: Path) -> None:
    backend = FakeBackend(
        drafts=[draft_with_video()],
        render_script=[{"status": "completed", "progress": 100}],
        rendered={"mp4": b"\x00\x00\x00\x18ftypmp42 not a real mp4"},
    )
    session = fake_session(backend, tmp_path)
    panel = Panel(session=session, base_dir=tmp_path)
    state_url = f"{API_URL}/api/state/nemo_agent/me/{session.id}/latest"
    backend.gates[state_url] = gate = Gate()  # the export reads the draft first: held here
    panel.export()
    assert gate.reached.wait(10)
    assert panel.busy and panel.activity == "export" and not panel.can_stop
    assert panel.export() is False and panel.status == EN["busy_export"]
    panel.stop()
    assert panel.status == EN["export_cannot_stop"] and panel.busy
    gate.open()
    assert panel.wait(10) and panel.last_error is None, panel.last_error
    assert_idle(panel)
    assert panel.status == "Saved nemo-panel-1.mp4." and panel.export_mime == "video/mp4"


def test_failure_from_the_server_reenables_the_panel(client: NemoClient, emulator: Any) -> None:
    panel = Panel(client=client)
    emulator.faults.fail_requests(1, status=500, path_prefix="/run_sse")
    try:
        panel.submit("add a title 'Broken'")
        assert panel.wait(60)
    finally:
        emulator.faults.reset()
    assert_idle(panel)
    assert isinstance(panel.last_error, NemoError)
    assert panel.status_tone == "error"
    panel.submit("add a title 'Works'")
    assert panel.wait(60)
    assert panel.last_error is None, panel.last_error
    assert panel.status_tone == "done"


# --------------------------------------------------------------------------- limits


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


def media_backend(text: str, urls: list[str], media: dict[str, bytes]) -> FakeBackend:
    """A turn that says ``text`` and after which ``urls`` are new in ``generated_media``."""
    return FakeBackend(
        turn=scripted_turn(sse(adk_text(text))),
        generated_media=[[], [{"url": url} for url in urls]],
        media=media,
    )


def test_stop_takes_effect_while_the_result_of_a_turn_is_shown(tmp_path: Path) -> None:
    first, second = "http://h/media/generated/a.png", "http://h/media/generated/b.png"
    backend = media_backend(
        "Here are two. Click Export to render it.",
        [first, second],
        {first: _png(8, 8), second: _png(8, 8)},
    )
    backend.gates[first] = gate = Gate()
    panel = Panel(session=fake_session(backend, tmp_path))
    panel.submit("two images")
    assert gate.reached.wait(10)  # the stream is over; the images are being fetched
    assert panel.can_stop  # Stop still works while the result is shown
    panel.stop()
    gate.open()
    assert panel.wait(10)
    assert_idle(panel)
    assert backend.fetched_media() == [first]  # nothing after the Stop
    assert panel.transcript.endswith("(stopped)\n")
    assert panel.status == EN["stopped"]
    assert panel.last_reply is not None and panel.last_reply.actions == ("export",)
    assert panel.actions == [{"id": "status", "label": "Show timeline"}]  # not the reply's
    assert backend.sent_messages() == ["two images"]


def test_transcript_traffic_grows_with_the_text_not_its_square(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import comm

    sent: list[int] = []

    def publish(self: Any, msg_type: str, data: Any = None, *args: Any, **kwargs: Any) -> None:
        sent.append(len(json.dumps(data, default=str)))

    monkeypatch.setattr(comm.DummyComm, "publish_msg", publish)
    reply_text = "".join(f"line {n:03d} of a long answer <b>&</b>\n" for n in range(27))[:1000]
    chunks = [sse(adk_text(reply_text[i : i + 100], partial=True)) for i in range(0, 1000, 100)]
    backend = FakeBackend(turn=scripted_turn(*chunks, sse(adk_text(reply_text))))
    panel = Panel(session=fake_session(backend, tmp_path), clock=lambda: 0.0)
    sent.clear()  # the panel's own opening (its view's script and style) is sent once
    for number in range(200):
        panel.submit(f"message {number}")
        assert panel.wait(10)
    assert panel.last_error is None, panel.last_error
    assert backend.count("POST", "/run_sse") == 200
    assert panel.transcript.count(reply_text) == 200
    # every message of every comm (pieces, status, credits…) counted: re-sending the whole
    # transcript on every write made this ~200x the text
    assert sum(sent) < 5 * len(panel.transcript)
    assert all(len(group.pieces) <= 20 for group in panel.groups)
    static = panel.transcript_html
    assert static.count("line 026 of a long answer &lt;b&gt;&amp;&lt;/b&gt;") == 200
    assert "message 199" in static


def test_a_long_streamed_reply_is_split_into_bounded_pieces(tmp_path: Path) -> None:
    text = "".join(f"paragraph {n}\n" for n in range(3000))
    chunks = [sse(adk_text(text[i : i + 50], partial=True)) for i in range(0, len(text), 50)]
    backend = FakeBackend(turn=scripted_turn(*chunks))
    panel = Panel(session=fake_session(backend, tmp_path), stream_rate=0)
    panel.submit("a long one")
    assert panel.wait(20)
    assert panel.last_error is None, panel.last_error
    words = pieces_of(panel, "words")
    assert len(words) >= 3 and max(len(piece.html) for piece in words) < 20_000
    assert len({piece.bubble for piece in words}) == 1  # still one bubble
    assert all(len(group.pieces) <= 20 for group in panel.groups)
    assert text in panel.transcript


def test_panel_images_are_960_px_previews_shared_with_the_transcript(tmp_path: Path) -> None:
    from PIL import Image

    url = "http://h/media/generated/wide.png"
    backend = media_backend("Done.", [url], {url: _png(2400, 1200)})
    panel = Panel(session=fake_session(backend, tmp_path))
    panel.submit("a wide image")
    assert panel.wait(10) and panel.last_error is None, panel.last_error
    assert backend.fetched_media() == [url]
    (card,) = pieces_of(panel, "image")
    encoded = card.html.split("base64,", 1)[1].split("'", 1)[0]
    assert Image.open(io.BytesIO(base64.b64decode(encoded))).size == (960, 480)
    assert "class='nemo-thumb'" in card.html and "alt='wide.png'" in card.html
    assert encoded in panel.transcript_html


def test_panel_skips_broken_image_urls_and_huge_images_with_a_note(tmp_path: Path) -> None:
    good, huge = "http://h/media/generated/ok.png", "http://h/media/generated/huge.png"
    forged = bytearray(_png(4, 4))
    forged[16:24] = (20000).to_bytes(4, "big") * 2  # the header claims 20000x20000
    bad = ["file:///etc/passwd.png", "javascript:alert(1)//.png", "http://[::1/a.png",
           "http://h/\x00.png", "http://h/" + "a" * 70_000 + ".png"]  # fmt: skip
    backend = media_backend("Done.", [*bad, huge, good], {good: _png(8, 8), huge: bytes(forged)})
    panel = Panel(session=fake_session(backend, tmp_path))
    panel.submit("images")
    assert panel.wait(10) and panel.last_error is None, panel.last_error
    assert backend.fetched_media() == [huge, good]
    assert len(pieces_of(panel, "image")) == 1
    assert panel.transcript.count("· A generated image was skipped") == 5
    assert "huge.png is not shown: 20000x20000 pixels" in panel.transcript
    assert panel.status == "Done."


def test_timeline_card_has_bars_and_a_compact_capped_table(tmp_path: Path) -> None:
    segments = [
        {"st": n * 1000, "d": 1000, "n": f"clip {n}", "src": f"http://127.0.0.1:9/media/{n}.mp4"}
        for n in range(12)
    ]
    music = {"tt": 1, "n": "BGM", "sg": [{"st": 0, "d": 12000, "n": "Lo-fi", "v": 0.35}]}
    backend = FakeBackend(
        turn=scripted_turn(sse(adk_text("Done."))),
        drafts=[{"t": [{"tt": 0, "sg": segments}, music]}],
    )
    panel = Panel(session=fake_session(backend, tmp_path), max_table_rows=5)
    panel.submit("show")
    assert panel.wait(10)
    assert panel.last_error is None, panel.last_error
    shown = panel.timeline_html
    assert shown.count("class='nemo-tl-bar'") == 13  # every segment drawn on the time axis
    assert "left:50.00%;width:8.33%" in shown  # clip 6 starts at 6 s of 12 s
    assert "nemo-tl-video" in shown and "nemo-tl-audio" in shown
    assert shown.count("<td title='clip ") == 5 and "… 8 more rows" in shown
    assert "NaN" not in shown and "nan" not in shown
    assert "<td title='http://127.0.0.1:9/media/0.mp4'>0.mp4</td>" in shown  # short, URL on hover
    assert "<span style='left:41.7%'>5 s</span>" in shown  # round seconds on the axis
    panel.max_table_rows = 20
    panel.show_tracks()
    assert panel.wait(10)
    assert "35%</td>" in panel.timeline_html and "more rows" not in panel.timeline_html


def test_an_exported_still_shows_as_a_preview_and_a_huge_one_as_a_note(tmp_path: Path) -> None:
    from PIL import Image

    panel = Panel(session=idle_session(tmp_path), base_dir=tmp_path, max_image_pixels=4_000_000)
    still = tmp_path / "nemo-panel-1.png"
    still.write_bytes(_png(2400, 1200))
    panel._show_export(still)
    assert panel.export_mime == "image/jpeg"
    assert Image.open(io.BytesIO(panel.export_data)).size == (960, 480)
    still.write_bytes(_png(2400, 1700))
    panel._show_export(still)
    assert panel.export_data == b"" and "2400x1700 pixels" in panel.export_note


def test_transcript_html_escapes_the_persons_words(tmp_path: Path) -> None:
    panel = Panel(session=idle_session(tmp_path))
    panel._transcript.you(XSS)
    assert XSS not in panel.transcript_html and html.escape(XSS) in panel.transcript_html
