"""The tutorials and the prompt panel in a real browser: JupyterLab in Debian's Chromium.

One JupyterLab server serves the test session (isolated settings, its own token and port); each
test gets a fresh Chromium profile, copies its notebook into its own folder under the server's
root (so the repository is never modified), runs it with Run > Run All Cells and checks what a
person would see. On failure, screenshots of the notebook and of the elements a test watched
land in ``$NEMO_TEST_ARTIFACTS/browser/<test name>/``.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    CONTRAST_JS,
    DARK_THEME,
    LIGHT_THEME,
    REPO_ROOT,
    ConsoleLog,
    LabPage,
    LabServer,
    PanelParts,
    artifacts_dir,
    h264_support,
    launch_browser,
    open_in_notebook7,
    require_chromium,
    set_theme,
    start_lab,
    wait_until,
)
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOKS = REPO_ROOT / "notebooks"
RUN_ALL_TIMEOUT_S = 150
DURATION_TOLERANCE_S = 0.1
PLAYBACK_ADVANCE_S = 0.25

# Console errors JupyterLab itself logs in this offline, isolated setup and that say nothing
# about the package. Keep every entry precise and explain it; anything else fails the test.
ALLOWED_CONSOLE_ERRORS: tuple[re.Pattern[str], ...] = ()
# Notebook 7 (7.6) logs these on its notebook page with any notebook, a plain `1+1` one too:
# its shortcuts plugin reads the schema of a settings plugin the notebook page does not load,
# and its file browser restores a path with a command that page does not register.
NOTEBOOK7_CONSOLE_ERRORS = (
    re.compile(r"^pageerror: Cannot read properties of undefined \(reading 'schema'\)$"),
    re.compile(r"^pageerror: Command 'filebrowser:open-path' not registered\.$"),
)


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """One ``jupyter lab`` for the test session, stopped by its pid at the end."""
    root = tmp_path_factory.mktemp("lab-root")
    home = tmp_path_factory.mktemp("lab-home")
    server, problem = None, ""
    try:
        server = start_lab(root, home)
    except RuntimeError as exc:
        problem = str(exc)
    if server is None:
        pytest.fail(problem, pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    """Playwright's sync driver; fails (never skips) when Chromium is not installed.

    Module scope on purpose: while the sync driver runs, this thread's asyncio loop counts as
    running, so a later test's ``asyncio.run()`` would fail; stopping it clears that.
    """
    problem = ""
    try:
        require_chromium()
    except RuntimeError as exc:
        problem = str(exc)
    if problem:
        pytest.fail(problem, pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def lab(
    request: pytest.FixtureRequest,
    playwright_driver: Any,
    lab_server: LabServer,
    tmp_path: Path,
) -> Iterator[LabPage]:
    """A fresh Chromium profile on the server; failure screenshots saved at teardown, and the
    kernels the test started (each with its emulator) shut down."""
    context = launch_browser(playwright_driver, tmp_path / "chromium-profile")
    page = context.pages[0] if context.pages else context.new_page()
    page.set_default_timeout(30_000)
    console = ConsoleLog()
    console.attach(page)
    driver = LabPage(page, console, lab_server)
    failures_before = request.session.testsfailed
    try:
        yield driver
        # The call phase's report is counted before teardown runs. NEMO_SAVE_SCREENSHOTS=1
        # keeps them from passing tests too, to look at what a person sees.
        failed = request.session.testsfailed > failures_before
        if failed or os.environ.get("NEMO_SAVE_SCREENSHOTS"):
            driver.save_artifacts(artifacts_dir() / _safe(request.node.name))
    finally:
        context.close()
        lab_server.shutdown_kernels()


@pytest.fixture
def workdir(request: pytest.FixtureRequest, lab_server: LabServer) -> Path:
    """This test's folder under the server's root (the kernel's working directory)."""
    folder = lab_server.root_dir / f"{_safe(request.node.name)}-{secrets.token_hex(3)}"
    folder.mkdir()
    return folder


# ---------------------------------------------------------------------------------------------
# Helpers


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def copy_tutorial(name: str, workdir: Path) -> Path:
    """Copy a tutorial into the test's folder without its saved outputs.

    The repository stays untouched, and everything the test then sees in the browser was
    produced by this run (saved outputs and execution counts would satisfy the checks).
    """
    import nbformat

    source = NOTEBOOKS / name
    assert source.is_file(), f"the tutorial {source} is missing"
    document = nbformat.read(source, as_version=4)
    for cell in document.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    document.metadata.pop("widgets", None)
    target = workdir / name
    nbformat.write(document, target)
    return target


def open_and_run_all(
    lab: LabPage, notebook: Path, timeout_s: float = RUN_ALL_TIMEOUT_S, frontend: str = "lab"
) -> Any:
    """Open the notebook (in JupyterLab, or ``frontend="notebook7"``), Run All, wait for every
    cell; returns the notebook panel locator."""
    relative = urllib.parse.quote(notebook.relative_to(lab.server.root_dir).as_posix())
    if frontend == "notebook7":
        panel = open_in_notebook7(lab, relative)
    else:
        panel = lab.open_notebook(relative, f"{_safe(notebook.parent.name)}")
    lab.watch_stdout(panel)
    lab.run_all(panel)
    lab.wait_all_executed(panel, timeout_s)
    return panel


def code_sources(notebook: Path) -> list[str]:
    """The sources of the notebook's code cells, in order."""
    import nbformat

    document = nbformat.read(notebook, as_version=4)
    return [cell.source for cell in document.cells if cell.cell_type == "code"]


def chat_cell_indices(sources: list[str]) -> list[int]:
    """Code cells that are ``%%nemo`` chat turns (not export/status/credits/upload)."""
    from nemo_notebook._intents import Intent, route

    indices = []
    for index, source in enumerate(sources):
        first, _, body = source.lstrip().partition("\n")
        if first.startswith("%%nemo") and route(body.strip()).intent is Intent.CHAT:
            indices.append(index)
    return indices


def assert_no_console_errors(lab: LabPage, frontend: str = "lab") -> None:
    allowed = ALLOWED_CONSOLE_ERRORS
    if frontend == "notebook7":
        allowed += NOTEBOOK7_CONSOLE_ERRORS
    unexpected = lab.console.unexpected(allowed)
    assert not unexpected, "console errors:\n" + "\n".join(unexpected)


def probe_duration_s(path: Path) -> float:
    from nemo_notebook.emulator.media.render import probe

    return float(probe(path)["duration_s"])


def summary_duration_s(summary: str) -> float | None:
    """The draft's length from a one-line summary: the latest segment end, e.g. "(0-5s" -> 5."""
    ends = [float(end) for _, end in re.findall(r"\((\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)s\b", summary)]
    return max(ends) if ends else None


def assert_video_plays(lab: LabPage, video: Any, expected_duration_s: float) -> dict[str, Any]:
    """The video's metadata duration matches the file's, and muted playback advances.

    Where Chromium cannot decode H.264 at all, only what can be checked is: the source answers
    200 with the whole file, and the duration if the metadata loads.
    """
    video.scroll_into_view_if_needed()
    if not h264_support(lab.page):
        fetched = lab.fetch_status(video)
        assert fetched["status"] == 200 and fetched["bytes"] > 0, fetched
        return fetched
    facts = lab.video_facts(video)
    assert abs(facts["duration"] - expected_duration_s) <= DURATION_TOLERANCE_S, (
        f"<video> duration {facts['duration']} s, the MP4 is {expected_duration_s} s"
    )
    assert facts["width"] > 0 and facts["height"] > 0, facts
    assert facts["end"] >= facts["start"] + PLAYBACK_ADVANCE_S, f"playback did not advance: {facts}"
    return facts


def new_mp4s(workdir: Path, before: set[Path]) -> list[Path]:
    """MP4 files that appeared in the folder since ``before``, oldest first."""
    found = [path for path in workdir.glob("*.mp4") if path not in before]
    return sorted(found, key=lambda path: path.stat().st_mtime)


# ---------------------------------------------------------------------------------------------
# Tests


def test_h264_is_playable_in_this_chromium(lab: LabPage) -> None:
    """Debian's Chromium must decode H.264 + AAC MP4 (what the renderer writes)."""
    lab.page.goto(lab.server.url("/api/status"))
    support = h264_support(lab.page)
    assert support in ("probably", "maybe"), (
        f"this Chromium cannot play H.264 MP4 (canPlayType -> {support!r}); "
        "video playback checks fall back to fetching the source"
    )


def test_quickstart_streams_shows_tracks_and_plays_the_export(lab: LabPage, workdir: Path) -> None:
    notebook = copy_tutorial("01-quickstart.ipynb", workdir)
    sources = code_sources(notebook)
    chats = chat_cell_indices(sources)
    assert chats, "the quickstart has no %%nemo chat cell"

    panel = open_and_run_all(lab, notebook)

    replies = {index: lab.turn_text(panel, index) for index in chats}
    reply_lines = [
        line for text in replies.values() for line in text.splitlines() if _is_reply_line(line)
    ]
    assert reply_lines, f"no formatted reply under the %%nemo cells: {replies}"
    assert all("NemoVideo · local emulator" in text for text in replies.values()), replies
    growth = lab.stdout_growth()
    assert any(len(growth.get(index, [])) >= 2 for index in chats), (
        f"no %%nemo reply arrived in pieces (reply lengths seen per cell: {growth})"
    )
    words = lab.watch("formatted reply", panel.locator(".nemo-turn .nemo-words").first)
    assert words.evaluate("(node) => getComputedStyle(node).fontFamily").find("monospace") < 0

    table = lab.watch("tracks table", panel.locator(".jp-OutputArea-output table").last)
    table.wait_for(state="visible")
    headers = [text.strip() for text in table.locator("th").all_inner_texts()]
    assert {"track", "type", "label", "start_s", "end_s"} <= set(headers), headers
    assert table.locator("tbody tr").count() >= 1

    video = lab.watch("video", panel.locator(".jp-OutputArea-output video").last)
    video.wait_for(state="attached")
    mp4 = workdir / _video_file_name(video.text_content() or "")
    assert mp4.is_file(), f"the exported {mp4.name} is not next to the notebook"
    file_duration = probe_duration_s(mp4)
    shown_summary = _last_summary_before(panel, video)
    assert shown_summary, "no timeline summary is shown before the export"
    draft_duration = summary_duration_s(shown_summary)
    assert draft_duration is not None, shown_summary
    assert abs(file_duration - draft_duration) <= DURATION_TOLERANCE_S, (
        f"the MP4 is {file_duration} s, the draft ({shown_summary}) {draft_duration} s"
    )
    assert_video_plays(lab, video, file_duration)
    assert_no_console_errors(lab)


def _is_reply_line(line: str) -> bool:
    """Agent text, not a status line ("· adding music…"), the backend line or a notice."""
    stripped = line.strip()
    notices = ("·", "Started the local", "Connected to", "NemoVideo ·")
    return bool(stripped) and not stripped.startswith(notices)


def _video_file_name(fallback_text: str) -> str:
    """The file named in the player's fallback text ("…; open nemo-main-1.mp4.")."""
    match = re.search(r"open (\S+\.mp4)\.?\s*$", fallback_text.strip())
    assert match, f"the player does not name its file: {fallback_text!r}"
    return match.group(1)


_TEXTS_BEFORE_JS = """
(panel, video) => [...panel.querySelectorAll('.jp-OutputArea-output')]
  .filter((node) => node.compareDocumentPosition(video) & Node.DOCUMENT_POSITION_FOLLOWING)
  .map((node) => node.innerText)
"""


def _last_summary_before(panel: Any, video: Any) -> str | None:
    """The last "Timeline (N tracks): …" line shown above the video, if any."""
    texts = panel.evaluate(_TEXTS_BEFORE_JS, video.element_handle())
    lines = [line for text in texts for line in text.splitlines() if line.startswith("Timeline (")]
    return lines[-1] if lines else None


PANEL_PROMPT = ("generate a realistic image", "of a mountain lake at sunrise")
FRONTENDS = [
    pytest.param("lab", LIGHT_THEME, id="jupyterlab-light"),
    pytest.param("lab", DARK_THEME, id="jupyterlab-dark"),
    pytest.param("notebook7", LIGHT_THEME, id="notebook7-light"),
    pytest.param("notebook7", DARK_THEME, id="notebook7-dark"),
]
# Text that must be readable (WCAG AA for normal text: 4.5) in every theme.
READABLE = {
    "the agent's words": ".nemo-bubble-nemo .nemo-piece-words p",
    "your message": ".nemo-bubble-you .nemo-you-text",
    "a status line": ".nemo-bubble-nemo .nemo-st-text",
    "the credits": ".nemo-credits",
    "the status bar": ".nemo-status",
    "the Send label": ".nemo-send span",
    "the Export label": ".nemo-export span",
    "a timeline bar": ".nemo-tl-bar",
}


def write_notebook(path: Path, sources: list[str]) -> Path:
    """A notebook of these code cells, on the python3 kernel."""
    import nbformat

    document = nbformat.v4.new_notebook()
    document.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    document.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(document, path)
    return path


def panel_notebook(path: Path) -> Path:
    """A notebook that opens the chat panel on a local emulator whose agent asks back."""
    return write_notebook(
        path,
        [
            "from nemo_notebook import NemoClient, Panel\n"
            "from nemo_notebook.emulator import start\n"
            "emulator = start(variant='ask-question')  # its first generation asks back\n"
            "panel = Panel(client=NemoClient(api_url=emulator.url), local_emulator=True)\n"
            "panel"
        ],
    )


@pytest.mark.parametrize(("frontend", "theme"), FRONTENDS)
def test_chat_panel_in_the_browser(
    lab: LabPage, workdir: Path, request: pytest.FixtureRequest, frontend: str, theme: str
) -> None:
    """Type and press Enter, watch the reply stream into a NemoVideo bubble, answer the
    agent's question with its button, export (Stop stays disabled) and play the new video,
    which does not loop; in JupyterLab and Notebook 7, light and dark."""
    set_theme(lab.server, theme)
    request.addfinalizer(lambda: set_theme(lab.server, LIGHT_THEME))
    notebook = panel_notebook(workdir / "panel.ipynb")
    panel = open_and_run_all(lab, notebook, frontend=frontend)
    light = lab.page.evaluate("() => document.body.dataset.jpThemeLight")
    assert light == ("true" if theme == LIGHT_THEME else "false"), f"the theme is not {theme}"
    parts = PanelParts.find(panel)
    lab.watch("chat panel", parts.root)
    expect(parts.send).to_be_enabled()
    expect(parts.stop, "Stop while nothing runs").to_be_disabled()
    saved_copy = panel.locator(".nemo-static")
    expect(saved_copy, "the static copy exists for saved notebooks").to_have_count(1)
    expect(saved_copy, "the live panel hides its static copy").to_be_hidden()

    # Shift+Enter breaks the line (and runs no cell), Enter sends.
    cells_run = _cells_run(panel)
    parts.prompt.click()
    parts.prompt.type(PANEL_PROMPT[0])
    parts.prompt.press("Shift+Enter")
    parts.prompt.type(PANEL_PROMPT[1])
    expect(parts.prompt).to_have_value("\n".join(PANEL_PROMPT))
    parts.log.evaluate(_WATCH_AGENT_TEXT_JS)
    parts.prompt.press("Enter")
    expect(parts.prompt, "the input box after Enter").to_have_value("")
    assert _cells_run(panel) == cells_run, "Enter or Shift+Enter ran a cell"
    assert lab.page.evaluate("() => document.activeElement.classList.contains('nemo-prompt')")
    you = parts.log.locator(".nemo-bubble-you").first
    expect(you).to_have_text("\n".join(PANEL_PROMPT))

    # The agent asks back; its options are buttons that send the answer.
    expect(parts.options.first).to_be_visible(timeout=60_000)
    assert parts.tone() == "question", parts.status.inner_text()
    question = parts.agent_bubbles().last
    expect(question).to_contain_text("aspect ratio")
    first_option = parts.options.first.inner_text()
    parts.options.first.click()
    expect(parts.log.locator(".nemo-bubble-you").last).to_have_text(first_option)
    wait_until(lambda: parts.tone() in ("done", "error"), 90, "the answer's reply")
    assert parts.tone() == "done", parts.status.inner_text()
    reply = parts.agent_bubbles().last
    expect(reply).to_contain_text("mountain lake")
    expect(reply.locator(".nemo-piece-status").first).to_be_visible()  # tool calls, apart
    lengths = parts.log.evaluate("(node) => node.__nemoAgentLengths")
    assert len(lengths) >= 3, f"the reply did not stream into its bubble (lengths: {lengths})"
    expect(parts.options).to_have_count(0)

    # An image card opens full size; the timeline is drawn as bars.
    thumb = reply.locator("img.nemo-thumb").first
    expect(thumb).to_be_visible()
    thumb.click()
    expect(parts.lightbox).to_be_visible()
    lab.page.keyboard.press("Escape")
    expect(parts.lightbox).to_be_hidden()
    expect(parts.tracks.locator(".nemo-tl-bar").first).to_be_visible()
    assert parts.tracks.locator(".nemo-tl-bar").count() >= 2
    expect(parts.credits).to_have_text(re.compile(r"\d+ credits"))

    for what, selector in READABLE.items():
        ratio = parts.root.locator(selector).first.evaluate(CONTRAST_JS)
        assert ratio >= 4.5, f"{what} has a contrast of {ratio:.2f} in {theme}"
    _save_panel_shot(parts, request, "reply")

    # Export: Stop stays disabled (an export cannot stop); the new video plays, never looping.
    before = set(workdir.glob("*.mp4"))
    parts.export.click()
    wait_until(lambda: parts.tone() == "working", 10, "the export to start")
    expect(parts.stop, "Stop during an export").to_be_disabled()
    expect(parts.send).to_be_disabled()
    wait_until(lambda: bool(new_mp4s(workdir, before)), 120, "the exported MP4")
    exported = new_mp4s(workdir, before)
    _wait_for_text(parts.status, lambda text: f"Saved {exported[0].name}" in text, 60)
    expect(parts.stop).to_be_disabled()
    video = lab.watch("panel video", parts.video)
    expect(video).to_be_visible()
    assert video.evaluate("(v) => v.loop === false && !v.hasAttribute('loop')"), "it loops"
    assert_video_plays(lab, video, probe_duration_s(exported[0]))
    _save_panel_shot(parts, request, "exported")
    assert_no_console_errors(lab, frontend)


def _cells_run(panel: Any) -> list[str]:
    return [text.strip() for text in panel.locator(".jp-InputArea-prompt").all_inner_texts()]


def _save_panel_shot(parts: PanelParts, request: pytest.FixtureRequest, stage: str) -> None:
    """Screenshots of the panel in each frontend and theme, kept for people to look at."""
    folder = artifacts_dir() / "panel"
    folder.mkdir(parents=True, exist_ok=True)
    parts.root.screenshot(path=str(folder / f"{request.node.callspec.id}-{stage}.png"))


# Records the successive text lengths of the last agent bubble (the reply as it streams).
_WATCH_AGENT_TEXT_JS = """
(node) => {
  node.__nemoAgentLengths = [];
  const lengths = node.__nemoAgentLengths;
  const record = () => {
    const bubbles = node.querySelectorAll('.nemo-bubble-nemo');
    const last = bubbles[bubbles.length - 1];
    const length = last ? last.innerText.length : 0;
    if (lengths[lengths.length - 1] !== length) lengths.push(length);
  };
  const options = {subtree: true, childList: true, characterData: true};
  new MutationObserver(record).observe(node, options);
}
"""


def _wait_for_text(locator: Any, condition: Any, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = locator.inner_text()
        if condition(text):
            return str(text)
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s; the element shows: {text!r}")


# Markup that would run if any display path put backend text into HTML unescaped. Each payload
# sets a different value, so a failure names the path that let it through. The values are JS
# template strings: quotes would end the quoted title in the chat message.
IMG_FROM_TITLE = "<img src=x onerror=window.__pwned=`title`>"
SCRIPT_FROM_CAPTIONS = "<script>window.__pwned=`captions`</script>"
IMG_IN_REPLY = "<img src=x onerror=window.__pwned=`reply-view`>"
SCRIPT_IN_CHANGES = "<script>window.__pwned=`changes-view`</script>"
IMG_IN_LINK = "<img src=x onerror=window.__pwned=`link-view`>"
IMG_FROM_PANEL = "<img src=x onerror=window.__pwned=`panel`>"
# Breaks out of the href attribute if the URL is not escaped (never shown as text).
URL_BREAKING_OUT = 'https://example.invalid/"><img src=x onerror=window.__pwned=`link-href`>'
PAYLOADS = (
    IMG_FROM_TITLE,
    SCRIPT_FROM_CAPTIONS,
    IMG_IN_REPLY,
    SCRIPT_IN_CHANGES,
    IMG_IN_LINK,
    IMG_FROM_PANEL,
)
# The last cell shows raw markup on purpose: it proves this page does run markup from outputs,
# so `window.__pwned` staying undefined means something. Its image fails to decode (an empty
# data URL) rather than to load, so it adds no 404 to the console.
CONTROL_CELL = (
    "from IPython.display import HTML\n"
    'HTML(\'<img src="data:," onerror="window.__control_img=1">'
    "<script>window.__control_script=1</script>')"
)


def injection_notebook(path: Path) -> Path:
    """A notebook that feeds markup through the emulator and the package's display objects."""
    code = str  # each cell's source
    return write_notebook(
        path,
        [
            code("%load_ext nemo_notebook\n%nemo connect --local"),
            code("%%nemo\ngenerate a realistic image of a quiet harbor at dawn"),
            code(f"%%nemo\nadd the title '{IMG_FROM_TITLE}'"),
            code(f"%%nemo\nadd captions '{SCRIPT_FROM_CAPTIONS}'"),
            code("%nemo tracks"),
            code(
                "from types import SimpleNamespace\n"
                "from IPython.display import display\n"
                "from nemo_notebook._display import ChangesView, LinkView, ReplyView\n"
                f"reply = SimpleNamespace(text={IMG_IN_REPLY!r}, "
                f"changes=({SCRIPT_IN_CHANGES!r},))\n"
                "display(ReplyView(reply))\n"
                f"display(ChangesView(({IMG_IN_REPLY!r}, {SCRIPT_IN_CHANGES!r})))\n"
                f"display(LinkView({URL_BREAKING_OUT!r}, {IMG_IN_LINK!r}, "
                f"note={SCRIPT_IN_CHANGES!r}))"
            ),
            code("panel = %nemo panel\npanel"),
            code(f"panel.submit({f'add the title {IMG_FROM_PANEL!r}'!r})\nassert panel.wait(60)"),
            code(CONTROL_CELL),
        ],
    )


def test_backend_markup_shows_as_text_and_never_runs(lab: LabPage, workdir: Path) -> None:
    notebook = injection_notebook(workdir / "injection.ipynb")
    panel = open_and_run_all(lab, notebook)

    control = "() => window.__control_img === 1 && window.__control_script === 1"
    lab.page.wait_for_function(control, timeout=15_000)
    pwned = lab.page.evaluate("() => window.__pwned")
    assert pwned is None, f"markup from the {pwned!r} path ran in the browser"

    outputs = panel.locator(".jp-OutputArea")
    shown = "\n".join(outputs.all_inner_texts())
    missing = [payload for payload in PAYLOADS if payload not in shown]
    assert not missing, f"markup not shown as text: {missing}"
    parts = PanelParts.find(panel)
    lab.watch("prompt panel", parts.root)
    expect(parts.tracks).to_contain_text(IMG_FROM_PANEL)
    expect(parts.tracks).to_contain_text(SCRIPT_FROM_CAPTIONS)

    injected_images = outputs.locator("img[onerror]")
    assert injected_images.count() == 1, "only the control cell may render an <img onerror>"
    assert outputs.locator("script", has_text="__pwned").count() == 0
    assert_no_console_errors(lab)


def background_notebook(path: Path) -> Path:
    """A background generation and export, with plain cells that run while they work."""
    return write_notebook(
        path,
        [
            "%load_ext nemo_notebook\n%nemo connect --local",
            "emulator = %nemo emulator\n"
            "emulator.time_scale = 0.01\n"
            "emulator.turn_latency_s = 150  # 1.5 s at this time scale",
            "%%nemo --background\ngenerate a realistic image of a futuristic city at night",
            "print('meanwhile', sum(range(10)))",
            "%nemo attach",
            "%nemo export --background --link",
            "print('still free')",
            "%nemo attach\n%nemo jobs",
        ],
    )


def test_background_cells_keep_updating_in_their_own_cell(lab: LabPage, workdir: Path) -> None:
    panel = open_and_run_all(lab, background_notebook(workdir / "background.ipynb"))
    assert not lab.error_outputs(panel)
    turn = lab.code_cell_outputs(panel, 2)
    lab.watch("background turn cell", turn)
    expect(turn).to_contain_text("in the background as job 1")
    expect(turn.locator(".nemo-turn .nemo-footer")).to_contain_text("credits", timeout=30_000)
    expect(turn.locator(".nemo-turn")).to_contain_text("futuristic city at night")
    expect(lab.code_cell_outputs(panel, 3)).to_have_text("meanwhile 45")
    export = lab.code_cell_outputs(panel, 5)
    lab.watch("background export cell", export)
    expect(export.locator("video")).to_have_count(1, timeout=60_000)
    expect(export).to_contain_text("Saved nemo-main-1.mp4")
    expect(lab.code_cell_outputs(panel, 6)).to_have_text("still free")
    jobs = lab.code_cell_outputs(panel, 7)
    lab.watch("jobs table", jobs)
    expect(jobs.locator("table")).to_contain_text("completed")
    assert "turn" in jobs.locator("table").inner_text() and "export" in jobs.inner_text()
    assert_no_console_errors(lab)


REPLAY_TUTORIAL = "08-record-and-replay.ipynb"
REPLAY_CASSETTE = "cassettes/urban-dreams.json"
REPLAY_FOOTER = "NemoVideo · local emulator · replayed · 27 credits when recorded"
STDERR_MIME = "application/vnd.jupyter.stderr"  # errors and tracebacks render as this


def _code_cell_index(sources: list[str], starts_with: str) -> int:
    """The index of the first code cell whose source starts with ``starts_with``."""
    for index, source in enumerate(sources):
        if source.lstrip().startswith(starts_with):
            return index
    raise AssertionError(f"no code cell starts with {starts_with!r} in {sources}")


def _save_replay_shot(locator: Any, name: str, theme: str) -> Path:
    """A screenshot of an element of the replayed tutorial, kept for people to look at."""
    folder = artifacts_dir() / "replay" / _safe(theme)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.png"
    locator.screenshot(path=str(target))
    return target


@pytest.mark.parametrize("theme", [LIGHT_THEME, DARK_THEME], ids=["light", "dark"])
def test_replay_tutorial_runs_offline_plays_the_recorded_video_and_names_a_miss(
    lab: LabPage, workdir: Path, theme: str, request: pytest.FixtureRequest
) -> None:
    """Tutorial 08 replays its cassette with no server: the recorded replies (status lines and
    footer readable in either theme), tracks and MP4 (linked, playing, the recorded bytes), and
    its last cell, tagged raises-exception, fails with one short CassetteMissError, not a
    traceback."""
    import hashlib
    import shutil

    set_theme(lab.server, theme)
    request.addfinalizer(lambda: set_theme(lab.server, LIGHT_THEME))

    notebook = copy_tutorial(REPLAY_TUTORIAL, workdir)
    shutil.copytree(NOTEBOOKS / "cassettes", workdir / "cassettes")  # copy_tutorial leaves it
    sources = code_sources(notebook)
    connect = _code_cell_index(sources, "%load_ext nemo_notebook")
    generate = _code_cell_index(sources, "%%nemo\ngenerate")
    tracks = _code_cell_index(sources, "%nemo tracks")
    export = _code_cell_index(sources, "%nemo export")
    same_bytes = _code_cell_index(sources, "import hashlib")
    miss = _code_cell_index(sources, "%%nemo\nmake it vertical")
    # Run All goes past a failing cell only when it is tagged raises-exception (JupyterLab then
    # sends stop_on_error=false); the miss is the last code cell, so every cell runs anyway.
    assert miss == len(sources) - 1, "the failing cell is expected last"

    panel = open_and_run_all(lab, notebook)

    connected = lab.code_cell_outputs(panel, connect)
    expect(connected).to_contain_text(f"Replaying {REPLAY_CASSETTE}")
    assert "Started the local" not in connected.inner_text(), "a replay started an emulator"

    turn = lab.watch("generate cell", lab.code_cell_outputs(panel, generate))
    reply = turn.locator(".nemo-turn")
    expect(reply.locator(".nemo-words").first).to_contain_text(
        "Here is your image of a futuristic city at night"
    )
    expect(reply).to_contain_text("The timeline now has 3 tracks.")
    statuses = [text.strip() for text in reply.locator(".nemo-status").all_inner_texts()]
    assert "· generating image…" in statuses and "· adding title…" in statuses, statuses
    expect(reply.locator(".nemo-footer")).to_have_text(REPLAY_FOOTER)
    for what in (".nemo-footer", ".nemo-status"):
        ratio = reply.locator(what).first.evaluate(CONTRAST_JS)
        assert ratio >= 4.5, f"{what} has a contrast of {ratio:.2f} in {theme}"
    expect(turn.locator("img").first).to_be_visible()

    table = lab.watch("tracks table", lab.code_cell_outputs(panel, tracks).locator("table"))
    expect(table).to_contain_text("Urban Dreams")

    exported = lab.watch("export cell", lab.code_cell_outputs(panel, export))
    expect(exported).to_contain_text("Saved urban-dreams.mp4")
    video = exported.locator("video")
    expect(video).to_have_count(1)
    assert _video_file_name(video.text_content() or "") == "urban-dreams.mp4"
    mp4 = workdir / "urban-dreams.mp4"
    assert mp4.is_file(), "the export did not save urban-dreams.mp4 next to the notebook"
    src = video.locator("source").get_attribute("src") or ""
    assert src and not src.startswith("data:"), f"the video is embedded, not linked: {src[:60]}"
    assert_video_plays(lab, video, probe_duration_s(mp4))
    digest = hashlib.sha256(mp4.read_bytes()).hexdigest()
    assert (workdir / f"{REPLAY_CASSETTE}.media" / f"{digest}.mp4").is_file()
    expect(lab.code_cell_outputs(panel, same_bytes)).to_contain_text(
        "byte for byte the recorded video: True"
    )

    failed = lab.watch("cassette miss cell", lab.code_cell_outputs(panel, miss))
    errors = failed.locator(f'.jp-OutputArea-output[data-mime-type="{STDERR_MIME}"]')
    expect(errors).to_have_count(1)
    error = errors.inner_text().strip()
    assert "Traceback (most recent call last)" not in error, error
    assert error.startswith("CassetteMissError"), error
    assert f"The cassette {REPLAY_CASSETTE} holds no answer" in error, error
    assert '"make it vertical 9:16"' in error and "--record" in error, error
    assert len(error.splitlines()) <= 2, f"the miss is not one short error:\n{error}"
    # Every other cell ran without an error output.
    assert lab.error_outputs(panel) == [errors.inner_text()], lab.error_outputs(panel)

    shots = {"generate-cell": turn, "export-cell": exported, "miss-cell": failed}
    for name, locator in shots.items():
        _save_replay_shot(locator, name, theme)
    assert_no_console_errors(lab)
