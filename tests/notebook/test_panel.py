"""The prompt panel, driven through the methods its buttons call."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pytest
from fake_backend import (
    API_URL,
    FakeBackend,
    Gate,
    adk_call,
    adk_question,
    adk_text,
    error_frame,
    fake_client,
    scripted_turn,
    sse,
)

from nemo_notebook._client import NemoClient, Session
from nemo_notebook._errors import NemoError, ServerError, StreamFailedError
from nemo_notebook._events import Question
from nemo_notebook._panel import STOPPED_STATUS, Panel
from nemo_notebook._workflows import replaced_line

CITY = "generate a realistic image of a futuristic city at night"
XSS = "<img src=x onerror=alert(1)>"


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def assert_idle(panel: Panel) -> None:
    assert not panel.busy
    assert not panel.send_button.disabled
    assert not panel.export_button.disabled
    assert panel.stop_button.disabled
    assert all(not button.disabled for button in panel.actions_box.children)


def live_transcript_html(panel: Panel) -> str:
    """The HTML of the transcript's widgets, as the frontend has them."""
    return "".join(piece.value for box in panel.reply_view.children for piece in box.children)


def all_html(panel: Panel) -> str:
    parts = [panel.status.value, panel.credits_badge.value, live_transcript_html(panel)]
    parts += [panel.transcript_html]
    parts += [panel.tracks_view.value]
    parts += [child.value for child in panel.video_box.children if isinstance(child, widgets.HTML)]
    parts += [panel.claim_view.value]
    return "\n".join(parts)


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


def test_panel_layout_and_initial_state(tmp_path: Path) -> None:
    panel = Panel(session=idle_session(tmp_path))
    assert isinstance(panel, widgets.VBox)
    assert isinstance(panel.prompt, widgets.Textarea)
    assert [b.description for b in (panel.send_button, panel.stop_button, panel.export_button)] == [
        "Send",
        "Stop",
        "Export",
    ]
    assert_idle(panel)
    assert panel.submit("") is False
    assert "Type a message first" in panel.status.value
    panel.stop()
    assert "Nothing to stop" in panel.status.value


def test_scripted_turn_escapes_and_turns_actions_into_buttons(tmp_path: Path) -> None:
    said = (
        f"{XSS}. Click Export to render it. Preview it in the timeline. Drag the clip to move it."
    )
    backend = FakeBackend(
        turn=scripted_turn(
            sse(adk_text("Title set to ")), sse(adk_call("add_text", {"text": XSS})),
            sse(adk_text(said)),
        ),
        drafts=[title_draft("old"), title_draft(XSS)],
        fail_next=[("/api/credits", 503, {"code": 503, "message": "credits are down"})],
    )  # fmt: skip
    session = fake_session(backend, tmp_path)
    panel = Panel(session=session)
    panel.prompt.value = f"set the title to {XSS}"
    assert panel.submit() is True
    assert panel.wait(10)
    assert_idle(panel)
    assert panel.last_error is None, panel.last_error
    assert backend.sent_messages() == [f"set the title to {XSS}"]
    assert panel.prompt.value == ""
    assert XSS in panel.transcript
    assert XSS not in all_html(panel)
    assert "&lt;img src=x onerror=alert(1)&gt;" in live_transcript_html(panel)
    assert "&lt;img src=x onerror=alert(1)&gt;" in panel.transcript_html
    assert "&lt;img" in panel.tracks_view.value and "<caption>" in panel.tracks_view.value
    reply = session.history[-1].reply
    assert reply.actions == ("export", "status", "chat")  # "chat" has no button
    assert [b.description for b in panel.actions_box.children] == ["Export", "Show tracks"]
    assert panel.credits_badge.value.endswith("credits: ?</span>")
    assert panel.last_reply is reply and XSS in reply.text


ASPECT = Question("Which aspect ratio?", ("16:9 landscape", "9:16 portrait"), "call_1")


