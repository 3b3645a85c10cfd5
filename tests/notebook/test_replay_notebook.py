"""Record and replay from a notebook: ``%nemo connect --record FILE`` / ``--replay FILE``, and
the record of what each turn did in its cell output's metadata.

The end-to-end test runs real kernels (``jupyter_client``): one records a session against the
embedded emulator it starts, and dies with it; a new kernel replays the cassette with no server
anywhere and must show the same cells and save the same MP4 bytes, in far less time.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output
from kernel_support import Kernel, Ran

from nemo_notebook._errors import CassetteMissError, ConfigError, NotebookError

CITY = "generate a realistic image of a futuristic city at night"
SESSION_CELLS = (
    f"%%nemo\n{CITY}",
    "%%nemo\nadd lo-fi music at 35%",
    "%%nemo\nadd the title 'Urban Dreams'",
    "%nemo tracks",
    "%nemo export --link --out {name}.mp4",
)
RECORD = "nemo_notebook"  # the key of a turn's record in its output metadata


# --------------------------------------------------------------------------- through kernels


def run_session(kernel: Kernel, connect: str, name: str) -> tuple[Ran, list[Ran], float]:
    """Connect, run the session's cells; what each showed and the seconds the cells took."""
    loaded = kernel.run("%load_ext nemo_notebook")
    assert loaded.error is None, loaded.error
    connected = kernel.run(connect)
    assert connected.error is None, connected.error
    started = time.monotonic()
    ran = [kernel.run(cell.format(name=name), timeout=300) for cell in SESSION_CELLS]
    elapsed = time.monotonic() - started
    for cell in ran:
        assert cell.error is None, cell.error
    return connected, ran, elapsed


def turn_records(ran: Ran) -> list[dict[str, Any]]:
    """The turn records a cell's outputs were left with (a streamed turn: its live output's
    last update)."""
    shown = [metadata[RECORD] for metadata in ran.metadata if RECORD in metadata]
    updated = [metadata[RECORD] for _data, metadata in ran.updates if RECORD in metadata]
    return shown + updated


def as_shown(text: str) -> str:
    """Text as a page shows it: each "\\r" line in its last state."""
    return re.sub(r"^.*\r(?=[^\n])", "", text, flags=re.MULTILINE)


def as_recorded(text: str) -> str:
    """Replayed output with the footer's words for a replay taken out."""
    return text.replace(" · replayed", "").replace(" credits when recorded", " credits")


def as_json(displays: list[dict[str, Any]]) -> str:
    return json.dumps(displays, ensure_ascii=False)


def without_turn_id(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "turn_id"}


def test_a_notebook_recorded_in_one_kernel_replays_in_another_with_no_server(
    tmp_path: Path, kernels: list[Kernel], isolated_config: Path
) -> None:
    folder = tmp_path / "notebook"
    folder.mkdir()
    recorder = Kernel(folder)
    kernels.append(recorder)
    connected, recorded, recording_s = run_session(
        recorder, "%nemo connect --local --record session.json", "recorded"
    )
    assert "Started the local emulator" in connected.stdout
    assert "--local --replay session.json" in connected.stdout  # it says how to replay
    recorder.kill()  # its emulator ends with it: no server is left anywhere

    player = Kernel(folder)
    kernels.append(player)
    connected, replayed, replay_s = run_session(
        player, "%nemo connect --local --replay session.json", "replayed"
    )
    assert connected.stdout.startswith("Replaying session.json, as the local emulator")
    assert "Started the local emulator" not in connected.stdout
    assert player.run("%nemo emulator").error is not None  # none was started

    # the same cells: words, tool status lines, changes, image bytes, tracks, footers
    for before, after in zip(recorded[:4], replayed[:4], strict=True):
        assert after.stdout == before.stdout
        assert as_recorded(as_json(after.displays)) == as_json(before.displays)
        assert [without_turn_id(r) for r in turn_records(after)] == [
            without_turn_id(r) for r in turn_records(before)
        ]
    assert "local emulator · 27 credits<" in recorded[0].html()
    assert "local emulator · replayed · 27 credits when recorded<" in replayed[0].html()
    assert as_shown(replayed[4].stdout).replace("replayed", "recorded") == as_shown(
        recorded[4].stdout
    )  # a progress line's steps differ with the pace; what it ends on does not
    video = (folder / "recorded.mp4").read_bytes()
    assert len(video) > 10_000 and (folder / "replayed.mp4").read_bytes() == video
    assert replay_s * 2 <= recording_s, (replay_s, recording_s)

    # each turn's output tells what it did, in the saved notebook too
    (generated,) = turn_records(replayed[0])
    assert generated["credits_spent"] == 27 and isinstance(generated["turn_id"], int)
    assert generated["session"] == "main" and re.fullmatch(r"\d{19}", generated["session_id"])
    assert "generate_image" in [call["name"] for call in generated["tool_calls"]]
    (titled,) = turn_records(replayed[2])
    assert any("Urban Dreams" in change for change in titled["changes"])

    # nothing that grants access was written
    written = (folder / "session.json").read_text(encoding="utf-8")
    client_id = (isolated_config / "client_id").read_text(encoding="utf-8").strip()
    assert len(client_id) > 8 and client_id not in written
    assert "nmv_usr_" not in written and "clm_" not in written
    for ran in recorded + replayed:
        assert "nmv_usr_" not in json.dumps([ran.stdout, ran.displays, ran.metadata])


