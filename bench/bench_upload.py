"""Upload of a 200 MB file to the emulator: ``session.upload`` vs ``curl -F`` to the same endpoint.

The emulator runs in its own process. Each client upload runs in a fresh child interpreter that
records its current RSS just before the upload and its peak RSS (``VmHWM``) after it, so the
growth is the client's own. curl sends the same file with the same auth and attribution headers
(read from a header file, so no token is on a command line) and reports its own
``time_total``. Alternating runs, medians; the stored uploads are deleted between runs to keep
the disk small.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PYTHON, REPO, Row, bench_env, child_server, interleave, median, seconds

THROUGHPUT_TARGET = 0.5
RSS_TARGET_MB = 30.0
MB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    """Random-ish bytes: one random 1 MB block repeated (no media magic at the start)."""
    block = random.Random(7).randbytes(MB)
    with path.open("wb") as handle:
        written = 0
        while written < size:
            piece = block[: min(MB, size - written)]
            handle.write(piece)
            written += len(piece)


def _status_kb(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak of this process image) from /proc, in kB.

    ``ru_maxrss`` is not used: Linux carries the parent's peak over ``fork``/``exec``.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def client_child(url: str, session_id: str, path: str) -> dict:
    """In a fresh interpreter: upload once, report seconds and peak RSS growth."""
    from nemo_notebook import NemoClient

    with (
        tempfile.TemporaryDirectory(prefix="nemo-bench-") as config_dir,
        NemoClient(api_url=url, config_dir=config_dir) as client,
    ):
        session = client.session(session_id)
        client.credits()  # connection and token machinery warm before the baseline
        before_kb = _status_kb("VmRSS")
        start = time.perf_counter()
        files = session.upload(path)
        elapsed = time.perf_counter() - start
        peak_kb = _status_kb("VmHWM")
    assert files and files[0].filename.endswith(".mp4"), files
    return {"seconds": elapsed, "rss_growth_mb": max(peak_kb - before_kb, 0) / 1024}


def _run_client(url: str, token: str, session_id: str, path: Path) -> dict:
    env = bench_env()
    env["NEMO_TOKEN"] = token
    result = subprocess.run(
        [PYTHON, __file__, "--client", url, session_id, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"upload child failed: {result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _header_file(token: str, folder: Path) -> Path:
    from nemo_notebook._config import attribution_headers

    headers = {"Authorization": f"Bearer {token}", **attribution_headers("jupyter")}
    path = folder / "headers.txt"
    path.write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
    path.chmod(0o600)
    return path


def _run_curl(url: str, headers: Path, path: Path) -> float:
    result = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-H", f"@{headers}",
         "-F", f"files=@{path};type=video/mp4", "-o", "/dev/null",
         "-w", "%{time_total} %{http_code}", url],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"curl failed: {result.stderr.strip()} {result.stdout.strip()}")
    total, code = result.stdout.split()
    assert code == "200", code
    return float(total)


def _clear_uploads(data_dir: Path) -> None:
    uploads = data_dir / "media" / "uploads"
    if uploads.is_dir():
        for user_dir in uploads.iterdir():
            shutil.rmtree(user_dir, ignore_errors=True)


def run(quick: bool = False) -> list[Row]:
    size = 20 * MB if quick else 200 * MB
    repeats = 2 if quick else 5
    if shutil.which("curl") is None:
        return [Row("upload", "-", "curl missing", "-", "-", None)]
    folder = Path(tempfile.mkdtemp(prefix="nemo-bench-upload-"))
    try:
        path = folder / "bench_upload.mp4"
        make_file(path, size)
        with child_server(["bench/emulator_server.py", "1", "0.01"]) as emu:
            user = emu["users"][0]
            data_dir = Path(emu["data_dir"])
            endpoint = f"{emu['url']}/api/upload-video/nemo_agent/me/{user['session_id']}"
            headers = _header_file(user["token"], folder)
            growth: list[float] = []

            def ours() -> float:
                data = _run_client(emu["url"], user["token"], user["session_id"], path)
                growth.append(data["rss_growth_mb"])
                _clear_uploads(data_dir)
                return float(data["seconds"])

            def curl() -> float:
                elapsed = _run_curl(endpoint, headers, path)
                _clear_uploads(data_dir)
                return elapsed

            times = interleave({"ours": ours, "curl": curl}, repeats, warmup=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ours_s, curl_s = median(times["ours"]), median(times["curl"])
    ours_mbps, curl_mbps = size / MB / ours_s, size / MB / curl_s
    ratio = ours_mbps / curl_mbps
    peak = max(growth)
    label = f"{size // MB} MB"
    return [
        Row(
            f"upload {label} to the emulator",
            f"{ours_mbps:.0f} MB/s ({seconds(ours_s)})",
            f"{curl_mbps:.0f} MB/s curl -F ({seconds(curl_s)})",
            f"{ratio:.2f}x curl's throughput",
            f">= {THROUGHPUT_TARGET}x",
            ratio >= THROUGHPUT_TARGET,
        ),
        Row(
            f"upload {label}: client peak RSS growth",
            f"{peak:.1f} MB (max of {len(growth)})",
            "-",
            f"{peak:.1f} MB",
            f"<= {RSS_TARGET_MB:g} MB",
            peak <= RSS_TARGET_MB,
        ),
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        sys.path.insert(0, str(REPO))
        os.environ.setdefault("NEMO_CLIENT_ID", "bench")
        print(json.dumps(client_child(*sys.argv[2:5])))
    else:
        from _common import format_table

        print(format_table(run("--quick" in sys.argv)))