def test_a_question_becomes_buttons_that_send_the_answer(tmp_path: Path) -> None:
    ask = adk_question(ASPECT.text, list(ASPECT.options), "call_1")
    backend = FakeBackend(turn=scripted_turn(sse(ask)))  # every turn asks it again
    panel = Panel(session=fake_session(backend, tmp_path))
    panel.submit("make a video of the sea")
    assert panel.wait(10)
    assert panel.last_reply is not None and panel.last_reply.question == ASPECT
    assert "Which aspect ratio?\n1. 16:9 landscape\n2. 9:16 portrait\n" in panel.transcript
    buttons = panel.options_box.children
    assert [button.description for button in buttons] == ["16:9 landscape", "9:16 portrait"]
    assert "asked a question" in panel.status.value
    assert "nemo-options" in panel.options_box._dom_classes
    backend.turn_gate = Gate()  # the answer's turn runs until the gate opens
    buttons[1].click()
    assert backend.turn_gate.reached.wait(10)
    assert backend.sent_messages() == ["make a video of the sea", "9:16 portrait"]
    assert all(button.disabled for button in buttons)  # while the answer's turn runs
    assert panel.options_box.children == ()  # gone once answered
    backend.turn_gate.open()
    assert panel.wait(10)
    assert "› 2\n· answering: 9:16 portrait\n" in panel.transcript
    backend.turn_gate = None
    panel.prompt.value = "1"  # typing the number works as well
    panel.submit()
    assert panel.wait(10) and backend.sent_messages()[-1] == "16:9 landscape"
    panel.submit("something else entirely")
    assert panel.wait(10) and backend.sent_messages()[-1] == "something else entirely"
    assert len(backend.sent_messages()) == 4


def test_option_buttons_are_disabled_while_a_turn_runs(tmp_path: Path) -> None:
    panel = Panel(session=idle_session(tmp_path))
    panel._show_question(ASPECT)
    panel._set_busy(True)
    assert all(button.disabled for button in panel.options_box.children)
    panel._set_busy(False)
    assert not any(button.disabled for button in panel.options_box.children)


def test_a_silent_turn_with_unknown_changes_says_so(tmp_path: Path) -> None:
    backend = FakeBackend(turn=scripted_turn(sse(adk_call("trim", {"to": "tight"}))))
    backend.state_down_after = 1  # the state endpoint fails once the turn has ended
    panel = Panel(session=fake_session(backend, tmp_path, read_state=False))
    panel.submit("tighten the cut")
    assert panel.wait(10)
    assert panel.last_reply is not None and not panel.last_reply.changes_known
    assert "· What changed in the timeline is unknown" in panel.transcript
    assert "did not change" not in panel.transcript


def test_exported_stills_and_videos_show_by_kind(tmp_path: Path) -> None:
    panel = Panel(session=idle_session(tmp_path), base_dir=tmp_path)
    still, clip, other = tmp_path / "a.png", tmp_path / "a.webm", tmp_path / "a.xyz"
    for path in (still, clip, other):
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
    image, video, note = (panel._player(path) for path in (still, clip, other))
    assert isinstance(image, widgets.Image) and image.format == "png"
    assert isinstance(video, widgets.Video) and video.format == "webm"
    assert isinstance(note, widgets.HTML) and "does not play here" in note.value
    assert panel._next_export_path("png") == tmp_path / "nemo-panel-1.png"


def test_errors_show_in_the_panel_and_buttons_come_back(tmp_path: Path) -> None:
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
    assert "StreamFailedError" in panel.status.value and XSS not in panel.status.value
    assert "error: The agent reported an error: boom" in panel.transcript
    assert backend.count("POST", "/run_sse") == 1  # nothing was retried
    # the action button path also recovers from a failure
    panel.show_tracks()
    assert panel.wait(10)
    assert_idle(panel)
    assert isinstance(panel.last_error, ServerError)
    assert "state is down" in panel.status.value


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
    assert "/workspace/claim?ct=" in panel.claim_view.value  # right after the session started
    assert "a server on this machine" in panel.claim_view.value
    first_claim = panel.claim_view.value
    assert "<caption>Timeline (" in panel.tracks_view.value
    assert panel.credits_badge.value.endswith(" credits</span>")
    assert [type(child) for child in panel.media_box.children] == [widgets.Image]

    panel.export()
    assert panel.wait(120)
    assert_idle(panel)
    assert panel.last_error is None, panel.last_error
    assert panel.last_video == tmp_path / "nemo-panel-1.mp4"
    (player,) = panel.video_box.children
    assert isinstance(player, widgets.Video) and player.value[4:8] == b"ftyp"
    assert player.format == "mp4"
    assert "/workspace/claim?ct=" in panel.claim_view.value
    assert panel.claim_view.value != first_claim  # a fresh link delivered with the video
    assert "Saved nemo-panel-1.mp4." in panel.status.value
    assert "nmv_usr_" not in all_html(panel) + panel.transcript


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
    assert "· uploaded a.png, b.png" in panel.transcript


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
        buttons = panel.options_box.children
        assert [button.description for button in buttons] == list(question.options)
        assert question.text in panel.transcript and f"2. {question.options[1]}" in panel.transcript
        buttons[0].click()
        assert panel.wait(60) and panel.last_error is None, panel.last_error
    finally:
        emulator.set_variants(None)
    assert f"· answering: {question.options[0]}\n" in panel.transcript
    assert panel.options_box.children == ()
    assert panel.last_reply.message == question.options[0] and panel.last_reply.text
    assert [type(child) for child in panel.media_box.children] == [widgets.Image]


