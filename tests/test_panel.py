"""The prompt panel, driven through the methods its buttons call."""

from __future__ import annotations

import base64
import html
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pytest

from nemo_notebook._client import NemoClient, Reply
from nemo_notebook._draft import SessionState
from nemo_notebook._errors import NemoError, ServerError
from nemo_notebook._events import Question, TextDelta, ToolCall
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


# --------------------------------------------------------------------------- scripted session


class ScriptedStream:
    def __init__(
        self,
        events: list[Any],
        reply: Reply | None,
        fail: Exception | None,
        gate: threading.Event | None = None,
    ) -> None:
        self.events, self._reply, self.fail, self.gate = events, reply, fail, gate
        self.reply: Reply | None = None

    def __enter__(self) -> ScriptedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        yield from self.events
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        self.reply = self._reply


class ScriptedClient:
    api_url = "http://scripted"

    def credits(self) -> Any:
        raise ServerError("credits are down", status=503)

    def fetch_bytes(self, url: str) -> bytes:
        raise AssertionError("no images in these scripts")


class ScriptedSession:
    def __init__(
        self, events: list[Any], reply: Reply | None = None, fail: Exception | None = None
    ) -> None:
        self.client = ScriptedClient()
        self.script = (events, reply, fail)
        self.sent: list[str] = []
        self.pending_question: Question | None = None
        self.gate: threading.Event | None = None
        self.known_state: SessionState | None = None

    def stream(self, text: str) -> ScriptedStream:
        self.sent.append(text)
        stream = ScriptedStream(*self.script, gate=self.gate)
        self.pending_question = self.script[1].question if self.script[1] else None
        return stream

    def state(self) -> SessionState:
        raise ServerError("state is down", status=500)


def scripted_state(title: str) -> SessionState:
    draft = {"t": [{"tt": 7, "n": "Title", "sg": [{"st": 0, "d": 3000, "tx": title}]}]}
    return SessionState.from_api({"state": {"draft": draft}})


def test_panel_layout_and_initial_state() -> None:
    panel = Panel(session=ScriptedSession([]))
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


def test_scripted_turn_escapes_and_turns_actions_into_buttons() -> None:
    reply = Reply(
        "m",
        f"Title set to {XSS}.",
        state=scripted_state(XSS),
        state_before=scripted_state("old"),
        actions=("export", "status", "chat"),
    )
    events = [TextDelta("Title set to "), ToolCall("add_text", {}), TextDelta(f"{XSS}.")]
    session = ScriptedSession(events, reply)
    panel = Panel(session=session)
    panel.prompt.value = f"set the title to {XSS}"
    assert panel.submit() is True
    assert panel.wait(10)
    assert_idle(panel)
    assert session.sent == [f"set the title to {XSS}"]
    assert panel.prompt.value == ""
    assert XSS in panel.transcript
    assert XSS not in all_html(panel)
    assert "&lt;img src=x onerror=alert(1)&gt;" in live_transcript_html(panel)
    assert "&lt;img src=x onerror=alert(1)&gt;" in panel.transcript_html
    assert "&lt;img" in panel.tracks_view.value and "<caption>" in panel.tracks_view.value
    assert [b.description for b in panel.actions_box.children] == ["Export", "Show tracks"]
    assert panel.credits_badge.value.endswith("credits: ?</span>")
    assert panel.last_reply is reply


ASPECT = Question("Which aspect ratio?", ("16:9 landscape", "9:16 portrait"), "call_1")


def test_a_question_becomes_buttons_that_send_the_answer() -> None:
    reply = Reply("m", ASPECT.text, question=ASPECT)
    session = ScriptedSession([TextDelta(ASPECT.text), ASPECT], reply)
    panel = Panel(session=session)
    panel.submit("make a video of the sea")
    assert panel.wait(10)
    assert "Which aspect ratio?\n1. 16:9 landscape\n2. 9:16 portrait\n" in panel.transcript
    buttons = panel.options_box.children
    assert [button.description for button in buttons] == ["16:9 landscape", "9:16 portrait"]
    assert "asked a question" in panel.status.value
    assert "nemo-options" in panel.options_box._dom_classes
    session.gate = threading.Event()  # the answer's turn runs until the gate opens
    buttons[1].click()
    assert wait_until(lambda: len(session.sent) == 2)
    assert session.sent[-1] == "9:16 portrait"
    assert all(button.disabled for button in buttons)  # while the answer's turn runs
    assert panel.options_box.children == ()  # gone once answered
    session.gate.set()
    assert panel.wait(10)
    assert "› 2\n· answering: 9:16 portrait\n" in panel.transcript
    session.gate = None
    panel.prompt.value = "1"  # typing the number works as well
    panel.submit()
    assert panel.wait(10) and session.sent[-1] == "16:9 landscape"
    panel.submit("something else entirely")
    assert panel.wait(10) and session.sent[-1] == "something else entirely"


