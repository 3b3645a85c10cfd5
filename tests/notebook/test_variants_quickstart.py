"""The quickstart, through the magics, against the emulator serving each PROTOCOL §8 variant.

One emulator for the module, switched per test with ``set_variants``; a real IPython shell per
test (a fresh client id, so a fresh anonymous account with 100 credits). Each test asserts what
a person would see: the claim link after connecting, the reply's text once, the generated still,
the tracks, the silent edit's changes, the exported MP4 and its claim link, and for the
variants that change the story (a question, out of credits, a plan that blocks export) what the
person is told instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output

from nemo_notebook import NemoClient, Timing
from nemo_notebook._client import Reply
from nemo_notebook._errors import ExportBlockedError, InsufficientCreditsError
from nemo_notebook._magics import NemoMagics
from nemo_notebook._workflows import STREAMED_TIMELINE_NOTE, make_client
from nemo_notebook.emulator import start
from nemo_notebook.emulator.variants import VARIANTS

SUNSET = "generate a realistic image of a sunset over a mountain lake for 1 second"  # short
TOKEN = re.compile("nmv_" + "usr_")
CLAIM = "Claim this project in NemoVideo: "
STATE_VARIANTS = ("state-slow", "state-failing", "state-missing")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("variants-emulator")
    with start(data_dir, time_scale=0.002, tokens_per_ip=100_000, state_delay_s=0.3) as handle:
        yield handle


def quick_client(language: str, **kwargs: Any) -> NemoClient:
    """The magics' client, polling renders every 50 ms instead of from 2 s up (test speed)."""
    return make_client(language, timing=Timing(render_poll_min=0.05, render_poll_max=0.1), **kwargs)


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)  # where exports are saved
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nemo_notebook")
    workspace_of(ip).client_factory = quick_client  # the Workspace's test seam
    yield ip
    ip.run_line_magic("unload_ext", "nemo_notebook")
    ip.user_ns.pop("_nemo", None)


