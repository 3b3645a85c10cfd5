"""Helpers for the browser tests: an isolated JupyterLab server, Debian's Chromium driven by
Playwright, and a small notebook driver (open, Run All, wait, read outputs, save artifacts).

Nothing here touches the person's real Jupyter or browser settings: the server gets its own
config, data, settings, runtime and home directories, a random token and a free loopback port,
and the browser gets a fresh profile. Only processes started here are stopped, by their pid.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("NEMO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
H264_TYPE = 'video/mp4; codecs="avc1.42E01E"'
SERVER_START_TIMEOUT_S = 90.0

# JupyterLab user settings: no news prompt, no update check, every cell kept in the DOM
# (the default windowing mode detaches cells scrolled out of view, hiding their outputs).
LAB_USER_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
# News and update checks would reach the network; None turns them off on the server side.
LAB_SERVER_CONFIG = """\
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.ServerApp.open_browser = False
"""


def artifacts_dir() -> Path:
    """Where failure screenshots go: ``$NEMO_TEST_ARTIFACTS/browser`` (default test-artifacts)."""
    base = os.environ.get("NEMO_TEST_ARTIFACTS") or str(REPO_ROOT / "test-artifacts")
    return Path(base) / "browser"


def require_chromium() -> Path:
    """The Chromium binary; a clear failure (never a skip) when it is not installed."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        raise RuntimeError(
            f"Chromium is not installed at {CHROMIUM}; the browser tests need Debian's chromium. "
            "Run `bash .ci/setup` (it runs `apt-get install chromium`)."
        )
    return CHROMIUM


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# The JupyterLab server


@dataclass
class LabServer:
    """A running ``jupyter lab`` started by :func:`start_lab`."""

    process: subprocess.Popen[bytes]
    base_url: str
    token: str
    root_dir: Path
    log_path: Path
    settings_dir: Path

    def url(self, path: str) -> str:
        """An absolute URL on the server, with the token as a query parameter."""
        separator = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{separator}token={self.token}"

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API; the decoded JSON (None for an empty body)."""
        request = urllib.request.Request(
            self.base_url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def shutdown_kernels(self) -> None:
        """Shut every kernel down through the API (so no kernel outlives the server)."""
        try:
            for kernel in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        """Stop the kernels, then the server by its pid (SIGTERM, then SIGKILL if it hangs)."""
        if self.process.poll() is None:
            self.shutdown_kernels()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def isolated_jupyter_env(home: Path) -> dict[str, str]:
    """Environment for the server and its kernels, with every Jupyter/IPython dir under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NEMO_"))}
    dirs = {
        "HOME": home,
        "JUPYTER_CONFIG_DIR": home / "jupyter-config",
        "JUPYTER_DATA_DIR": home / "jupyter-data",
        "JUPYTER_RUNTIME_DIR": home / "jupyter-runtime",
        "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "lab-workspaces",
        "IPYTHONDIR": home / "ipython",
        "XDG_CONFIG_HOME": home / "xdg-config",
        "XDG_CACHE_HOME": home / "xdg-cache",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env.update({name: str(path) for name, path in dirs.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_lab_settings(env: dict[str, str]) -> None:
    """Server config, user settings and a kernelspec pointing at this test run's Python."""
    config_dir = Path(env["JUPYTER_CONFIG_DIR"])
    (config_dir / "jupyter_lab_config.py").write_text(LAB_SERVER_CONFIG)
    settings_dir = Path(env["JUPYTERLAB_SETTINGS_DIR"])
    for relative, values in LAB_USER_SETTINGS.items():
        target = settings_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    kernel_dir = Path(env["JUPYTER_DATA_DIR"]) / "kernels" / "python3"
    kernel_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec))


def start_lab(root_dir: Path, home: Path) -> LabServer:
    """Start ``jupyter lab`` on a free loopback port and wait until it answers."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            "jupyterlab is not installed in this venv; run `bash .ci/setup`."
        ) from exc
    env = isolated_jupyter_env(home)
    write_lab_settings(env)
    token = secrets.token_hex(24)
    port = free_port()
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        f"--LabApp.workspaces_dir={env['JUPYTERLAB_WORKSPACES_DIR']}",
    ]  # fmt: skip
    log_path = home / "jupyter-lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=root_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in pytest reaches pytest, which then stops it
        )
    settings_dir = Path(env["JUPYTERLAB_SETTINGS_DIR"])
    server = LabServer(process, f"http://127.0.0.1:{port}", token, root_dir, log_path, settings_dir)
    try:
        wait_until_answering(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_answering(server: LabServer, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
    """Poll ``/api/status`` until it answers 200; fail early with the log if the server died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            server.api("GET", "/api/status")
            return
        except (OSError, ValueError):
            time.sleep(0.25)
    raise RuntimeError(f"jupyter lab did not answer in {timeout_s:.0f}s:\n{server.log_tail()}")


# ---------------------------------------------------------------------------------------------
# The browser


@dataclass
class ConsoleLog:
    """Console errors and uncaught page errors seen by a page."""

    errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message: Any) -> None:
        line = f"console.{message.type}: {message.text}"
        location = message.location or {}
        if location.get("url"):
            line += f"  ({location['url']}:{location.get('lineNumber')})"
        self.messages.append(line)
        if message.type == "error":
            self.errors.append(line)

    def _on_page_error(self, error: Any) -> None:
        line = f"pageerror: {error}"
        self.messages.append(line)
        self.errors.append(line)

    def unexpected(self, allowed: tuple[re.Pattern[str], ...]) -> list[str]:
        """The errors no pattern of ``allowed`` matches."""
        return [line for line in self.errors if not any(p.search(line) for p in allowed)]