def test_routed_messages_in_the_panel(client: NemoClient) -> None:
    panel = Panel(client=client)
    panel.submit("show tracks")
    assert panel.wait(30)
    assert panel.last_error is None, panel.last_error
    assert "<caption>Timeline" in panel.tracks_view.value
    panel.submit("export")
    assert panel.wait(30)
    assert_idle(panel)
    assert "NothingToExportError" in panel.status.value


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
        assert panel.busy and not panel.stop_button.disabled
        assert panel.send_button.disabled and panel.export_button.disabled
        assert panel.submit("a second message") is False  # one request at a time
        panel.stop()
        assert panel.wait(10)
        assert_idle(panel)
        assert panel.last_error is None, panel.last_error
        assert STOPPED_STATUS.split(".")[0] in panel.status.value
        assert "%nemo status" in panel.status.value
        assert wait_until(lambda: faults.count("POST", "/run_sse") >= 1)
        time.sleep(0.3)
        assert faults.count("POST", "/run_sse") == 1
    finally:
        faults.reset()


def test_failure_from_the_server_reenables_buttons(client: NemoClient, emulator: Any) -> None:
    panel = Panel(client=client)
    emulator.faults.fail_requests(1, status=500, path_prefix="/run_sse")
    try:
        panel.submit("add a title 'Broken'")
        assert panel.wait(60)
    finally:
        emulator.faults.reset()
    assert_idle(panel)
    assert isinstance(panel.last_error, NemoError)
    assert "color:#b00020" in panel.status.value
    panel.submit("add a title 'Works'")
    assert panel.wait(60)
    assert panel.last_error is None, panel.last_error


def test_panel_parts_carry_stable_css_classes(tmp_path: Path) -> None:
    from nemo_notebook import Panel

    session = idle_session(tmp_path)
    panel = Panel(client=session.client, session=session)
    assert "nemo-panel" in panel._dom_classes
    assert "nemo-send" in panel.send_button._dom_classes
    assert "nemo-transcript" in panel.reply_view._dom_classes


# --------------------------------------------------------------------------- limits (issue 12)


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
    panel.stop()
    gate.open()
    assert panel.wait(10)
    assert_idle(panel)
    assert backend.fetched_media() == [first]  # nothing after the Stop
    assert panel.transcript.endswith("(stopped)\n")
    assert panel.status.value == f"<span>{html.escape(STOPPED_STATUS)}</span>"
    assert panel.last_reply is not None and panel.last_reply.actions == ("export",)
    assert panel.actions_box.children == ()  # the actions were not shown after the Stop
    assert backend.sent_messages() == ["two images"]


def _transcript_comm_ids(panel: Panel) -> set[str]:
    ids, queue = set(), [panel.reply_view]
    while queue:
        widget = queue.pop()
        ids |= {widget.comm.comm_id, widget.layout.comm.comm_id}
        if getattr(widget, "style", None) is not None:
            ids.add(widget.style.comm.comm_id)
        queue += list(getattr(widget, "children", ()))
    return ids