def test_option_buttons_are_disabled_while_a_turn_runs() -> None:
    panel = Panel(session=ScriptedSession([]))
    panel._show_question(ASPECT)
    panel._set_busy(True)
    assert all(button.disabled for button in panel.options_box.children)
    panel._set_busy(False)
    assert not any(button.disabled for button in panel.options_box.children)


def test_a_silent_turn_with_unknown_changes_says_so() -> None:
    panel = Panel(session=ScriptedSession([], Reply("m", "", changes_known=False)))
    panel.submit("tighten the cut")
    assert panel.wait(10)
    assert "· What changed in the timeline is unknown" in panel.transcript
    assert "did not change" not in panel.transcript


def test_exported_stills_and_videos_show_by_kind(tmp_path: Path) -> None:
    panel = Panel(session=ScriptedSession([]), base_dir=tmp_path)
    still, clip, other = tmp_path / "a.png", tmp_path / "a.webm", tmp_path / "a.xyz"
    for path in (still, clip, other):
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
    image, video, note = (panel._player(path) for path in (still, clip, other))
    assert isinstance(image, widgets.Image) and image.format == "png"
    assert isinstance(video, widgets.Video) and video.format == "webm"
    assert isinstance(note, widgets.HTML) and "does not play here" in note.value
    assert panel._next_export_path("png") == tmp_path / "nemo-panel-1.png"


def test_errors_show_in_the_panel_and_buttons_come_back() -> None:
    failure = ServerError(f"boom {XSS}", status=500)
    panel = Panel(session=ScriptedSession([TextDelta("partial")], fail=failure))
    panel.submit("anything")
    assert panel.wait(10)
    assert_idle(panel)
    assert panel.last_error is failure
    assert "ServerError" in panel.status.value and XSS not in panel.status.value
    assert "error: boom" in panel.transcript
    # the action button path also recovers from a failure
    panel.show_tracks()
    assert panel.wait(10)
    assert_idle(panel)
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


def test_a_panel_of_its_own_replaces_lost_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class Recorded:
        api_url = "http://127.0.0.1:9"

        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)

        def create_session(self, language: str) -> Any:
            raise ServerError("no server here", status=503)

    monkeypatch.setattr("nemo_notebook._workflows.NemoClient", Recorded)
    panel = Panel()
    panel.submit("hello")
    assert panel.wait(10)
    assert made == [{"language": "en", "recreate_missing_sessions": True}]


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


def test_panel_parts_carry_stable_css_classes():
    from nemo_notebook import Panel

    panel = Panel(client=object(), session=object())
    assert "nemo-panel" in panel._dom_classes
    assert "nemo-send" in panel.send_button._dom_classes
    assert "nemo-transcript" in panel.reply_view._dom_classes


# --------------------------------------------------------------------------- limits (issue 12)


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


def media_state(*urls: str) -> SessionState:
    media = [{"url": url} for url in urls]
    return SessionState.from_api({"state": {"draft": {}, "generated_media": media}})


class FetchingClient(ScriptedClient):
    """Serves ``images`` by URL; a fetch of ``slow_url`` waits for ``release``."""

    def __init__(self, images: dict[str, bytes], slow_url: str | None = None) -> None:
        self.images, self.slow_url = images, slow_url
        self.fetched: list[str] = []
        self.fetching, self.release = threading.Event(), threading.Event()

    def fetch_bytes(self, url: str) -> bytes:
        self.fetched.append(url)
        if url == self.slow_url:
            self.fetching.set()
            assert self.release.wait(10)
        return self.images[url]


def test_stop_takes_effect_while_the_result_of_a_turn_is_shown() -> None:
    first, second = "http://h/media/generated/a.png", "http://h/media/generated/b.png"
    reply = Reply(
        "m", "Here are two.", state=media_state(first, second), state_before=media_state(),
        actions=("export",),
    )  # fmt: skip
    session = ScriptedSession([TextDelta("Here are two.")], reply)
    session.client = FetchingClient({first: _png(8, 8), second: _png(8, 8)}, slow_url=first)
    panel = Panel(session=session)
    panel.submit("two images")
    assert session.client.fetching.wait(10)  # the stream is over; the images are being fetched
    panel.stop()
    session.client.release.set()
    assert panel.wait(10)
    assert_idle(panel)
    assert session.client.fetched == [first]  # nothing after the Stop
    assert panel.transcript.endswith("(stopped)\n")
    assert panel.status.value == f"<span>{html.escape(STOPPED_STATUS)}</span>"
    assert panel.actions_box.children == ()
    assert session.sent == ["two images"]


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
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import comm

    sent: list[tuple[str, int]] = []

    def publish(self: Any, msg_type: str, data: Any = None, *args: Any, **kwargs: Any) -> None:
        sent.append((self.comm_id, len(json.dumps(data, default=str))))

    monkeypatch.setattr(comm.DummyComm, "publish_msg", publish)
    reply_text = "".join(f"line {n:03d} of a long answer <b>&</b>\n" for n in range(27))[:1000]
    chunks = [TextDelta(reply_text[i : i + 100]) for i in range(0, 1000, 100)]
    session = ScriptedSession(chunks, Reply("m", reply_text))
    panel = Panel(session=session, clock=lambda: 0.0)
    for number in range(200):
        panel.submit(f"message {number}")
        assert panel.wait(10)
    assert panel.transcript.count(reply_text) == 200
    ids = _transcript_comm_ids(panel)
    traffic = sum(size for comm_id, size in sent if comm_id in ids)
    # re-sending the whole transcript on every write made this ~200x the text
    assert traffic < 10 * len(panel.transcript)
    static = panel.transcript_html
    assert static.count(html.escape(reply_text)) == 200 and "› message 199" in static