# --------------------------------------------------------------------------- through a shell


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    ip = InteractiveShell.instance()
    with capture_output():
        ip.run_line_magic("load_ext", "nemo_notebook")
    yield ip
    ip.run_line_magic("unload_ext", "nemo_notebook")  # closes the connection
    ip.user_ns.pop("_nemo", None)


def cell(ip: InteractiveShell, body: str) -> CapturedIO:
    with capture_output() as cap:
        ip.run_cell_magic("nemo", "", body)
    return cap


def line(ip: InteractiveShell, text: str) -> CapturedIO:
    with capture_output() as cap:
        ip.run_line_magic("nemo", text)
    return cap


def recorded_city(ip: InteractiveShell, url: str) -> CapturedIO:
    """A cassette ``city.json`` of one turn against ``url``; the turn's output."""
    line(ip, f"connect {url} --record city.json")
    return cell(ip, CITY)


def test_a_request_the_cassette_lacks_fails_at_once_naming_it(
    shell: InteractiveShell, emulator_url: str
) -> None:
    recorded_city(shell, emulator_url)
    connected = line(shell, f"connect {emulator_url} --replay city.json")
    assert connected.stdout.startswith("Replaying city.json: every answer comes from")
    assert "Claim this project" not in connected.stdout + str(connected.outputs)
    started = time.monotonic()
    with capture_output(), pytest.raises(CassetteMissError) as missed:
        shell.run_cell_magic("nemo", "", "make it vertical 9:16")
    assert time.monotonic() - started < 2
    message = str(missed.value)
    assert 'city.json holds no answer to the message "make it vertical 9:16"' in message
    assert "%nemo connect --record FILE" in message
    assert line(shell, "sessions").stdout.startswith("main: 0 turns")  # nothing was lost


def test_connecting_again_replays_from_the_start(
    shell: InteractiveShell, emulator_url: str
) -> None:
    recorded = recorded_city(shell, emulator_url)
    for _ in range(2):
        line(shell, f"connect {emulator_url} --replay city.json")
        assert as_recorded(cell(shell, CITY).stdout) == recorded.stdout


def test_a_missing_cassette_keeps_the_connection_and_says_how_to_record(
    shell: InteractiveShell, emulator_url: str
) -> None:
    line(shell, f"connect {emulator_url}")
    with capture_output(), pytest.raises(ConfigError, match=r"no cassette gone\.json.*--record"):
        shell.run_line_magic("nemo", "connect --local --replay gone.json")
    assert line(shell, "sessions").stdout.startswith("main:")  # the connection is kept
    assert "Credits:" in line(shell, "credits").stdout
    with pytest.raises(UsageError, match="either --record FILE or --replay FILE"):
        shell.run_line_magic("nemo", "connect --record a.json --replay b.json")


def test_nemo_cassette_in_the_environment_replays_a_notebook_unchanged(
    shell: InteractiveShell, emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = recorded_city(shell, emulator_url)
    monkeypatch.setenv("NEMO_CASSETTE", "city.json")  # once: the file exists, so it replays
    connected = line(shell, "connect --local")
    assert connected.stdout.startswith("Replaying city.json, as the local emulator")
    with pytest.raises(NotebookError, match="No emulator runs here: this notebook replays"):
        line(shell, "emulator")  # none was started
    assert as_recorded(cell(shell, CITY).stdout) == recorded.stdout