def test_transcript_traffic_grows_with_the_text_not_its_square(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import comm

    sent: list[tuple[str, int]] = []

    def publish(self: Any, msg_type: str, data: Any = None, *args: Any, **kwargs: Any) -> None:
        sent.append((self.comm_id, len(json.dumps(data, default=str))))

    monkeypatch.setattr(comm.DummyComm, "publish_msg", publish)
    reply_text = "".join(f"line {n:03d} of a long answer <b>&</b>\n" for n in range(27))[:1000]
    chunks = [sse(adk_text(reply_text[i : i + 100], partial=True)) for i in range(0, 1000, 100)]
    backend = FakeBackend(turn=scripted_turn(*chunks, sse(adk_text(reply_text))))
    panel = Panel(session=fake_session(backend, tmp_path), clock=lambda: 0.0)
    for number in range(200):
        panel.submit(f"message {number}")
        assert panel.wait(10)
    assert panel.last_error is None, panel.last_error
    assert backend.count("POST", "/run_sse") == 200
    assert panel.transcript.count(reply_text) == 200
    ids = _transcript_comm_ids(panel)
    traffic = sum(size for comm_id, size in sent if comm_id in ids)
    # re-sending the whole transcript on every write made this ~200x the text
    assert traffic < 10 * len(panel.transcript)
    static = panel.transcript_html
    assert static.count(html.escape(reply_text)) == 200 and "› message 199" in static


def test_a_long_streamed_reply_is_split_into_bounded_pieces(tmp_path: Path) -> None:
    text = "".join(f"paragraph {n}\n" for n in range(3000))
    chunks = [sse(adk_text(text[i : i + 50], partial=True)) for i in range(0, len(text), 50)]
    backend = FakeBackend(turn=scripted_turn(*chunks))
    panel = Panel(session=fake_session(backend, tmp_path), stream_rate=0)
    panel.submit("a long one")
    assert panel.wait(20)
    assert panel.last_error is None, panel.last_error
    pieces = [piece.value for box in panel.reply_view.children for piece in box.children]
    assert max(len(piece) for piece in pieces) < 20_000
    assert all(len(box.children) <= 20 for box in panel.reply_view.children)
    assert text in panel.transcript


def test_panel_images_are_960_px_previews_shared_with_the_transcript(tmp_path: Path) -> None:
    from PIL import Image

    url = "http://h/media/generated/wide.png"
    backend = media_backend("Done.", [url], {url: _png(2400, 1200)})
    panel = Panel(session=fake_session(backend, tmp_path))
    panel.submit("a wide image")
    assert panel.wait(10) and panel.last_error is None, panel.last_error
    assert backend.fetched_media() == [url]
    (card,) = panel.media_box.children
    assert Image.open(io.BytesIO(card.value)).size == (960, 480)
    assert base64.b64encode(card.value).decode() in panel.transcript_html


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
    assert len(panel.media_box.children) == 1
    assert panel.transcript.count("· A generated image was skipped") == 5
    assert "huge.png is not shown: 20000x20000 pixels" in panel.transcript
    assert panel.status.value == "<span>Done.</span>"


def test_panel_tracks_table_has_a_row_cap(tmp_path: Path) -> None:
    segments = [{"st": n * 1000, "d": 1000, "n": f"clip {n}"} for n in range(12)]
    backend = FakeBackend(
        turn=scripted_turn(sse(adk_text("Done."))), drafts=[{"t": [{"tt": 0, "sg": segments}]}]
    )
    panel = Panel(session=fake_session(backend, tmp_path), max_table_rows=5)
    panel.submit("show")
    assert panel.wait(10)
    assert panel.last_error is None, panel.last_error
    assert panel.tracks_view.value.count("<td>clip ") == 5
    assert "… 7 more rows" in panel.tracks_view.value


def test_an_exported_still_shows_as_a_preview_and_a_huge_one_as_a_note(tmp_path: Path) -> None:
    from PIL import Image

    panel = Panel(session=idle_session(tmp_path), base_dir=tmp_path, max_image_pixels=4_000_000)
    still = tmp_path / "nemo-panel-1.png"
    still.write_bytes(_png(2400, 1200))
    card = panel._player(still)
    assert isinstance(card, widgets.Image)
    assert Image.open(io.BytesIO(card.value)).size == (960, 480)
    still.write_bytes(_png(2400, 1700))
    note = panel._player(still)
    assert isinstance(note, widgets.HTML) and "2400x1700 pixels" in note.value
