"""``%nemo`` / ``%%nemo`` through a real IPython shell, against the real emulator and client.

A few paths the emulator only reaches by chance (a silent edit, GUI actions, a stopped turn)
are also driven through the plain :class:`Workspace`, its real client over the scripted
backend of ``fake_backend``.
"""

from __future__ import annotations

import base64
import io
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fake_backend import (
    API_URL,
    FakeBackend,
    adk_call,
    adk_question,
    adk_text,
    fake_client,
    scripted_turn,
    sse,
)
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output
from PIL import Image

from nemo_notebook._client import Reply, Session
from nemo_notebook._commands import (
    COMMANDS,
    USAGE,
    CellArgs,
    ConnectArgs,
    CreditsArgs,
    ExportArgs,
    SessionArgs,
    UploadArgs,
    interpolate,
    parse_cell_line,
    parse_line,
)
from nemo_notebook._display import ChangesView, LinkView, NoteView, TracksTable
from nemo_notebook._errors import (
    AuthError,
    BadRequestError,
    InsufficientCreditsError,
    NemoError,
    NotebookError,
    NothingToExportError,
    TransportError,
)
from nemo_notebook._events import Question
from nemo_notebook._magics import NemoMagics
from nemo_notebook._media_views import ImageView, VideoView
from nemo_notebook._workspace import LOCAL_EMULATOR_CREDITS, DefaultSettings, Workspace

TOKEN_PATTERN = re.compile(r"nmv_usr_")
CITY = "generate a realistic image of a futuristic city at night"
XSS = "<img src=x onerror=alert(1)>"
PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cf80c00f0004850180848a9c2100000000"
    "49454e44ae426082"
)


# --------------------------------------------------------------------------- helpers


def texts_of(cap: CapturedIO) -> list[str]:
    """Every piece of text the captured cell showed: stdout, stderr and all display data."""
    texts = [cap.stdout, cap.stderr]
    for output in cap.outputs:
        texts.extend(str(value) for value in output.data.values())
    return texts


def assert_no_token(cap: CapturedIO, *secrets: str) -> None:
    for text in texts_of(cap):
        assert not TOKEN_PATTERN.search(text), "a token reached an output"
        for secret in secrets:
            assert secret not in text


def words(text: str) -> list[str]:
    return text.split()


def without_status_lines(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not line.startswith("· "))


def html_outputs(cap: CapturedIO) -> list[str]:
    return [str(o.data["text/html"]) for o in cap.outputs if "text/html" in o.data]


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)  # the kernel's cwd: where exports are saved
    ip = InteractiveShell.instance()
    with capture_output() as cap:
        ip.run_line_magic("load_ext", "nemo_notebook")
    assert cap.stdout == "" and cap.outputs == []
    yield ip
    ip.run_line_magic("unload_ext", "nemo_notebook")
    ip.config.pop("NemoMagics", None)  # %config survives %reload_ext; not across tests
    ip.user_ns.pop("_nemo", None)


@pytest.fixture
def connected(shell: InteractiveShell, emulator: Any) -> InteractiveShell:
    with capture_output() as cap:
        shell.run_line_magic("nemo", f"connect {emulator.url}")
    assert cap.stdout == f"Connected to {emulator.url} (anonymous token).\n"
    assert_claim_link(cap, "issued by a server on this machine")
    return shell


def assert_claim_link(cap: CapturedIO, note: str) -> None:
    """The session's claim link was shown once, as a link with the note about where it leads."""
    (link,) = cap.outputs
    assert link.data["text/plain"].startswith("Claim this project in NemoVideo: https://")
    assert "/workspace/claim?ct=clm_" in link.data["text/html"]
    assert note in link.data["text/html"] and note in link.data["text/plain"]


def line(ip: InteractiveShell, text: str) -> tuple[Any, CapturedIO]:
    with capture_output() as cap:
        result = ip.run_line_magic("nemo", text)
    assert_no_token(cap)
    return result, cap


def cell(ip: InteractiveShell, options: str, body: str) -> tuple[Any, CapturedIO]:
    with capture_output() as cap:
        result = ip.run_cell_magic("nemo", options, body)
    assert_no_token(cap)
    return result, cap


def magics_of(ip: InteractiveShell) -> NemoMagics:
    magics = ip.magics_manager.registry["NemoMagics"]
    assert isinstance(magics, NemoMagics)
    return magics


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connect", ("connect", ConnectArgs())),
        ("connect --local", ("connect", ConnectArgs(local=True))),
        ("connect http://h:1 --session b", ("connect", ConnectArgs("http://h:1", session="b"))),
        ("status", ("status", SessionArgs())),
        ("tracks --session=b", ("tracks", SessionArgs("b"))),
        ("upload 'my photo.png'", ("upload", UploadArgs(("my photo.png",)))),
        ("upload a.png https://h/b.jpg", ("upload", UploadArgs(("a.png", "https://h/b.jpg")))),
        ("export", ("export", ExportArgs())),
        ("export --out a.mp4 --link", ("export", ExportArgs("a.mp4", embed=False))),
        ("export --embed --session x", ("export", ExportArgs(embed=True, session="x"))),
        ("export --format png", ("export", ExportArgs(format="png"))),
        ("export --format=.WebM", ("export", ExportArgs(format="webm"))),
        ("export --again", ("export", ExportArgs(again=True))),
        ("credits", ("credits", CreditsArgs())),
        ("credits --add 1_000", ("credits", CreditsArgs(add=1000))),
        ("connect --local --new", ("connect", ConnectArgs(local=True, new=True))),
        ("sessions", ("sessions", None)),
        ("", ("help", None)),
        ("--help", ("help", None)),
    ],
)
def test_parse_line(text: str, expected: tuple[str, Any]) -> None:
    assert parse_line(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "frobnicate",
        "connect --local http://h",
        "connect ftp://h",
        "connect a b",
        "upload",
        "upload --session s",
        "export --embed --link",
        "export --format",
        "export --format 'a b'",
        "export --format ../x",
        "export --out",
        "export extra",
        "status --bogus",
        "credits now",
        "tracks --session 'bad name'",
        "upload 'unclosed",
    ],
)
def test_parse_line_rejects_with_usage(text: str) -> None:
    with pytest.raises(UsageError, match=r"Usage|Session names|must start|file format|Unknown"):
        parse_line(text)