@pytest.fixture
def variant_on(server: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.param
    server.set_variants(name)
    try:
        yield name
    finally:
        server.set_variants(None)
        server.faults.reset()


# --------------------------------------------------------------------------- helpers


def checked(cap: CapturedIO) -> CapturedIO:
    texts = [cap.stdout, cap.stderr]
    texts += [str(value) for output in cap.outputs for value in output.data.values()]
    assert not any(TOKEN.search(text) for text in texts), "a token reached an output"
    return cap


def line(ip: InteractiveShell, text: str) -> tuple[Any, CapturedIO]:
    with capture_output() as cap:
        result = ip.run_line_magic("nemo", text)
    return result, checked(cap)


def cell(ip: InteractiveShell, body: str) -> tuple[Reply, CapturedIO]:
    with capture_output() as cap:
        ip.run_cell_magic("nemo", "", body)
    reply = ip.user_ns["_nemo"]
    assert isinstance(reply, Reply)
    return reply, checked(cap)


def failing(ip: InteractiveShell, source: str) -> tuple[BaseException | None, CapturedIO]:
    """Run a cell as a notebook does: the error is shown briefly, and still raised."""
    with capture_output() as cap:
        result = ip.run_cell(source)
    return result.error_in_exec, checked(cap)


def plain(cap: CapturedIO) -> list[str]:
    return [str(output.data["text/plain"]) for output in cap.outputs]


def said(stdout: str) -> str:
    """What the agent said: stdout without status lines and the notebook's own hints, and
    without whitespace (a status line between two sentences stands for their space)."""
    kept = [row for row in stdout.splitlines() if not row.startswith(("· ", "Ready to export"))]
    return "".join("".join(kept).split())


def assert_shown_once(reply: Reply, cap: CapturedIO) -> None:
    text = "".join(reply.text.split())
    assert text and said(cap.stdout).startswith(text), cap.stdout
    assert said(cap.stdout).count(text[:50]) == 1, cap.stdout


def workspace_of(ip: InteractiveShell) -> Any:
    magics = ip.magics_manager.registry["NemoMagics"]
    assert isinstance(magics, NemoMagics)
    return magics.workspace


def silent_volume_edit(draft: dict[str, Any]) -> tuple[str, int]:
    """A volume edit the emulator's agent answers without text for this draft."""
    from nemo_notebook.emulator.agent.turn import choice_seed as _choice_seed
    from nemo_notebook.emulator.agent.turn import pick as _pick

    for percent in range(40, 100, 5):  # not 30%: the generated music's volume already
        message = f"set the music volume to {percent}%"
        if _pick(3, _choice_seed(draft), message, "silent") == 0:
            return message, percent
    raise AssertionError("no silent edit found")


# --------------------------------------------------------------------------- the steps


def connect(ip: InteractiveShell, server: Any) -> None:
    _, cap = line(ip, f"connect {server.url}")
    assert cap.stdout == f"Connected to {server.url} (anonymous token).\n"
    (claim,) = plain(cap)
    assert claim.startswith(CLAIM) and "/workspace/claim?ct=clm_" in claim
    assert "a server on this machine, so it opens no real NemoVideo project" in claim


def assert_asked(reply: Reply, cap: CapturedIO) -> None:
    """The question reads as the agent's words, its options numbered, then how to answer."""
    question = reply.question
    assert question is not None and question.options, "the agent asked nothing"
    numbered = [f"{n}. {option}" for n, option in enumerate(question.options, 1)]
    rows = cap.stdout.splitlines()
    assert rows[-len(numbered) - 1 : -1] == numbered  # the options, then the hint
    assert rows[-1].startswith("Answer in the next %%nemo cell") and "`%%nemo` then `" in rows[-1]
    assert said(cap.stdout).count("".join(question.text.split())) == 1
    assert "ask_question" not in cap.stdout and "{" not in cap.stdout


def generate(ip: InteractiveShell, variant: str) -> None:
    reply, cap = cell(ip, SUNSET)
    if variant == "ask-question":
        assert_asked(reply, cap)
        label = reply.question.options[0] if reply.question else ""
        reply, cap = cell(ip, "1")
        assert cap.stdout.startswith(f"· answering: {label}\n")
        assert reply.message == label and reply.question is None
    assert_shown_once(reply, cap)
    stills = [output for output in cap.outputs if {"image/jpeg", "image/png"} & set(output.data)]
    assert len(stills) == 1  # the generated image, inline
    assert reply.errors == () and reply.unparsed == 0


def tracks(ip: InteractiveShell, variant: str) -> None:
    table, cap = line(ip, "tracks")
    summary = table.summary
    assert summary.startswith("Timeline (3 tracks): 1. Video: sunset over a mountain lake (0-1s)")
    assert cap.stdout == ""
    if variant == "state-missing":  # the timeline the turns streamed, and said so
        assert plain(cap) == [f"({STREAMED_TIMELINE_NOTE})"]


def silent_edit(ip: InteractiveShell) -> None:
    session = workspace_of(ip).sessions["main"]
    message, percent = silent_volume_edit(session.known_state.draft.to_dict())
    reply, cap = cell(ip, message)
    assert reply.silent and reply.errors == ()
    assert all(row.startswith("· ") for row in cap.stdout.splitlines()), cap.stdout
    assert "did not change" not in cap.stdout
    first, *rest = plain(cap)
    if reply.changes_known:
        assert first == f"Changes to the draft:\n  • BGM volume 30% -> {percent}%"
        assert rest and rest[0].startswith("Timeline (3 tracks)")
    else:  # the state could not be read: said so, not "nothing changed"
        assert first.startswith("(What changed in the timeline is unknown")


def export(ip: InteractiveShell, tmp_path: Path) -> None:
    _, cap = line(ip, "export")
    saved = tmp_path / "nemo-main-1.mp4"
    assert saved.is_file() and saved.read_bytes()[4:8] == b"ftyp"
    final = "\n".join(part.rsplit("\r", 1)[-1] for part in cap.stdout.split("\n"))
    assert final == "Rendering… 100%\nSaved nemo-main-1.mp4\n"
    video, claim = cap.outputs
    assert '<source src="data:video/mp4;base64,' in video.data["text/html"]
    assert str(claim.data["text/plain"]).startswith(CLAIM)


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("variant_on", VARIANTS, indirect=True)
def test_quickstart_through_the_magics(
    variant_on: str, server: Any, shell: InteractiveShell, tmp_path: Path
) -> None:
    variant = variant_on
    connect(shell, server)
    if variant == "credits-402":
        out_of_credits(shell, server)
        return
    generate(shell, variant)
    tracks(shell, variant)
    silent_edit(shell)
    if variant == "gateway-codes":
        server.faults.expire_tokens()  # refused with 1010/1011: renewed, and the export goes on
    if variant == "plan-402":
        export_blocked(shell)
        return
    export(shell, tmp_path)


def out_of_credits(ip: InteractiveShell, server: Any) -> None:
    workspace = workspace_of(ip)
    server.set_credits(workspace.client.user_id, 0)
    error, cap = failing(ip, f"%%nemo\n{SUNSET}")
    assert isinstance(error, InsufficientCreditsError)
    assert "You are out of credits." in cap.stdout
    assert f"/register?bind={workspace.client.user_id}" in cap.stdout
    assert "Traceback" not in cap.stdout and "_magics.py" not in cap.stdout


def export_blocked(ip: InteractiveShell) -> None:
    error, cap = failing(ip, "%nemo export")
    assert isinstance(error, ExportBlockedError)
    assert "Your plan does not allow exporting on the server" in cap.stdout
    assert "Traceback" not in cap.stdout and "_magics.py" not in cap.stdout
    assert not list(Path.cwd().glob("nemo-main-*.mp4"))


def test_every_variant_has_a_quickstart() -> None:
    assert set(STATE_VARIANTS) | {"ask-question", "credits-402", "plan-402"} <= set(VARIANTS)