# ---------------------------------------------------------------------------------------------
# Driving JupyterLab

_STDOUT = "application/vnd.jupyter.stdout"
_STDERR = "application/vnd.jupyter.stderr"

# Records, per code cell, the lengths of its stdout text each time the DOM changed, so a test
# can tell text that streamed in pieces from text that arrived in one go.
_WATCH_STDOUT_JS = """
(notebook) => {
  window.__nemoStdout = {};
  const snapshot = () => {
    notebook.querySelectorAll('.jp-CodeCell').forEach((cell, index) => {
      const selector = '.jp-OutputArea-output[data-mime-type="STDOUT"], .nemo-turn';
      const outputs = cell.querySelectorAll(selector);
      const length = [...outputs].map((node) => node.textContent).join('').length;
      const seen = (window.__nemoStdout[index] ||= []);
      if (length && seen[seen.length - 1] !== length) seen.push(length);
    });
  };
  const options = {subtree: true, childList: true, characterData: true};
  new MutationObserver(snapshot).observe(notebook, options);
}
""".replace("STDOUT", _STDOUT)

_PROMPTS_JS = """
(notebook) => [...notebook.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
  .map((node) => node.textContent.trim())
"""

# Waits for metadata, then plays muted and reports how far playback got. Errors of <source>
# children fire on the <source>, not on the <video>, so both are listened to.
_VIDEO_FACTS_JS = """
async (video) => {
  const within = (ms, what, promise) => Promise.race([promise, new Promise((_, reject) =>
    setTimeout(() => reject(new Error(what + ' within ' + ms + ' ms')), ms))]);
  video.scrollIntoView();
  if (video.readyState < 1) {
    await within(20000, 'no loadedmetadata', new Promise((resolve, reject) => {
      const fail = () => reject(new Error('media error ' + (video.error ? video.error.code : '?')
        + ', networkState ' + video.networkState));
      video.addEventListener('loadedmetadata', resolve, {once: true});
      video.addEventListener('error', fail, {once: true});
      video.querySelectorAll('source')
        .forEach((source) => source.addEventListener('error', fail, {once: true}));
      if (video.readyState >= 1) resolve();
    }));
  }
  const facts = {duration: video.duration, width: video.videoWidth, height: video.videoHeight};
  video.muted = true;
  await within(15000, 'play() did not resolve', video.play());
  facts.start = video.currentTime;
  const started = performance.now();
  while (video.currentTime < facts.start + 0.3 && performance.now() - started < 8000) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  facts.end = video.currentTime;
  facts.paused = video.paused;
  video.pause();
  return facts;
}
"""

