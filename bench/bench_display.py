"""``%%nemo`` display of a 20 000-chunk reply vs the client alone on the same stream.

Runs in a child interpreter with a real ``IPython.core.interactiveshell.InteractiveShell``
whose stdout and display publisher count the messages a kernel would send: every flushed
stdout write is one ``stream`` message (the magics flush each write), every publish one
``display_data``. Two measurements, alternating with the client alone:

- as fast as the server can send (overhead of the notebook layer in wall time, which decides,
  and in CPU time, which is steadier on a busy machine);
- paced over a few seconds like a (very fast) real model (messages per second of stream).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

from _common import PYTHON, REPO, TOKEN, Row, bench_env, child_server, median, seconds

RATE_TARGET = 10.0
OVERHEAD_TARGET = 0.05


MESSAGE_TIMES: list[float] = []  # when each counted message went out


def max_per_second(times: list[float]) -> int:
    """The most messages in any one-second window ``[t, t + 1)``."""
    ordered, best, first = sorted(times), 0, 0
    for last, t in enumerate(ordered):
        while t - ordered[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


class CountingStdout:
    """A stdout that counts the messages a kernel's OutStream would send (one per flush)."""

    encoding = "utf-8"

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pending = False
        self.messages = 0

    def write(self, text: str) -> int:
        if text:
            self.parts.append(text)
            self.pending = True
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.messages += 1
            MESSAGE_TIMES.append(time.perf_counter())
            self.pending = False

    def isatty(self) -> bool:
        return False


def _words(text: str) -> list[str]:
    """The words of shown text, without the status lines (``· adding music…``)."""
    kept = [line for line in text.splitlines() if not line.startswith("· ")]
    return " ".join(kept).split()


