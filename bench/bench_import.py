"""``import nemo_notebook`` vs ``import httpx, httpx_sse``; ``%load_ext nemo_notebook``.

Every sample is a fresh interpreter (no warm module cache in the process; the OS file cache is
warm for both). The import is timed inside the child with ``perf_counter`` around the import
statement, so interpreter start-up is not part of either number; the whole child's wall time is
reported as well. ``%load_ext`` is timed inside a fresh ``InteractiveShell`` (IPython already
imported, as in a kernel). Alternating samples, medians.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from _common import PYTHON, REPO, Row, bench_env, interleave, median, seconds

TARGET_RATIO = 1.3
LOAD_EXT_TARGET_S = 0.300

TIMED_IMPORT = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
LOAD_EXT = (
    "from IPython.core.interactiveshell import InteractiveShell; import time; "
    "shell = InteractiveShell.instance(); t = time.perf_counter(); "
    "shell.run_line_magic('load_ext', 'nemo_notebook'); print(time.perf_counter() - t); "
    "assert 'nemo' in shell.magics_manager.magics['cell']"
)


def _child(code: str) -> tuple[float, float]:
    """(time printed by the child, wall time of the whole child)."""
    start = time.perf_counter()
    result = subprocess.run(
        [PYTHON, "-c", code],
        capture_output=True,
        text=True,
        env=bench_env(),
        cwd=str(REPO),
        timeout=60,
        check=True,
    )
    wall = time.perf_counter() - start
    return float(result.stdout.strip().splitlines()[-1]), wall


def run(quick: bool = False) -> list[Row]:
    repeats = 5 if quick else 15
    walls: dict[str, list[float]] = {"ours": [], "peer": [], "load_ext": []}

    def sample(name: str, code: str) -> Callable[[], float]:
        def measure() -> float:
            inner, wall = _child(code)
            walls[name].append(wall)
            return inner

        return measure

    times = interleave(
        {
            "ours": sample("ours", TIMED_IMPORT.format(stmt="import nemo_notebook")),
            "peer": sample("peer", TIMED_IMPORT.format(stmt="import httpx, httpx_sse")),
            "load_ext": sample("load_ext", LOAD_EXT),
        },
        repeats,
    )
    ours_s, peer_s = median(times["ours"]), median(times["peer"])
    ratio = ours_s / peer_s
    wall_ratio = median(walls["ours"]) / median(walls["peer"])
    load_ext_s = median(times["load_ext"])
    return [
        Row(
            "import nemo_notebook (fresh interpreter)",
            seconds(ours_s),
            f"{seconds(peer_s)} import httpx, httpx_sse",
            f"{ratio:.2f}x (whole process {wall_ratio:.2f}x)",
            f"<= {TARGET_RATIO}x",
            ratio <= TARGET_RATIO,
        ),
        Row(
            "%load_ext nemo_notebook (fresh InteractiveShell)",
            seconds(load_ext_s),
            "-",
            seconds(load_ext_s),
            f"<= {LOAD_EXT_TARGET_S * 1000:.0f} ms",
            load_ext_s <= LOAD_EXT_TARGET_S,
        ),
    ]


if __name__ == "__main__":
    import sys

    from _common import format_table

    print(format_table(run("--quick" in sys.argv)))
