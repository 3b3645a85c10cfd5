"""Shared helpers for the benchmarks: result rows, medians, subprocess servers, the table."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
TOKEN = "nmv_usr_" + "x" * 43  # a well-formed fake token for the bench's own servers


@dataclass(frozen=True)
class Row:
    """One line of the final table."""

    what: str
    ours: str
    peer: str
    figure: str
    target: str
    met: bool | None  # None: informational, no target

    @property
    def verdict(self) -> str:
        return "-" if self.met is None else ("yes" if self.met else "NO")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 50 values is the 48th smallest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return ordered[int(rank) - 1]


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.1f} ms"


def interleave(
    runs: dict[str, Callable[[], float]], repeats: int, warmup: bool = True
) -> dict[str, list[float]]:
    """Run each measurement ``repeats`` times, alternating (A B A B …, order rotated each round).

    Each callable returns its own measured duration in seconds.
    """
    names = list(runs)
    if warmup:
        for name in names:
            runs[name]()
    results: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            results[name].append(runs[name]())
    return results


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its waited-for children (e.g. ffmpeg)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def with_cpu(run: Callable[[], float], log: list[float]) -> Callable[[], float]:
    """Wrap a timed callable so the CPU seconds it used are appended to ``log``."""

    def measured() -> float:
        before = cpu_seconds()
        elapsed = run()
        log.append(cpu_seconds() - before)
        return elapsed

    return measured


def bench_env() -> dict[str, str]:
    """Environment for child interpreters: the repo importable, no user site noise."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NEMO_TOKEN", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # children import compiled modules, as users do
    return env


@contextmanager
def child_server(args: list[str], timeout_s: float = 30.0) -> Iterator[dict]:
    """Start a bench helper that prints one JSON line when ready; stop it (by pid) afterwards."""
    process = subprocess.Popen(
        [PYTHON, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=bench_env(),
        cwd=str(REPO),
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            err = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"helper {args[0]} did not start: {err[-2000:]}")
        info = json.loads(line)
        info["pid"] = process.pid
        yield info
    finally:
        stop_child(process)


def stop_child(process: subprocess.Popen) -> None:
    """Ask the helper to stop (close stdin), then terminate/kill this pid only."""
    if process.poll() is None:
        try:
            if process.stdin:
                process.stdin.close()
            process.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_stdin_close() -> None:
    """Helpers block here; the parent closes our stdin to stop us."""
    with suppress(OSError, ValueError):
        sys.stdin.read()


def format_table(rows: Sequence[Row]) -> str:
    header = ("what", "ours", "peer", "ratio / figure", "target", "met?")
    cells = [header] + [(r.what, r.ours, r.peer, r.figure, r.target, r.verdict) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line]
    for index, row in enumerate(cells):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if index == 0:
            out.append(line.replace("-", "="))
    out.append(line)
    return "\n".join(out)