@pytest.mark.parametrize(
    ("typed", "hint"),
    [("trakcs", "tracks"), ("exprot", "export"), ("CREDIT", "credits"), ("uplaod", "upload")],
)
def test_a_mistyped_command_names_the_closest_one_in_one_line(typed: str, hint: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_line(typed)
    message = str(caught.value)
    assert f"Did you mean `%nemo {hint}`?" in message and "\n" not in message


def test_the_usage_comes_from_the_command_table() -> None:
    for command in COMMANDS:
        assert command.usage_line() in USAGE
        for name in command.names:
            line = {"upload": "upload a.png", "batch": "batch rows.csv"}.get(name, name)
            assert parse_line(line)[0] == name
    assert len(USAGE.splitlines()) == len(COMMANDS) + 2  # "Usage:" and the cell line


def test_parse_cell_line() -> None:
    assert parse_cell_line("") == CellArgs()
    assert parse_cell_line("--no-stream --quiet --out r --session s") == CellArgs(
        session="s", stream=False, quiet=True, out="r"
    )
    for bad in ("--out 1x", "hello", "--stream"):
        with pytest.raises(UsageError):
            parse_cell_line(bad)


def test_interpolate_known_names_only() -> None:
    class Box:
        label = "neon"

    namespace = {"city": "Tokyo", "n": 3, "box": Box()}
    assert interpolate("a {city} x{n} {box.label}", namespace) == "a Tokyo x3 neon"
    assert interpolate("{unknown} {box.missing} {box._private}", namespace) == (
        "{unknown} {box.missing} {box._private}"
    )
    assert (
        interpolate('{"json": 1} {city!r} { city }', namespace) == '{"json": 1} {city!r} { city }'
    )
    assert interpolate("{{city}} and {{literal}}", namespace) == "{city} and {literal}"
    assert interpolate("{{{city}}}", namespace) == "{Tokyo}"


# --------------------------------------------------------------------------- loading and config


def test_loading_is_quiet_and_idempotent(shell: InteractiveShell) -> None:
    first = magics_of(shell)
    from nemo_notebook import load_ipython_extension

    load_ipython_extension(shell)
    assert magics_of(shell) is first
    assert sum(isinstance(c, NemoMagics) for c in shell.configurables) == 1
    with capture_output() as cap:
        shell.run_line_magic("reload_ext", "nemo_notebook")
    assert cap.stdout == ""
    assert magics_of(shell) is not first
    assert sum(isinstance(c, NemoMagics) for c in shell.configurables) == 1
    assert "nemo" in shell.magics_manager.magics["cell"]


def test_unload_removes_the_magics(shell: InteractiveShell) -> None:
    shell.run_line_magic("unload_ext", "nemo_notebook")
    assert "nemo" not in shell.magics_manager.magics["line"]
    assert "nemo" not in shell.magics_manager.magics["cell"]
    shell.run_line_magic("load_ext", "nemo_notebook")
    assert "nemo" in shell.magics_manager.magics["line"]


def test_config_magic_sets_traits(shell: InteractiveShell) -> None:
    shell.run_line_magic("config", "NemoMagics.embed_limit_mb = 20")
    shell.run_line_magic("config", "NemoMagics.auto_export = True")
    magics = magics_of(shell)
    assert magics.embed_limit_mb == 20
    assert magics.auto_export is True
    assert magics.workspace.settings is magics


def test_help(shell: InteractiveShell) -> None:
    _, cap = line(shell, "help")
    assert "%nemo export [--out FILE] [--format mp4|png|...] [--embed | --link]" in cap.stdout
    assert "%nemo upload PATH|URL [PATH|URL ...]" in cap.stdout


# --------------------------------------------------------------------------- against the emulator


def test_lazy_connect_says_where_and_runs_a_streamed_turn(
    shell: InteractiveShell, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEMO_API_URL", emulator.url)
    result, cap = cell(shell, "", CITY)
    assert result is None
    assert cap.stdout.startswith(f"Connected to {emulator.url} (anonymous token).\n")
    assert "/workspace/claim?ct=" in cap.outputs[0].data["text/html"]  # the lazy connect's link
    reply = shell.user_ns["_nemo"]
    assert isinstance(reply, Reply) and reply.text
    shown = words(without_status_lines(cap.stdout.split("\n", 1)[1]))
    assert shown[: len(words(reply.text))] == words(reply.text)  # then maybe action hints
    assert "· " in cap.stdout  # tool calls as human status lines
    assert '"prompt"' not in cap.stdout and "functionCall" not in cap.stdout


def test_images_shown_inline_after_generation(connected: InteractiveShell) -> None:
    _, cap = cell(connected, "", CITY)
    images = [o for o in cap.outputs if "image/jpeg" in o.data]
    assert len(images) >= 1
    preview = base64.b64decode(images[0].data["image/jpeg"])
    with Image.open(io.BytesIO(preview)) as image:
        assert image.width == 960  # a 1920-wide still, shown at preview size


def test_interpolation_out_and_session(connected: InteractiveShell) -> None:
    connected.user_ns["place"] = "a quiet beach at sunset"
    _, cap = cell(connected, "--out first --session beach", "generate an image of {place}")
    reply = connected.user_ns["first"]
    assert reply is connected.user_ns["_nemo"]
    assert reply.message == "generate an image of a quiet beach at sunset"
    _, cap = line(connected, "sessions")
    assert re.search(r"^beach: 1 turn \(id \d+\)$", cap.stdout, re.M)
    _, cap = line(connected, "history --session beach")
    assert "1. you: generate an image of a quiet beach at sunset" in cap.stdout


def test_no_stream_and_quiet(connected: InteractiveShell) -> None:
    _, cap = cell(connected, "--no-stream", CITY)
    reply = connected.user_ns["_nemo"]
    if reply.text:
        assert reply.text.strip() in cap.stdout
    status_lines = [row for row in cap.stdout.splitlines() if row.startswith("· ")]
    assert status_lines == ["· 27 credits"]  # no tool status lines; what the turn spent
    _, cap = cell(connected, "--quiet --out q", "add calm music at 40%")
    assert cap.stdout == "" and cap.outputs == []
    assert isinstance(connected.user_ns["q"], Reply)


def test_status_tracks_and_router_paths(connected: InteractiveShell) -> None:
    cell(connected, "", CITY)
    table, cap = line(connected, "tracks")  # the cell shows the table ...
    summary = table.summary
    assert summary.startswith("Timeline (") and cap.stdout == ""
    frame = table.dataframe  # ... and code gets the DataFrame
    assert list(frame.columns[:3]) == ["track", "type", "label"]
    assert frame.attrs["caption"] == summary
    routed, cap = cell(connected, "", "show tracks")
    assert routed.summary == summary
    assert "_nemo" in connected.user_ns
    _, cap = cell(connected, "", "how many credits do I have?")
    assert re.match(
        r"Credits: \d+ available, \d+ reserved by running work, \d+ in total\.\n", cap.stdout
    )
    _, cap = cell(connected, "", "积分")
    assert cap.stdout.startswith("Credits: ")


def silent_volume_edit(draft: dict) -> tuple[str, int]:
    """A volume edit the emulator's agent answers without text for this draft."""
    from nemo_notebook.emulator.agent.turn import choice_seed as _choice_seed
    from nemo_notebook.emulator.agent.turn import pick as _pick

    for percent in range(40, 100, 5):  # not 30%: the generated music's volume already
        message = f"set the music volume to {percent}%"
        if _pick(3, _choice_seed(draft), message, "silent") == 0:
            return message, percent
    raise AssertionError("no silent edit found")


def test_silent_edit_shows_the_diff_and_tracks(connected: InteractiveShell) -> None:
    cell(connected, "", CITY)
    session = magics_of(connected).workspace.sessions["main"]
    message, percent = silent_volume_edit(session.state().draft.to_dict())
    _, cap = cell(connected, "", message)
    assert connected.user_ns["_nemo"].silent
    assert all(line.startswith("· ") for line in cap.stdout.splitlines()), cap.stdout
    changes, table = (output.data for output in cap.outputs)
    assert changes["text/plain"] == f"Changes to the draft:\n  • BGM volume 30% -> {percent}%"
    assert "<li>BGM volume 30% -&gt; " in changes["text/html"]
    assert table["text/plain"].startswith("Timeline (3 tracks)")
    assert f"BGM: Lo-fi (0-5s, {percent}%)" in table["text/html"]


def test_backend_text_is_escaped_in_html(connected: InteractiveShell) -> None:
    cell(connected, "", CITY)
    _, cap = cell(connected, "", f"change the title to '{XSS}'")
    table, _ = line(connected, "tracks")
    assert XSS in table.dataframe.attrs["caption"]  # kept as text ...
    html = [*html_outputs(cap), table.to_html()]
    assert all(XSS not in part for part in html)  # ... never as markup
    assert "&lt;img src=x onerror=alert(1)&gt;" in table.to_html()


def test_panel_command_shares_the_session(connected: InteractiveShell) -> None:
    import nemo_notebook
    from nemo_notebook._panel import Panel

    panel, _cap = line(connected, "panel --session side")
    assert isinstance(panel, nemo_notebook.Panel) and nemo_notebook.Panel is Panel
    workspace = magics_of(connected).workspace
    assert panel._session is workspace.sessions["side"]
    assert panel._next_export_path("mp4") == workspace.base_dir / "nemo-side-1.mp4"
    assert panel._next_export_path("png") == workspace.base_dir / "nemo-side-2.png"


def test_credits_line(connected: InteractiveShell) -> None:
    result, cap = line(connected, "credits")
    assert result is None
    assert cap.stdout.startswith("Credits: ")


def png_urls(media: list[Any]) -> list[str]:
    """The URLs of PNG stills in ``generated_media`` (signed URLs end in a query)."""
    urls = [str(item.get("url", "")) for item in media]
    return [url for url in urls if urlsplit(url).path.endswith(".png")]


def test_upload_file_and_routed_upload(connected: InteractiveShell, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG_1x1)
    _, cap = line(connected, f"upload {photo}")
    assert cap.stdout.startswith("Uploaded photo.png")
    _, cap = cell(connected, "", f"upload {photo}")
    assert cap.stdout.startswith("Uploaded photo.png")
    with pytest.raises(FileNotFoundError):
        line(connected, f"upload {tmp_path / 'missing.png'}")
    cell(connected, "", CITY)
    media = magics_of(connected).workspace.sessions["main"].state().generated_media
    image_url = png_urls(media)[0]
    _, cap = line(connected, f"upload {image_url}")
    assert cap.stdout.startswith("Uploaded img_") and "1920x1080" in cap.stdout


def test_export_plays_inline_with_claim_link(connected: InteractiveShell, tmp_path: Path) -> None:
    cell(connected, "", CITY)
    result, cap = line(connected, "export")
    saved = tmp_path / "nemo-main-1.mp4"
    assert result is None and saved.is_file() and saved.stat().st_size > 0
    stdout = cap.stdout
    final = "\n".join(part.rsplit("\r", 1)[-1] for part in stdout.split("\n"))
    assert final == "Rendering… 100%\nSaved nemo-main-1.mp4\n"
    html = html_outputs(cap)
    assert len(html) == 2
    assert "data:video/mp4;base64," in html[0] and "poster=" in html[0]
    assert "/workspace/claim?ct=" in html[1]
    assert "a server on this machine, so it opens no real NemoVideo project" in html[1]
    # linked, relative to the notebook's folder, under a chosen name
    _, cap = line(connected, "export --link --out clips/final.mp4")
    assert (tmp_path / "clips" / "final.mp4").is_file()
    assert '<source src="clips/final.mp4"' in html_outputs(cap)[0]
    # the embedding threshold is a setting
    connected.run_line_magic("config", "NemoMagics.embed_limit_mb = 0.001")
    assert not magics_of(connected).workspace.exports.video_view(saved).embedded


def test_a_new_kernel_never_overwrites_an_earlier_kernels_export(
    connected: InteractiveShell, tmp_path: Path
) -> None:
    earlier = tmp_path / "nemo-main-1.mp4"
    earlier.write_bytes(b"an earlier kernel's video")  # a restart forgets the count
    cell(connected, "", CITY)
    _, cap = line(connected, "export --link")
    assert "Saved nemo-main-2.mp4" in cap.stdout
    assert earlier.read_bytes() == b"an earlier kernel's video"
    assert (tmp_path / "nemo-main-2.mp4").stat().st_size > 10_000


def test_an_unchanged_draft_is_not_rendered_again_nor_embedded_twice(
    connected: InteractiveShell, emulator: Any, tmp_path: Path
) -> None:
    cell(connected, "", CITY)
    renders = len(emulator.requests("POST", "/api/render/proxy/lambda"))
    _, first = line(connected, "export")
    assert "data:video/mp4;base64," in html_outputs(first)[0]  # embedded, once
    _, again = line(connected, "export")
    assert len(emulator.requests("POST", "/api/render/proxy/lambda")) == renders + 1
    assert again.stdout.startswith("The timeline has not changed since nemo-main-1.mp4")
    shown = html_outputs(again)[0]
    assert "data:video/mp4;base64," not in shown  # linked now, not embedded again
    assert '<source src="nemo-main-1.mp4"' in shown
    assert not (tmp_path / "nemo-main-2.mp4").exists()
    _, forced = line(connected, "export --again")
    assert len(emulator.requests("POST", "/api/render/proxy/lambda")) == renders + 2
    assert "Saved nemo-main-2.mp4" in forced.stdout
    cell(connected, "", "add the title 'Night Shift' for 2 seconds")
    _, edited = line(connected, "export")
    assert len(emulator.requests("POST", "/api/render/proxy/lambda")) == renders + 3
    assert "Saved nemo-main-3.mp4" in edited.stdout
    assert "data:video/mp4;base64," in html_outputs(edited)[0]  # a new video: embedded


def test_upload_several_files_and_urls_one_request_each(
    connected: InteractiveShell, emulator: Any, tmp_path: Path
) -> None:
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(PNG_1x1)
    session = magics_of(connected).workspace.sessions["main"]
    upload_path = f"/api/upload-video/nemo_agent/me/{session.id}"
    before = emulator.faults.count("POST", upload_path)
    _, cap = line(connected, f"upload {tmp_path / 'a.png'} {tmp_path / 'b.png'}")
    assert emulator.faults.count("POST", upload_path) == before + 1
    assert [row.split(" ")[1] for row in cap.stdout.splitlines()] == ["a.png", "b.png"]
    cell(connected, "", CITY)
    media = session.state().generated_media
    urls = png_urls(media)[:1] * 2
    before = emulator.faults.count("POST", upload_path)
    _, cap = line(connected, "upload " + " ".join(urls))
    assert emulator.faults.count("POST", upload_path) == before + 1
    assert len(cap.stdout.splitlines()) == 2
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        line(connected, f"upload {tmp_path / 'a.png'} {tmp_path / 'missing.png'}")
    assert emulator.faults.count("POST", upload_path) == before + 1  # nothing was sent
    _, cap = cell(connected, "", f"upload {tmp_path / 'a.png'} and {tmp_path / 'b.png'}")
    assert emulator.faults.count("POST", upload_path) == before + 2  # typed: one request too
    assert [row.split(" ")[1] for row in cap.stdout.splitlines()] == ["a.png", "b.png"]


def test_export_formats_against_the_emulator(connected: InteractiveShell, tmp_path: Path) -> None:
    cell(connected, "", CITY + " for 1 second")
    with capture_output() as cap:
        result = connected.run_cell("%nemo export --format xyz")
    assert isinstance(result.error_in_exec, BadRequestError)  # the server's reason, in one line
    assert "Server said: output.format 'xyz' is not supported" in cap.stdout
    assert "Traceback" not in cap.stdout and len(cap.stdout.strip().splitlines()) == 1
    assert not list(tmp_path.glob("nemo-main-*"))
    _, cap = line(connected, "export --format png")  # a still at full quality
    still = tmp_path / "nemo-main-1.png"  # the refused export used up no number
    assert still.read_bytes().startswith(b"\x89PNG") and cap.stdout.endswith(
        "Saved nemo-main-1.png\n"
    )
    assert "image/jpeg" in cap.outputs[0].data  # shown as an image (a preview of the still)
    _, cap = line(connected, "export --format webm --link")
    assert (tmp_path / "nemo-main-2.webm").is_file()
    assert '<source src="nemo-main-2.webm" type="video/webm">' in html_outputs(cap)[0]


def test_a_failing_claim_call_is_one_line_and_keeps_the_connection(
    shell: InteractiveShell, emulator: Any
) -> None:
    emulator.faults.fail_requests(1, status=500, path_prefix="/api/auth/claim-token")
    try:
        _, cap = line(shell, f"connect {emulator.url}")
    finally:
        emulator.faults.reset()
    first, claim = cap.stdout.splitlines()
    assert first == f"Connected to {emulator.url} (anonymous token)."
    assert claim.startswith("No claim link this time: ") and cap.outputs == []
    _, cap = line(shell, "credits")
    assert cap.stdout.startswith("Credits: ")


def test_a_lost_session_continues_in_a_new_one_and_says_so(connected: InteractiveShell) -> None:
    from nemo_notebook._workflows import replaced_line

    session = magics_of(connected).workspace.sessions["main"]
    assert session.client.recreate_missing_sessions
    lost = session.id = "9" * 19  # a session the server does not know (expired or removed)
    _, cap = cell(connected, "", CITY)
    assert session.id != lost
    assert cap.stdout.startswith(replaced_line(lost, session.id) + "\n")
    assert "not found on the server" in cap.stdout and "earlier timeline" in cap.stdout
    assert connected.user_ns["_nemo"].text
    assert magics_of(connected).workspace.sessions["main"] is session


def test_routed_export_before_anything_fails_loudly(connected: InteractiveShell) -> None:
    with pytest.raises(NothingToExportError, match="Generate something first"):
        cell(connected, "", "export the video")


def test_failures_show_name_and_message_not_internal_frames(connected: InteractiveShell) -> None:
    with capture_output() as cap:
        result = connected.run_cell("%nemo export")
    assert isinstance(result.error_in_exec, NothingToExportError)  # still raised: nbval stops
    assert "NothingToExportError" in cap.stdout and "Generate something first" in cap.stdout
    assert "_magics.py" not in cap.stdout and "Traceback" not in cap.stdout
    connected.run_line_magic("config", "NemoMagics.full_tracebacks = True")
    with capture_output() as cap:
        connected.run_cell("%nemo export")
    assert "_magics.py" in cap.stdout and "Generate something first" in cap.stdout


@pytest.mark.parametrize("full", [True, False])
def test_verbose_tracebacks_never_show_the_token(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    """With ``%xmode Verbose`` IPython lists every frame's variables, the request headers and
    the token among them; a token of any form is redacted, not only ``nmv_usr_…``."""
    token = "sk-live-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("NEMO_TOKEN", token)
    with socket.socket() as closed:  # a port nobody listens on: the call fails inside _send
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    shell.run_line_magic("xmode", "Verbose")
    shell.run_line_magic("config", f"NemoMagics.full_tracebacks = {full}")
    try:
        with capture_output() as cap:
            result = shell.run_cell(f"%nemo connect {url}")
    finally:
        shell.run_line_magic("xmode", "Context")
    assert isinstance(result.error_in_exec, TransportError)
    assert ("headers" in cap.stdout) is full  # the frames' variables were shown, redacted
    assert token not in cap.stdout and token[8:20] not in cap.stdout


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://127.8.9.10", True),
        ("http://[::1]:9000", True),
        ("http://LOCALHOST:8000", True),
        ("http://127.example.com", False),
        ("https://mega-api-prod.nemovideo.ai", False),
        ("http://10.0.0.1:8000", False),
    ],
)
def test_a_server_on_this_machine_is_told_apart_from_the_cloud(url: str, local: bool) -> None:
    from nemo_notebook._workflows import claim_note, is_this_machine

    assert is_this_machine(url) is local
    assert ("no real NemoVideo project" in claim_note(url)) is local


def test_emulator_handle_needs_a_local_emulator(connected: InteractiveShell) -> None:
    with pytest.raises(NotebookError, match="connect --local"):
        line(connected, "emulator")


def test_usage_errors(connected: InteractiveShell) -> None:
    with pytest.raises(UsageError, match=r"Unknown command .frobnicate.*%nemo help"):
        connected.run_line_magic("nemo", "frobnicate")
    with pytest.raises(UsageError, match="empty"):
        connected.run_cell_magic("nemo", "", "   \n")
    with pytest.raises(UsageError):
        connected.run_cell_magic("nemo", "--out 3", CITY)


def test_failing_turn_raises(connected: InteractiveShell, emulator: Any) -> None:
    emulator.faults.fail_requests(1, status=500, path_prefix="/run_sse")
    try:
        with capture_output() as cap, pytest.raises(NemoError):
            connected.run_cell_magic("nemo", "", "add a title 'Failing'")
    finally:
        emulator.faults.reset()
    assert_no_token(cap)


def test_given_token_never_shown(
    shell: InteractiveShell, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "nmv_usr_" + "Q" * 43
    monkeypatch.setenv("NEMO_TOKEN", secret)
    monkeypatch.setenv("NEMO_API_URL", emulator.url)  # for the lazy connect of the cell
    with capture_output() as cap:
        with pytest.raises(AuthError) as raised:
            shell.run_line_magic("nemo", f"connect {emulator.url}")
        with pytest.raises(AuthError) as raised_again:
            shell.run_cell_magic("nemo", "", CITY)
    assert "NEMO_TOKEN is invalid or expired" in str(raised.value)
    assert "Connected" not in cap.stdout  # a failed connect says so loudly, not half-way
    assert magics_of(shell).workspace.client is None
    assert secret not in str(raised_again.value)
    assert secret not in str(raised.value) and secret not in repr(raised.value)
    assert_no_token(cap, secret, "Q" * 43)


def test_connect_local_starts_an_emulator(shell: InteractiveShell) -> None:
    result, cap = line(shell, "connect --local")
    workspace = magics_of(shell).workspace
    handle = workspace.emulator
    assert result is None and handle is not None
    assert cap.stdout.startswith(f"Started the local emulator; connected to {handle.url}.")
    assert_claim_link(cap, "issued by the local emulator, so it opens no real NemoVideo project")
    _, cap = line(shell, "credits")  # a working session's worth, not the cloud's 100
    assert cap.stdout.startswith(f"Credits: {LOCAL_EMULATOR_CREDITS} available")
    server, _ = line(shell, "emulator")  # its handle: faults and credits for the notebook
    assert server is handle
    server.set_credits(workspace.client.user_id, 7)
    _, cap = line(shell, "credits")
    assert cap.stdout.startswith("Credits: 7 available")
    _, cap = line(shell, "credits --add 500")
    assert cap.stdout == "Added 500 credits on the local emulator: 507 available.\n"
    # out of credits on the local emulator: how to top up, not how to register
    server.set_credits(workspace.client.user_id, 0)
    with pytest.raises(InsufficientCreditsError, match=r"%nemo credits --add"):
        cell(shell, "", CITY)
    shell.run_line_magic("unload_ext", "nemo_notebook")
    assert workspace.emulator is None
    shell.run_line_magic("load_ext", "nemo_notebook")


def test_reconnecting_keeps_the_sessions_and_new_starts_over(shell: InteractiveShell) -> None:
    line(shell, "connect --local")
    workspace = magics_of(shell).workspace
    handle, session = workspace.emulator, workspace.sessions["main"]
    _, cap = line(shell, "connect --local")
    assert cap.stdout.startswith("Still connected to the local emulator")
    assert workspace.emulator is handle and workspace.sessions["main"] is session
    _, cap = line(shell, "connect --local --new")
    assert workspace.emulator is not handle and not handle.running
    assert workspace.sessions["main"] is not session
    assert cap.stdout.startswith("Started the local emulator")


def test_a_failed_connect_keeps_the_working_connection(shell: InteractiveShell) -> None:
    line(shell, "connect --local")
    workspace = magics_of(shell).workspace
    handle, client, session = workspace.emulator, workspace.client, workspace.sessions["main"]
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with pytest.raises(TransportError):
        line(shell, f"connect {dead}")
    assert workspace.client is client and workspace.emulator is handle and handle.running
    assert workspace.sessions["main"] is session
    _, cap = line(shell, "credits")  # still the local emulator, never the cloud
    assert cap.stdout.startswith("Credits: ")
    assert [r for r in handle.requests("GET", "/api/credits/balance/simple")]


def test_nothing_goes_to_the_cloud_unasked(shell: InteractiveShell) -> None:
    with capture_output() as cap:
        result = shell.run_cell("%%nemo\nhello")
    assert isinstance(result.error_in_exec, NotebookError)
    assert "%nemo connect --local" in cap.stdout and "Traceback" not in cap.stdout
    assert magics_of(shell).workspace.client is None


def test_file_errors_and_interrupts_are_one_line(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    line(shell, "connect --local")
    with capture_output() as cap:
        result = shell.run_cell("%nemo upload /no/such/photo.png")
    assert isinstance(result.error_in_exec, FileNotFoundError)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", cap.stdout).strip()
    assert shown == "FileNotFoundError: No such file to upload: /no/such/photo.png"

    def interrupted(*_args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Workspace, "chat", interrupted)
    with capture_output() as cap:
        result = shell.run_cell("%%nemo\nhello")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)  # Run All stops here
    assert re.sub(r"\x1b\[[0-9;]*m", "", cap.stdout).strip() == "Interrupted"


# --------------------------------------------------------------------------- scripted backend


class RecordingOutput:
    """What the workspace shows; ``interrupt_on_write`` raises KeyboardInterrupt once, from
    that write (numbered from 1), as Ctrl-C during a streamed turn does."""

    def __init__(self, interrupt_on_write: int | None = None, *, live: bool = False) -> None:
        self.text = ""
        self.shown: list[object] = []
        self.writes = 0
        self.interrupt_on_write = interrupt_on_write
        self.live = live  # a kernel's frontend (outputs updated in place), or a terminal
        self.updates: list[tuple[str, dict[str, str]]] = []  # (display id, mime bundle)
        self.ids: list[str | None] = []  # the display id of each shown object

    def write(self, text: str) -> None:
        self.writes += 1
        if self.writes == self.interrupt_on_write:
            raise KeyboardInterrupt
        self.text += text

    def display(self, obj: object, *, display_id: str | None = None) -> None:
        self.shown.append(obj)
        self.ids.append(display_id)

    def update(self, obj: object, *, display_id: str) -> None:
        self.updates.append((display_id, obj._repr_mimebundle_()))  # type: ignore[attr-defined]


DRAFT = {
    "d": 5000,
    "t": [{"id": "v", "tt": 0, "sg": [{"st": 0, "d": 5000, "n": "city", "src": "http://h/a.png"}]}],
}
EMPTY_DRAFT = {"d": 5000, "t": []}
NEW_STILL = "http://h/media/generated/new.png"


def scripted_workspace(
    backend: FakeBackend,
    tmp_path: Path,
    output: RecordingOutput | None = None,
    *,
    read_state: bool = True,
    **settings: Any,
) -> tuple[Workspace, RecordingOutput, Session]:
    """A workspace whose client is the real one over ``backend``, connected, and its output
    cleared of the connect lines. With ``read_state`` the state is read first, so each turn
    reads it once, after the turn (the diff is of ``drafts[0]`` and the next)."""
    output = output if output is not None else RecordingOutput()
    workspace = Workspace(
        settings=DefaultSettings(**settings),
        output=output,
        client_factory=lambda **kwargs: fake_client(backend, tmp_path / "config", **kwargs),
        env={"NEMO_API_URL": API_URL},
        base_dir=tmp_path,
    )
    workspace.connect()
    session = workspace.sessions["main"]
    if read_state:
        session.state()
    output.text, output.shown[:], output.writes = "", [], 0
    return workspace, output, session


def test_silent_turn_shows_diff_and_tracks(tmp_path: Path) -> None:
    backend = FakeBackend(
        turn=scripted_turn(sse(adk_call("add_video", {"prompt": "city"}))),
        drafts=[EMPTY_DRAFT, DRAFT],
    )
    workspace, output, _ = scripted_workspace(backend, tmp_path)
    reply = workspace.chat("add the city clip", CellArgs())
    assert reply.silent
    kinds = [type(shown) for shown in output.shown]
    assert kinds == [ChangesView, TracksTable]
    changes = output.shown[0]
    assert isinstance(changes, ChangesView)
    assert changes.lines == ("Video added: city (0-5s)",)


def actions_backend() -> FakeBackend:
    """A turn that made a still and whose text names Export, the timeline and the balance."""
    text = "Done. Click Export to render it. Preview it in the timeline. Check your credit balance."
    return FakeBackend(
        turn=scripted_turn(sse(adk_text(text))),
        drafts=[DRAFT, DRAFT],
        generated_media=[[], [{"url": NEW_STILL}]],
        media={NEW_STILL: PNG_1x1},
    )


def test_actions_suggest_export_and_follow_free_hints(tmp_path: Path) -> None:
    backend = actions_backend()
    workspace, output, _ = scripted_workspace(backend, tmp_path)
    reply = workspace.chat("make it", CellArgs())
    assert reply.actions == ("export", "status", "credits")
    assert output.text.startswith("Done.\n")
    assert "Ready to export: run `%nemo export` to render the MP4.\n" in output.text
    assert "Credits: 70 available, 10 reserved by running work, 80 in total." in output.text
    assert [type(s) for s in output.shown] == [ImageView, TracksTable]
    assert backend.fetched_media() == [NEW_STILL]

    backend = actions_backend()
    workspace, output, _ = scripted_workspace(backend, tmp_path, auto_actions=False)
    workspace.chat("make it", CellArgs())
    assert "`%nemo tracks`" in output.text and "`%nemo credits`" in output.text
    assert "Credits: 70" not in output.text  # (the balance is still read: the turn's meter)
    assert [type(s) for s in output.shown] == [ImageView]


def test_interrupt_closes_the_stream_and_says_what_to_do(tmp_path: Path) -> None:
    backend = FakeBackend(
        turn=scripted_turn(
            sse(adk_text("Working")),
            sse(adk_call("generate_image", {"prompt": "city"})),
            sse(adk_text(" more")),
            sse(adk_text(" and the end.")),
        )
    )
    output = RecordingOutput(interrupt_on_write=3)  # "Working", the status line, then Ctrl-C
    workspace, output, session = scripted_workspace(backend, tmp_path, output=output, stream_rate=0)
    with pytest.raises(KeyboardInterrupt):
        workspace.chat("make it", CellArgs())
    (turn,) = session.history  # the stream was closed: the turn ended as stopped
    assert turn.reply.stopped and "end" not in turn.reply.text
    assert backend.count("POST", "/run_sse") == 1  # never re-sent
    assert output.text.startswith("Working\n· ")
    assert output.text.endswith("Run `%nemo status` to see what it did.\n")


ASPECT = Question(
    "Which aspect ratio should the video use?", ("16:9 landscape", "9:16 portrait"), "call_1"
)


def asking_backend() -> FakeBackend:
    """Every turn ends with the agent asking ``ASPECT``."""
    ask = adk_question(ASPECT.text, list(ASPECT.options), ASPECT.call_id or "call_1")
    return FakeBackend(turn=scripted_turn(sse(ask)))


def test_a_question_shows_its_options_and_how_to_answer(tmp_path: Path) -> None:
    workspace, output, _ = scripted_workspace(asking_backend(), tmp_path)
    reply = workspace.chat("make a video of the sea", CellArgs())
    assert reply.question == ASPECT
    assert output.text == (
        "Which aspect ratio should the video use?\n"
        "1. 16:9 landscape\n"
        "2. 9:16 portrait\n"
        "Answer in the next %%nemo cell with an option's number or your own words, "
        "e.g. `%%nemo` then `2`.\n"
    )
    workspace, output, _ = scripted_workspace(asking_backend(), tmp_path)  # not streamed
    workspace.chat("make a video of the sea", CellArgs(stream=False))
    assert output.text.startswith(
        "Which aspect ratio should the video use?\n1. 16:9 landscape\n2. 9:16 portrait\n"
    )


def test_a_number_answers_the_pending_question_anything_else_goes_as_typed(
    tmp_path: Path,
) -> None:
    backend = asking_backend()
    workspace, output, session = scripted_workspace(backend, tmp_path)
    workspace.chat("make a video of the sea", CellArgs())
    assert session.pending_question == ASPECT
    output.text = ""
    workspace.chat(" 2 ", CellArgs())
    assert backend.sent_messages()[-1] == "9:16 portrait"
    assert output.text.startswith("· answering: 9:16 portrait\n")
    for typed in ("3", "square, please", "1 and 2"):
        output.text = ""
        workspace.chat(typed, CellArgs())
        assert backend.sent_messages()[-1] == typed and "answering" not in output.text
    backend.turn = scripted_turn(sse(adk_text("Square it is.")))  # a reply without a question
    workspace.chat("square", CellArgs())
    assert session.pending_question is None
    workspace.chat("1", CellArgs())
    assert backend.sent_messages() == [
        "make a video of the sea", "9:16 portrait", "3", "square, please", "1 and 2", "square",
        "1",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("typed", "sent"),
    [("2", "9:16 portrait"), ("2.", "9:16 portrait"), ("#1", "16:9 landscape"),
     ("（２）", "9:16 portrait"), ("0", "0"), ("12", "12"), ("2 please", "2 please"),
     ("9:16 portrait", "9:16 portrait")],
)  # fmt: skip
def test_answer_for_takes_a_bare_option_number_only(typed: str, sent: str) -> None:
    from nemo_notebook._workflows import answer_for

    message, said = answer_for(typed, ASPECT)
    assert message == sent
    assert said == (f"· answering: {sent}" if sent != typed else None)
    assert answer_for("2", None) == ("2", None)


def test_a_silent_turn_with_unknown_changes_says_so_instead_of_no_change(tmp_path: Path) -> None:
    backend = FakeBackend(turn=scripted_turn(sse(adk_call("trim", {"to": "tight"}))))
    # no state read yet: the turn reads the state before (alongside the POST) and after it
    workspace, output, _ = scripted_workspace(backend, tmp_path, read_state=False)
    backend.state_down_after = 1  # the state endpoint fails once the turn has ended
    reply = workspace.chat("tighten the cut", CellArgs())
    assert reply.silent and not reply.changes_known
    assert "did not change" not in output.text
    (note,) = output.shown
    assert isinstance(note, NoteView) and "could not be read" in note.text
    assert "nemo-note" in note.to_html()


EXPORTED = {"png": PNG_1x1, "webm": b"\x1aE\xdf\xa3 not a real webm", "mp4": b"data"}


@pytest.mark.parametrize(
    ("fmt", "view", "mime"), [("png", ImageView, "image/png"), ("webm", VideoView, "video/webm")]
)
def test_export_formats_name_the_file_and_show_it_by_kind(
    tmp_path: Path, fmt: str, view: type, mime: str
) -> None:
    backend = FakeBackend(
        drafts=[DRAFT],
        render_script=[{"status": "completed", "progress": 100}],
        rendered=EXPORTED,
    )
    workspace, output, _ = scripted_workspace(backend, tmp_path)
    path = workspace.exports.export(ExportArgs(format=fmt))
    assert path == tmp_path / f"nemo-main-1.{fmt}" and path.read_bytes() == EXPORTED[fmt]
    assert backend.export_formats() == [fmt]
    shown, link = output.shown
    assert isinstance(shown, view) and shown.mime_type == mime
    assert isinstance(link, LinkView) and "valid for 7 days" in link.note
    assert workspace.exports.export(ExportArgs()).name == "nemo-main-2.mp4"
    assert backend.export_formats() == [fmt, "mp4"]


def test_empty_message_is_refused(tmp_path: Path) -> None:
    backend = FakeBackend(turn=scripted_turn(sse(adk_text("never sent"))))
    workspace, _, _ = scripted_workspace(backend, tmp_path)
    with pytest.raises(NotebookError):
        workspace.chat("  ", CellArgs())
    assert backend.count("POST", "/run_sse") == 0


def test_reply_and_draft_display_as_escaped_html():
    from IPython.core.interactiveshell import InteractiveShell

    from nemo_notebook import Draft, Reply

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nemo_notebook")
    formatter = shell.display_formatter
    reply = Reply("hi", text="<img src=x onerror=alert(1)>", changes=("Title added: 'A' (0-3s)",))
    data, _ = formatter.format(reply)
    assert "&lt;img src=x onerror=alert(1)&gt;" in data["text/html"]
    assert "<img" not in data["text/html"]
    assert "Title added" in data["text/plain"]
    draft = Draft.from_dict({"t": [{"tt": 7, "sg": [{"st": 0, "d": 3000, "tx": "<b>x</b>"}]}]})
    data, _ = formatter.format(draft)
    assert "&lt;b&gt;x&lt;/b&gt;" in data["text/html"] and "<b>" not in data["text/html"]
    shell.run_line_magic("unload_ext", "nemo_notebook")