_FETCH_STATUS_JS = """
async (video) => {
  const src = video.currentSrc || video.src || (video.querySelector('source') || {}).src;
  const response = await fetch(src);
  return {status: response.status, bytes: (await response.arrayBuffer()).byteLength};
}
"""


def h264_support(page: Any) -> str:
    """``canPlayType`` for baseline H.264 in MP4: "probably", "maybe" or "" (cannot play)."""
    return str(page.evaluate(f"() => document.createElement('video').canPlayType('{H264_TYPE}')"))


@dataclass
class LabPage:
    """A Chromium page showing JupyterLab, with the helpers the browser tests share."""

    page: Any
    console: ConsoleLog
    server: LabServer
    watched: dict[str, Any] = field(default_factory=dict)

    def watch(self, name: str, locator: Any) -> Any:
        """Remember an element to screenshot if the test fails; returns the locator."""
        self.watched[name] = locator
        return locator

    # -- notebook lifecycle ----------------------------------------------------------------

    def open_notebook(self, relative_path: str, workspace: str, timeout_s: float = 90) -> Any:
        """Open a notebook in its own JupyterLab workspace and wait for an idle kernel."""
        self.page.goto(self.server.url(f"/lab/workspaces/{workspace}/tree/{relative_path}"))
        name = Path(relative_path).name
        panel = self.page.locator(".jp-NotebookPanel:has(.jp-Notebook):visible").first
        panel.wait_for(state="visible", timeout=timeout_s * 1000)
        self.watch("notebook", panel)
        tab = self.page.locator(".lm-TabBar-tab.jp-mod-current .lm-TabBar-tabLabel")
        wait_until(lambda: name in tab.all_inner_texts(), timeout_s, f"the tab for {name} to open")
        self.wait_kernel_idle(panel, timeout_s)
        return panel

    def wait_kernel_idle(self, panel: Any, timeout_s: float = 90) -> None:
        """Wait for the kernel to be connected and idle (status bar and execution indicator)."""
        status = self.page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$"))
        status.first.wait_for(state="visible", timeout=timeout_s * 1000)
        indicator = panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
        indicator.wait_for(state="attached", timeout=timeout_s * 1000)

    def watch_stdout(self, panel: Any) -> None:
        """Start recording how each code cell's stdout and formatted reply grow (see
        :meth:`stdout_growth`)."""
        panel.locator(".jp-Notebook").evaluate(_WATCH_STDOUT_JS)

    def stdout_growth(self) -> dict[int, list[int]]:
        """Per code cell index, the successive lengths its stdout text had in the DOM."""
        raw = self.page.evaluate("() => window.__nemoStdout || {}")
        return {int(index): list(lengths) for index, lengths in raw.items()}

    def run_all(self, panel: Any) -> None:
        """Run > Run All Cells, through the menu bar as a person would."""
        panel.click(position={"x": 5, "y": 5})  # the notebook is the current widget
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    def wait_all_executed(self, panel: Any, timeout_s: float) -> list[str]:
        """Wait until every code cell has an execution count and the kernel is idle.

        Fails early, with the error outputs, when the kernel went idle with cells left unrun
        (a cell raised and Run All stopped).
        """
        notebook = panel.locator(".jp-Notebook")
        indicator = panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
        deadline = time.monotonic() + timeout_s
        stalled_since: float | None = None
        prompts: list[str] = []
        while time.monotonic() < deadline:
            prompts = list(notebook.evaluate(_PROMPTS_JS))
            idle = indicator.count() == 1
            if idle and prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
                return prompts
            if idle and not any("*" in p for p in prompts):
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 3:
                    raise AssertionError(
                        f"Run All stopped with cells left unrun; prompts {prompts}.\n"
                        f"Error outputs: {self.error_outputs(panel) or 'none'}"
                    )
            else:
                stalled_since = None
            time.sleep(0.25)
        raise AssertionError(
            f"Run All did not finish in {timeout_s:.0f}s; prompts {prompts}.\n"
            f"Error outputs: {self.error_outputs(panel) or 'none'}"
        )

    def error_outputs(self, panel: Any) -> list[str]:
        """Texts of stderr and traceback outputs in the notebook."""
        nodes = panel.locator(f'.jp-OutputArea-output[data-mime-type="{_STDERR}"]')
        return [text[-2000:] for text in nodes.all_inner_texts()]

    # -- outputs ---------------------------------------------------------------------------

    def code_cell_outputs(self, panel: Any, index: int) -> Any:
        """The output area of the ``index``-th code cell."""
        return panel.locator(".jp-CodeCell").nth(index).locator(".jp-OutputArea")

    def turn_text(self, panel: Any, index: int) -> str:
        """The text of the formatted ``%%nemo`` reply under the ``index``-th code cell."""
        outputs = self.code_cell_outputs(panel, index)
        return "\n".join(outputs.locator(".nemo-turn").all_inner_texts())

    def stdout_text(self, panel: Any, index: int) -> str:
        """The stdout text shown under the ``index``-th code cell."""
        outputs = self.code_cell_outputs(panel, index)
        return "".join(outputs.locator(f'[data-mime-type="{_STDOUT}"]').all_inner_texts())

    def video_facts(self, video: Any) -> dict[str, Any]:
        """Duration (after ``loadedmetadata``), and playback start/end times of a muted play."""
        return dict(video.evaluate(_VIDEO_FACTS_JS))

    def fetch_status(self, video: Any) -> dict[str, Any]:
        """HTTP status and size of the video's source, fetched from the page."""
        return dict(video.evaluate(_FETCH_STATUS_JS))

    # -- failure evidence ------------------------------------------------------------------

    def save_artifacts(self, directory: Path) -> list[Path]:
        """Screenshots of the watched elements, and the console log, into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        saved: list[Path] = []
        for name, locator in self.watched.items():
            target = directory / f"{_safe_name(name)}.png"
            try:
                locator.first.screenshot(path=str(target), timeout=10_000)
                saved.append(target)
            except Exception as exc:  # evidence is best effort; the test already failed
                (directory / f"{_safe_name(name)}.txt").write_text(f"no screenshot: {exc}\n")
        saved += self._save_cell_screenshots(directory)
        log = directory / "console.txt"
        log.write_text("\n".join(self.console.messages) + "\n")
        saved.append(log)
        (directory / "jupyter-lab.log").write_text(self.server.log_tail(200) + "\n")
        return saved

    def _save_cell_screenshots(self, directory: Path, limit: int = 40) -> list[Path]:
        # The notebook panel only shows what fits on screen; one shot per cell covers it all.
        notebook = self.watched.get("notebook")
        if notebook is None:
            return []
        saved = []
        cells = notebook.locator(".jp-Cell")
        for index in range(min(cells.count(), limit)):
            target = directory / f"cell-{index:02d}.png"
            try:
                cells.nth(index).screenshot(path=str(target), timeout=5_000)
                saved.append(target)
            except Exception:
                continue
        return saved


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "element"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.2)


def launch_browser(playwright: Any, profile_dir: Path) -> Any:
    """Debian's Chromium with a fresh profile; a persistent context owns the profile dir."""
    return playwright.chromium.launch_persistent_context(
        str(profile_dir),
        executable_path=str(require_chromium()),
        args=CHROMIUM_ARGS,
        headless=True,
        viewport={"width": 1280, "height": 1000},
    )


