"""The prompt panel, driven through the methods its buttons call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pytest

from nemo_notebook._client import NemoClient, Reply
from nemo_notebook._draft import SessionState
from nemo_notebook._errors import NemoError, ServerError
from nemo_notebook._events import TextDelta, ToolCall
from nemo_notebook._panel import STOPPED_STATUS, Panel

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


def all_html(panel: Panel) -> str:
    parts = [panel.status.value, panel.credits_badge.value, panel.reply_view.value]
    parts += [panel.tracks_view.value]
    parts += [child.value for child in panel.video_box.children if isinstance(child, widgets.HTML)]
    return "\n".join(parts)


# --------------------------------------------------------------------------- scripted session


class ScriptedStream:
    def __init__(self, events: list[Any], reply: Reply | None, fail: Exception | None) -> None:
        self.events, self._reply, self.fail = events, reply, fail
        self.reply: Reply | None = None

    def __enter__(self) -> ScriptedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        yield from self.events
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

    def stream(self, text: str) -> ScriptedStream:
        self.sent.append(text)
        return ScriptedStream(*self.script)

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
    assert "&lt;img src=x onerror=alert(1)&gt;" in panel.reply_view.value
    assert "&lt;img" in panel.tracks_view.value and "<caption>" in panel.tracks_view.value
    assert [b.description for b in panel.actions_box.children] == ["Export", "Show tracks"]
    assert panel.credits_badge.value.endswith("credits: ?</span>")
    assert panel.last_reply is reply


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
    assert "<caption>Timeline (" in panel.tracks_view.value
    assert panel.credits_badge.value.endswith(" credits</span>")
    assert [type(child) for child in panel.media_box.children] == [widgets.Image]

    panel.export()
    assert panel.wait(120)
    assert_idle(panel)
    assert panel.last_error is None, panel.last_error
    assert panel.last_video == tmp_path / "nemo-panel-1.mp4"
    player, link = panel.video_box.children
    assert isinstance(player, widgets.Video) and player.value[4:8] == b"ftyp"
    assert "/workspace/claim?ct=" in link.value
    assert "Saved nemo-panel-1.mp4." in panel.status.value
    assert "nmv_usr_" not in all_html(panel) + panel.transcript


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
