"""A %%nemo turn in a notebook: the agent's words as formatted text while they stream, status
lines apart, a running clock on a long tool call, and one final block that a re-run
reproduces (the live output goes back to its first, empty state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_backend import (
    API_URL,
    FakeBackend,
    adk_call,
    adk_text,
    fake_client,
    scripted_turn,
    sse,
)

from nemo_notebook._commands import CellArgs
from nemo_notebook._events import TextDelta, ToolCall
from nemo_notebook._turn_view import LiveTurn, TurnBlock, TurnParts
from nemo_notebook._workspace import STOPPED_MESSAGE, DefaultSettings, Workspace

XSS = "<img src=x onerror=alert(1)>"
DRAFT = {"d": 5000, "t": [{"id": "v", "tt": 0, "sg": [{"st": 0, "d": 5000, "n": "city"}]}]}


class LiveOutput:
    """A kernel's output: displays by id, updated in place; every call recorded."""

    live = True

    def __init__(self) -> None:
        self.text = ""
        self.calls: list[tuple[str, str | None, dict[str, str]]] = []  # (kind, id, data)
        self.metadata: list[dict[str, Any]] = []  # each call's output metadata

    def write(self, text: str) -> None:
        self.text += text

    def _record(self, kind: str, display_id: str | None, obj: Any) -> None:
        bundle = obj._repr_mimebundle_()
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        self.calls.append((kind, display_id, data))
        self.metadata.append(metadata)

    def display(self, obj: Any, *, display_id: str | None = None) -> None:
        self._record("display", display_id, obj)

    def update(self, obj: Any, *, display_id: str) -> None:
        self._record("update", display_id, obj)

    def saved_metadata(self) -> list[dict[str, Any]]:
        """Each display's metadata in its last state (as a saved notebook holds it)."""
        last: dict[str, dict[str, Any]] = {}
        order: list[tuple[str | None, dict[str, Any]]] = []
        for (kind, display_id, _data), metadata in zip(self.calls, self.metadata, strict=True):
            if kind == "display":
                order.append((display_id, metadata))
            if display_id is not None:
                last[display_id] = metadata
        return [last[i] if i is not None else metadata for i, metadata in order]

    def first_displays(self) -> list[dict[str, str]]:
        """What a re-run under nbval sees: each display_data as first shown (no updates)."""
        return [bundle for kind, _id, bundle in self.calls if kind == "display"]

    def saved(self) -> list[dict[str, str]]:
        """What the saved notebook holds: each display in its last state."""
        last: dict[str, dict[str, str]] = {}
        order: list[tuple[str | None, dict[str, str]]] = []
        for kind, display_id, bundle in self.calls:
            if kind == "display":
                order.append((display_id, bundle))
            if display_id is not None:
                last[display_id] = bundle
        return [last[i] if i is not None else bundle for i, bundle in order]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def workspace_for(backend: FakeBackend, tmp_path: Path, output: LiveOutput) -> Workspace:
    workspace = Workspace(
        settings=DefaultSettings(),
        output=output,
        client_factory=lambda **kwargs: fake_client(backend, tmp_path / "config", **kwargs),
        env={"NEMO_API_URL": API_URL},
        base_dir=tmp_path,
    )
    workspace.connect()
    workspace.sessions["main"].state()  # the state before the turn is known
    output.calls.clear()
    output.metadata.clear()
    output.text = ""
    return workspace


def test_a_streamed_reply_is_formatted_and_reproducible(tmp_path: Path) -> None:
    words = ["Here is **your city**", " at night.\n\n", f"Careful: {XSS}"]
    backend = FakeBackend(
        turn=scripted_turn(
            *(sse(adk_text(piece, partial=True)) for piece in words[:2]),
            sse(adk_call("generate_image", {"prompt": "city"})),
            sse(adk_text(words[2])),
        ),
        drafts=[DRAFT, DRAFT],
    )
    output = LiveOutput()
    reply = workspace_for(backend, tmp_path, output).chat("make a city", CellArgs())
    assert reply.text.startswith("Here is **your city** at night.")

    # nbval compares first displays; the saved notebook holds last states: the same
    assert output.first_displays() == output.saved()
    placeholder, block = output.first_displays()[:2]
    assert placeholder == {"text/plain": ""}
    assert any(kind == "update" for kind, _id, _bundle in output.calls)  # it streamed live
    html = block["text/html"]
    assert "<strong>your city</strong>" in html  # Markdown, not asterisks
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "class='nemo-status'" in html and "· generating image…" in html
    assert html.index("your city") < html.index("generating image") < html.index("Careful")
    assert "NemoVideo" in html and "nemo-footer" in html
    assert block["text/plain"].splitlines()[:3] == [
        "Here is **your city** at night.",
        "· generating image…",
        f"Careful: {XSS}",
    ]
    assert output.text == ""  # nothing went to stdout in a notebook
    # the saved live output tells what the turn did
    record = output.saved_metadata()[0]["nemo_notebook"]
    assert record == {
        "session": "main",
        "session_id": "1234567890123456789",
        "turn_id": record["turn_id"],
        "credits_spent": 0,  # the fake balance never moves
        "tool_calls": [{"name": "generate_image", "id": "call_1", "args": {"prompt": "city"}}],
        "changes": [],
    }
    assert isinstance(record["turn_id"], int)
    assert output.saved_metadata()[1] == {}  # told once, on the turn's first output


