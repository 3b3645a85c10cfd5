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
    REPO_ROOT,
    ConsoleLog,
    LabPage,
    LabServer,
    PanelParts,
    artifacts_dir,
    h264_support,
    launch_browser,
    require_chromium,
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


def open_and_run_all(lab: LabPage, notebook: Path, timeout_s: float = RUN_ALL_TIMEOUT_S) -> Any:
    """Open the notebook, Run All, wait for every cell; returns the notebook panel locator."""
    relative = notebook.relative_to(lab.server.root_dir).as_posix()
    workspace = f"{_safe(notebook.parent.name)}"
    panel = lab.open_notebook(urllib.parse.quote(relative), workspace)
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


def assert_no_console_errors(lab: LabPage) -> None:
    unexpected = lab.console.unexpected(ALLOWED_CONSOLE_ERRORS)
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

    replies = {index: lab.stdout_text(panel, index) for index in chats}
    reply_lines = [
        line for text in replies.values() for line in text.splitlines() if _is_reply_line(line)
    ]
    assert reply_lines, f"no reply text under the %%nemo cells: {replies}"
    growth = lab.stdout_growth()
    assert any(len(growth.get(index, [])) >= 2 for index in chats), (
        f"no %%nemo reply arrived in pieces (stdout lengths seen per cell: {growth})"
    )

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
    """Agent text, not a status line ("· adding music…") or a connection notice."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(("·", "Started the local", "Connected to"))


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


PANEL_PROMPT = "generate a realistic image of a mountain lake at sunrise"


def test_prompt_panel_sends_streams_and_exports(lab: LabPage, workdir: Path) -> None:
    notebook = copy_tutorial("04-prompt-panel.ipynb", workdir)
    panel = open_and_run_all(lab, notebook)

    parts = PanelParts.find(panel)
    lab.watch("prompt panel", parts.root)
    for name in ("prompt", "send", "stop", "export", "status"):
        expect(getattr(parts, name), f"the panel's {name}").to_be_visible(timeout=30_000)
    expect(parts.status, "the panel's status line").to_have_text(re.compile(r"\S"))
    expect(parts.send).to_be_enabled()

    parts.reply.evaluate(_WATCH_TEXT_GROWTH_JS)
    parts.prompt.fill(PANEL_PROMPT)
    parts.send.click()
    expect(parts.prompt, "the prompt box after Send").to_have_value("")
    _wait_for_text(parts.status, lambda text: "Done." in text, 60)
    reply_text = parts.reply.inner_text()
    assert _panel_reply_done(reply_text), f"no agent text after the prompt: {reply_text!r}"
    assert "mountain lake" in reply_text.lower(), reply_text
    lengths = parts.reply.evaluate("(node) => node.__nemoLengths")
    assert len(lengths) >= 4, f"the reply did not stream into the panel (lengths seen: {lengths})"

    table = lab.watch("panel tracks", parts.tracks.locator("table"))
    table.wait_for(state="visible", timeout=30_000)
    headers = [text.strip() for text in table.locator("th").all_inner_texts()]
    assert {"track", "type", "label", "start_s", "end_s"} <= set(headers), headers

    # The tutorial may have exported already: tell this export's file, status and player apart.
    before = set(workdir.glob("*.mp4"))
    old_src = parts.video.get_attribute("src") if parts.video.count() else None
    parts.export.click()
    wait_until(
        lambda: bool(new_mp4s(workdir, before)), 120, "the exported MP4 next to the notebook"
    )
    exported = new_mp4s(workdir, before)
    assert len(exported) == 1, f"expected one new MP4 next to the notebook, found {exported}"
    _wait_for_text(parts.status, lambda text: f"Saved {exported[0].name}" in text, 60)
    video = lab.watch("panel video", parts.video)
    expect(video).to_be_visible()
    assert video.get_attribute("src") != old_src, "the panel still shows the previous video"
    assert_video_plays(lab, video, probe_duration_s(exported[0]))
    assert_no_console_errors(lab)


# Records the successive text lengths of one element (the panel's reply area).
_WATCH_TEXT_GROWTH_JS = """
(node) => {
  node.__nemoLengths = [node.innerText.length];
  const lengths = node.__nemoLengths;
  const record = () => {
    const length = node.innerText.length;
    if (lengths[lengths.length - 1] !== length) lengths.push(length);
  };
  const options = {subtree: true, childList: true, characterData: true};
  new MutationObserver(record).observe(node, options);
}
"""


def _panel_reply_done(text: str) -> bool:
    """The transcript shows the prompt and, after it, agent text (not only status lines)."""
    _, marker, after = text.partition(f"› {PANEL_PROMPT}")
    return bool(marker) and any(_is_reply_line(line) for line in after.splitlines())


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
    import nbformat

    code = nbformat.v4.new_code_cell
    document = nbformat.v4.new_notebook()
    document.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    document.cells = [
        code("%load_ext nemo_notebook\n%nemo connect --local"),
        code("%%nemo\ngenerate a realistic image of a quiet harbor at dawn"),
        code(f"%%nemo\nadd the title '{IMG_FROM_TITLE}'"),
        code(f"%%nemo\nadd captions '{SCRIPT_FROM_CAPTIONS}'"),
        code("%nemo tracks"),
        code(
            "from types import SimpleNamespace\n"
            "from IPython.display import display\n"
            "from nemo_notebook._display import ChangesView, LinkView, ReplyView\n"
            f"reply = SimpleNamespace(text={IMG_IN_REPLY!r}, changes=({SCRIPT_IN_CHANGES!r},))\n"
            "display(ReplyView(reply))\n"
            f"display(ChangesView(({IMG_IN_REPLY!r}, {SCRIPT_IN_CHANGES!r})))\n"
            f"display(LinkView({URL_BREAKING_OUT!r}, {IMG_IN_LINK!r}, "
            f"note={SCRIPT_IN_CHANGES!r}))"
        ),
        code("panel = %nemo panel\npanel"),
        code(f"panel.submit({f'add the title {IMG_FROM_PANEL!r}'!r})\nassert panel.wait(60)"),
        code(CONTROL_CELL),
    ]
    nbformat.write(document, path)
    return path


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