def _counting_publisher(shell: Any) -> Any:
    from IPython.core.displaypub import DisplayPublisher

    class CountingPublisher(DisplayPublisher):
        messages = 0

        def publish(self, data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> None:
            CountingPublisher.messages += 1
            MESSAGE_TIMES.append(time.perf_counter())

        def clear_output(self, wait: bool = False) -> None:
            CountingPublisher.messages += 1
            MESSAGE_TIMES.append(time.perf_counter())

    publisher = CountingPublisher(shell=shell)
    shell.display_pub = publisher
    return publisher


def child_main(url: str, chunks: int, repeats: int, pace_s: float, paced_repeats: int) -> dict:
    from IPython.core.interactiveshell import InteractiveShell

    from nemo_notebook._events import TextDelta

    shell = InteractiveShell.instance()
    publisher = _counting_publisher(shell)
    real_stdout = sys.stdout
    shell.run_line_magic("load_ext", "nemo_notebook")
    counter = CountingStdout()
    sys.stdout = counter
    try:
        shell.run_line_magic("nemo", f"connect {url}")
        workspace = shell.magics_manager.registry["NemoMagics"].workspace
        session = workspace.session("main")

        def cell(message: str) -> tuple[float, int, str]:
            counter.messages, counter.parts, publisher.messages = 0, [], 0
            MESSAGE_TIMES.clear()
            start = time.perf_counter()
            shell.run_cell_magic("nemo", "", message)
            elapsed = time.perf_counter() - start
            shown = "".join(counter.parts)
            assert _words(shown) == _words(shell.user_ns["_nemo"].text), "output lost text"
            return elapsed, counter.messages + publisher.messages, shell.user_ns["_nemo"].text

        def alone(message: str) -> tuple[float, str]:
            start = time.perf_counter()
            shown = []
            with session.stream(message) as turn:
                for event in turn:
                    if isinstance(event, TextDelta):
                        shown.append(event.text)
            assert turn.reply is not None and turn.reply.text == "".join(shown)
            return time.perf_counter() - start, turn.reply.text

        fast = f"tell me a long story events={chunks}"
        cell(fast), alone(fast)  # warm-up
        fast_cell, fast_alone, fast_msgs = [], [], []
        cpu_cell, cpu_alone = [], []
        for index in range(repeats):
            order = (cell, alone) if index % 2 == 0 else (alone, cell)
            for run in order:
                cpu_before = time.process_time()
                if run is cell:
                    elapsed, messages, cell_text = cell(fast)
                    cpu_cell.append(time.process_time() - cpu_before)
                    fast_cell.append(elapsed)
                    fast_msgs.append(messages)
                else:
                    elapsed, alone_text = alone(fast)
                    cpu_alone.append(time.process_time() - cpu_before)
                    fast_alone.append(elapsed)
        paced = f"tell me a long story events={chunks} pace={pace_s}"
        paced_runs = []
        for _ in range(paced_repeats):
            elapsed, messages, _text = cell(paced)
            paced_runs.append([elapsed, messages, max_per_second(MESSAGE_TIMES)])
    finally:
        sys.stdout = real_stdout
        workspace.close()
    return {
        "fast_cell": fast_cell,
        "fast_alone": fast_alone,
        "fast_messages": fast_msgs,
        "cpu_cell": cpu_cell,
        "cpu_alone": cpu_alone,
        "paced": paced_runs,
        "same_text": cell_text == alone_text,
    }


def _run_child(url: str, chunks: int, repeats: int, pace_s: float, paced_repeats: int) -> dict:
    import subprocess

    env = bench_env()
    args = [str(chunks), str(repeats), str(pace_s), str(paced_repeats)]
    with tempfile.TemporaryDirectory(prefix="nemo-bench-") as config_home:
        env.update(NEMO_TOKEN=TOKEN, XDG_CONFIG_HOME=config_home, NEMO_CLIENT_ID="bench")
        result = subprocess.run(
            [PYTHON, __file__, "--child", url, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(REPO),
            timeout=300,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"display child failed: {result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def run(quick: bool = False) -> list[Row]:
    from sse_server import count_text_chunks

    events = 2_000 if quick else 20_000
    repeats, pace_s, paced_repeats = (5, 2.0, 1) if quick else (9, 4.0, 2)
    with child_server(["bench/sse_server.py"]) as server:
        data = _run_child(server["url"], events, repeats, pace_s, paced_repeats)
    chunks = count_text_chunks(events)
    cell_s, alone_s = median(data["fast_cell"]), median(data["fast_alone"])
    overhead = cell_s / alone_s - 1
    cpu_overhead = median(data["cpu_cell"]) / median(data["cpu_alone"]) - 1
    paced_rates = [messages / elapsed for elapsed, messages, _ in data["paced"]]
    busiest = max(window for _, _, window in data["paced"])
    rate = median(paced_rates)
    fast_msgs = int(median(data["fast_messages"]))
    paced_s = median([elapsed for elapsed, _, _ in data["paced"]])
    paced_msgs = int(median([messages for _, messages, _ in data["paced"]]))
    same = "" if data["same_text"] else " (TEXT DIFFERS)"
    return [
        Row(
            f"%%nemo display, {chunks:,}-chunk reply paced over {pace_s:g} s",
            f"{paced_msgs} msgs in {seconds(paced_s)}",
            "-",
            f"{rate:.1f} msgs/s of stream (busiest 1 s window: {busiest})",
            f"<= {RATE_TARGET:g} msgs/s",
            rate <= RATE_TARGET and not same,
        ),
        Row(
            f"%%nemo display, {chunks:,}-chunk reply, unpaced",
            f"{seconds(cell_s)} ({fast_msgs} msgs)",
            f"{seconds(alone_s)} client alone",
            f"{overhead * 100:+.1f}% overhead (CPU time {cpu_overhead * 100:+.1f}%){same}",
            f"<= {OVERHEAD_TARGET * 100:g}%",
            overhead <= OVERHEAD_TARGET and not same,
        ),
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, chunks, repeats, pace, paced_repeats = sys.argv[2:7]
        sys.path.insert(0, str(REPO))
        os.environ.setdefault("NEMO_TOKEN", TOKEN)
        out = child_main(url, int(chunks), int(repeats), float(pace), int(paced_repeats))
        print(json.dumps(out))
    else:
        from _common import format_table

        print(format_table(run("--quick" in sys.argv)))