# ---------------------------------------------------------------------------------------------
# The chat panel (nemo_notebook.Panel, an anywidget view) and the frontends it is checked in

#: Theme names as JupyterLab and Notebook 7 list them (``@jupyterlab/apputils-extension:themes``).
LIGHT_THEME = "JupyterLab Light"
DARK_THEME = "JupyterLab Dark"
THEMES_SETTINGS = "@jupyterlab/apputils-extension/themes.jupyterlab-settings"


def set_theme(server: LabServer, theme: str) -> None:
    """The theme pages opened from now on start with (JupyterLab and Notebook 7 read the
    user settings when a page loads)."""
    target = server.settings_dir / THEMES_SETTINGS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"theme": theme}))


def open_in_notebook7(lab: LabPage, relative_path: str, timeout_s: float = 90) -> Any:
    """Open a notebook in Notebook 7 (served by the same server) and wait for an idle kernel."""
    lab.page.goto(lab.server.url(f"/notebooks/{relative_path}"))
    panel = lab.page.locator(".jp-NotebookPanel:has(.jp-Notebook):visible").first
    panel.wait_for(state="visible", timeout=timeout_s * 1000)
    lab.watch("notebook", panel)
    indicator = panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
    indicator.wait_for(state="attached", timeout=timeout_s * 1000)
    return panel


