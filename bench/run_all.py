"""Run every benchmark and print one table: what, ours, peer, ratio/figure, target, met?

    .venv/bin/python bench/run_all.py              # full sizes (about 8 minutes on 2 cores)
    .venv/bin/python bench/run_all.py --quick      # small sizes, a smoke run (under a minute)
    .venv/bin/python bench/run_all.py --only stream,import

Each benchmark measures ours and its peer side by side in the same run (alternating
repetitions, medians). Servers are child processes on 127.0.0.1 and are stopped by pid.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import Row, format_table

BENCHMARKS = (
    "image",
    "dataframe",
    "import",
    "stream",
    "display",
    "upload",
    "concurrency",
    "jobs",
    "replay",
    "render",
)


def _run_one(name: str, quick: bool) -> list[Row]:
    try:
        module = importlib.import_module(f"bench_{name}")
        return list(module.run(quick=quick))
    except Exception as exc:  # one broken benchmark must not hide the others
        traceback.print_exc()
        message = f"ERROR {type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
        return [Row(name, message, "-", "-", "-", False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    rows: list[Row] = []
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    for name in names:
        t0 = time.perf_counter()
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        rows.extend(_run_one(name, args.quick))
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    mode = "quick" if args.quick else "full"
    print(format_table(rows))
    missed = sum(row.met is False for row in rows)
    elapsed = time.perf_counter() - started
    print(
        f"{mode} run, {len(rows)} rows, {missed} missed, {elapsed:.0f} s total; "
        f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} cores)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