def test_a_long_streamed_reply_is_split_into_bounded_pieces() -> None:
    text = "".join(f"paragraph {n}\n" for n in range(3000))
    session = ScriptedSession([TextDelta(text[i : i + 50]) for i in range(0, len(text), 50)],
                              Reply("m", text))  # fmt: skip
    panel = Panel(session=session, stream_rate=0)
    panel.submit("a long one")
    assert panel.wait(20)
    pieces = [piece.value for box in panel.reply_view.children for piece in box.children]
    assert max(len(piece) for piece in pieces) < 20_000
    assert all(len(box.children) <= 20 for box in panel.reply_view.children)
    assert text in panel.transcript


def test_panel_images_are_960_px_previews_shared_with_the_transcript() -> None:
    from PIL import Image

    url = "http://h/media/generated/wide.png"
    reply = Reply("m", "Done.", state=media_state(url), state_before=media_state())
    session = ScriptedSession([TextDelta("Done.")], reply)
    session.client = FetchingClient({url: _png(2400, 1200)})
    panel = Panel(session=session)
    panel.submit("a wide image")
    assert panel.wait(10) and panel.last_error is None, panel.last_error
    (card,) = panel.media_box.children
    assert Image.open(io.BytesIO(card.value)).size == (960, 480)
    assert base64.b64encode(card.value).decode() in panel.transcript_html


def test_panel_skips_broken_image_urls_and_huge_images_with_a_note() -> None:
    good, huge = "http://h/media/generated/ok.png", "http://h/media/generated/huge.png"
    forged = bytearray(_png(4, 4))
    forged[16:24] = (20000).to_bytes(4, "big") * 2  # the header claims 20000x20000
    bad = ["file:///etc/passwd.png", "javascript:alert(1)//.png", "http://[::1/a.png",
           "http://h/\x00.png", "http://h/" + "a" * 70_000 + ".png"]  # fmt: skip
    reply = Reply("m", "Done.", state=media_state(*bad, huge, good), state_before=media_state())
    session = ScriptedSession([TextDelta("Done.")], reply)
    session.client = FetchingClient({good: _png(8, 8), huge: bytes(forged)})
    panel = Panel(session=session)
    panel.submit("images")
    assert panel.wait(10) and panel.last_error is None, panel.last_error
    assert session.client.fetched == [huge, good]
    assert len(panel.media_box.children) == 1
    assert panel.transcript.count("· A generated image was skipped") == 5
    assert "huge.png is not shown: 20000x20000 pixels" in panel.transcript
    assert panel.status.value == "<span>Done.</span>"


def test_panel_tracks_table_has_a_row_cap() -> None:
    segments = [{"st": n * 1000, "d": 1000, "n": f"clip {n}"} for n in range(12)]
    state = SessionState.from_api({"state": {"draft": {"t": [{"tt": 0, "sg": segments}]}}})
    reply = Reply("m", "Done.", state=state, state_before=state)
    panel = Panel(session=ScriptedSession([TextDelta("Done.")], reply), max_table_rows=5)
    panel.submit("show")
    assert panel.wait(10)
    assert panel.tracks_view.value.count("<td>clip ") == 5
    assert "… 7 more rows" in panel.tracks_view.value


def test_an_exported_still_shows_as_a_preview_and_a_huge_one_as_a_note(tmp_path: Path) -> None:
    from PIL import Image

    panel = Panel(session=ScriptedSession([]), base_dir=tmp_path, max_image_pixels=4_000_000)
    still = tmp_path / "nemo-panel-1.png"
    still.write_bytes(_png(2400, 1200))
    card = panel._player(still)
    assert isinstance(card, widgets.Image)
    assert Image.open(io.BytesIO(card.value)).size == (960, 480)
    still.write_bytes(_png(2400, 1700))
    note = panel._player(still)
    assert isinstance(note, widgets.HTML) and "2400x1700 pixels" in note.value