def test_a_long_tool_call_shows_its_running_time_live_only() -> None:
    clock, output = Clock(), LiveOutput()
    view = LiveTurn(output, rate=10.0, clock=clock, footer="NemoVideo")
    view.handle(TextDelta("Working on it."))
    clock.now = 1.0
    view.handle(ToolCall("generate_video", {}))
    clock.now = 46.5
    view.wait(46.5)
    live = output.calls[-1]
    assert live[0] == "update" and "· generating video… 45 s" in live[2]["text/html"]
    block = view.finish(None)
    assert " s<" not in block.to_html() and "45 s" not in block.to_text()
    assert block.footer == "NemoVideo · stopped"
    assert output.calls[-2] == ("update", output.calls[0][1], {"text/plain": ""})


def test_a_waiting_tool_call_updates_only_when_its_seconds_change() -> None:
    clock, output = Clock(), LiveOutput()
    view = LiveTurn(output, rate=10.0, clock=clock)
    view.handle(ToolCall("generate_video", {}))
    before = len(output.calls)
    for step in range(100):  # 10 s of silence, polled every 0.1 s
        clock.now = 0.5 + step * 0.1
        view.wait(clock.now)
    updates = output.calls[before:]
    shown = [call[2]["text/html"].rsplit("generating video…", 1)[-1][:6] for call in updates]
    assert len(updates) == len(set(shown)) <= 9  # one per second shown (from 3 s), no repeats


def test_updates_are_at_most_rate_a_second() -> None:
    clock, output = Clock(), LiveOutput()
    view = LiveTurn(output, rate=10.0, clock=clock)
    for step in range(1000):  # 1000 chunks in 2 s
        clock.now = step * 0.002
        view.handle(TextDelta("word "))
    updates = [call for call in output.calls if call[0] == "update"]
    assert 19 <= len(updates) <= 21


def test_an_interrupt_keeps_what_streamed_and_says_nothing_was_resent(tmp_path: Path) -> None:
    backend = FakeBackend(turn=scripted_turn(sse(adk_text("Half a sentence", partial=True))))
    output = LiveOutput()
    workspace = workspace_for(backend, tmp_path, output)
    original = LiveTurn.handle

    def interrupted(self: LiveTurn, event: object) -> None:
        original(self, event)
        if isinstance(event, TextDelta):
            raise KeyboardInterrupt

    LiveTurn.handle = interrupted  # type: ignore[method-assign]
    try:
        try:
            workspace.chat("go", CellArgs())
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the interrupt did not propagate")
    finally:
        LiveTurn.handle = original  # type: ignore[method-assign]
    block = output.first_displays()[-1]
    assert "Half a sentence" in block["text/html"] and "stopped" in block["text/html"]
    assert output.text == STOPPED_MESSAGE
    assert backend.count("POST", "/run_sse") == 1  # never re-sent
    record = output.saved_metadata()[0]["nemo_notebook"]
    assert record["stopped"] is True and record["credits_spent"] is None


@pytest.mark.parametrize(
    ("args", "shown"),
    [(CellArgs(stream=False), "City at night."), (CellArgs(quiet=True), "")],
)
def test_a_turn_not_streamed_keeps_its_record_too(
    tmp_path: Path, args: CellArgs, shown: str
) -> None:
    backend = FakeBackend(
        turn=scripted_turn(
            sse(adk_call("generate_image", {"prompt": "city"})), sse(adk_text("City at night."))
        ),
        drafts=[DRAFT, DRAFT],
    )
    output = LiveOutput()
    workspace_for(backend, tmp_path, output).chat("make a city", args)
    [data] = output.first_displays()  # one output: the reply, or nothing to see (--quiet)
    assert data["text/plain"] == shown
    [metadata] = output.saved_metadata()
    record = metadata["nemo_notebook"]
    assert [call["name"] for call in record["tool_calls"]] == ["generate_image"]
    assert record["session_id"] == "1234567890123456789" and "stopped" not in record


def test_a_block_of_options_and_plain_text() -> None:
    parts = TurnParts()
    parts.add_text("Which format?")
    parts.add_options(("16:9 landscape", "9:16 portrait"))
    block = TurnBlock(parts, "NemoVideo · local emulator")
    assert block.to_text() == "Which format?\n1. 16:9 landscape\n2. 9:16 portrait"
    assert "<ol class='nemo-options'><li>16:9 landscape</li><li>9:16 portrait</li></ol>" in (
        block.to_html()
    )