@dataclass
class PanelParts:
    """Locators for the parts of a rendered chat panel, by their ``nemo-*`` classes."""

    root: Any
    prompt: Any
    send: Any
    stop: Any
    export: Any
    status: Any
    credits: Any
    log: Any
    options: Any
    tracks: Any
    video: Any
    lightbox: Any

    @property
    def reply(self) -> Any:
        """The conversation (every bubble)."""
        return self.log

    def agent_bubbles(self) -> Any:
        return self.log.locator(".nemo-bubble-nemo")

    def tone(self) -> str:
        """The status line's tone: idle, working, done, question, stopped or error."""
        return str(self.root.get_attribute("data-tone") or "")

    @classmethod
    def find(cls, scope: Any, timeout_s: float = 30) -> PanelParts:
        """The first panel inside ``scope`` (a page or a locator), once it has rendered."""
        root = scope.locator(".nemo-panel").first
        root.locator("button.nemo-export").wait_for(timeout=timeout_s * 1000)
        return cls(
            root=root,
            prompt=root.locator("textarea.nemo-prompt"),
            send=root.locator("button.nemo-send"),
            stop=root.locator("button.nemo-stop"),
            export=root.locator("button.nemo-export"),
            status=root.locator(".nemo-status"),
            credits=root.locator(".nemo-credits"),
            log=root.locator(".nemo-log"),
            options=root.locator("button.nemo-option"),
            tracks=root.locator(".nemo-tracks"),
            video=root.locator(".nemo-video video"),
            lightbox=root.locator(".nemo-lightbox"),
        )


# The WCAG contrast ratio of an element's text with what is behind it: semi-transparent colours
# (rgba, or the color(srgb …) that color-mix() computes to) are composited over the ancestors'
# backgrounds down to the first opaque one (or the page's).
CONTRAST_JS = r"""
(node) => {
  const parse = (text) => {
    let m = text.match(/rgba?\(([^)]+)\)/);
    if (m) {
      const v = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
      return [v[0] / 255, v[1] / 255, v[2] / 255, v.length > 3 ? v[3] : 1];
    }
    m = text.match(/color\(srgb ([^)]+)\)/);
    if (m) {
      const v = m[1].split(/[ /]+/).filter(Boolean).map(Number);
      return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1];
    }
    return [0, 0, 0, 0];
  };
  const over = (top, bottom) => {
    const a = top[3] + bottom[3] * (1 - top[3]);
    if (!a) return [0, 0, 0, 0];
    const mix = (i) => (top[i] * top[3] + bottom[i] * bottom[3] * (1 - top[3])) / a;
    return [mix(0), mix(1), mix(2), a];
  };
  const layers = [];
  for (let el = node; el; el = el.parentElement) {
    const bg = parse(getComputedStyle(el).backgroundColor);
    if (bg[3] > 0) layers.push(bg);
    if (bg[3] >= 1) break;
  }
  let back = [1, 1, 1, 1];
  for (const layer of layers.reverse()) back = over(layer, back);
  const fore = over(parse(getComputedStyle(node).color), back);
  const lum = (c) => {
    const f = (x) => (x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const [hi, lo] = [lum(fore), lum(back)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
"""
