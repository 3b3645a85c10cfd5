"""Long work through real kernels (``jupyter_client``): a background export outlives the kernel
that started it and a new kernel in the same folder delivers it; a batch cut off by a dead
kernel continues in a new one without sending any row twice; the budget refuses a turn
before anything is sent.

The emulator runs in this test process, as the cloud would run elsewhere: killing a kernel
does not stop it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kernel_support import Kernel, Ran

from nemo_notebook import Ledger

#: In the kernels: the client's recovery waits in seconds, not minutes.
FAST_RECOVERY = """
from nemo_notebook import Timing
from nemo_notebook._workflows import make_client
_nemo_magics = get_ipython().magics_manager.registry["NemoMagics"]
_fast = Timing(recovery_first_wait=0.5, recovery_next_wait=2.0, render_poll_min=0.2,
               render_poll_max=0.5, rate_limit_wait=0.2)
_nemo_magics.workspace.client_factory = lambda **kw: make_client(timing=_fast, **kw)
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    made = tmp_path / "notebooks"
    made.mkdir()
    return made


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Any]:
    """An emulator with cloud-like latency (scaled down), outside the kernels."""
    from nemo_notebook.emulator import start

    with start(tmp_path / "cloud", time_scale=0.02, initial_credits=5000) as handle:
        yield handle


def open_kernel(folder: Path, kernels: list[Kernel], url: str) -> tuple[Kernel, Ran]:
    kernel = Kernel(folder)
    kernels.append(kernel)
    loaded = kernel.run("%load_ext nemo_notebook\n" + FAST_RECOVERY)
    assert loaded.error is None, loaded.error
    connected = kernel.run(f"%nemo connect {url}")
    assert connected.error is None, connected.error
    return kernel, connected


def wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_background_export_outlives_its_kernel_and_a_new_kernel_delivers_it(
    folder, cloud, kernels
):
    cloud.render_latency_s = 400  # 8 s at this time scale: the kernel dies first
    first, _ = open_kernel(folder, kernels, cloud.url)
    turn = first.run("%%nemo\ngenerate a realistic image of a futuristic city at night")
    assert turn.error is None, turn.error
    started = time.monotonic()
    background = first.run("%nemo export --background")
    assert time.monotonic() - started < 3, "the cell returned while the render runs"
    assert "in the background as job" in background.html()
    ledger = Ledger.in_folder(folder)
    wait_for(lambda: any(job.status == "rendering" for job in ledger.jobs(kind="export")))
    [export] = ledger.jobs(kind="export")
    [session] = ledger.sessions(cloud.url)
    first.kill()
    kernels.remove(first)

    second, connected = open_kernel(folder, kernels, cloud.url)
    assert f"main ({session.session_id})" in connected.stdout  # the same session
    assert f"export {export.id} (main, rendering)" in connected.stdout
    attached = second.run("%nemo attach")
    assert attached.error is None, attached.error
    assert "Saved nemo-main-1.mp4" in attached.stdout
    assert "<video" in attached.html()
    assert (folder / "nemo-main-1.mp4").stat().st_size > 1000
    assert ledger.job(export.id).status == "completed"  # type: ignore[union-attr]
    assert cloud.faults.count("POST", "/api/render/proxy/lambda") == 1, "never resubmitted"


def test_a_batch_cut_off_by_its_kernel_continues_in_a_new_one_without_resending(
    folder, cloud, kernels, tmp_path
):
    cloud.turn_latency_s = 100  # 2 s a turn at this time scale
    (folder / "rows.csv").write_text(
        "prompt,input\n"
        "generate a realistic image of a harbour at dawn,\n"
        "generate a realistic image of a desert road,\n"
        "explain this image,missing-photo.png\n"
        "generate a realistic image of a snowy forest,\n",
        encoding="utf-8",
    )
    first, _ = open_kernel(folder, kernels, cloud.url)
    first.start("%nemo batch rows.csv --concurrency 2")
    ledger = Ledger.in_folder(folder)

    def a_turn_in_flight() -> bool:
        return any(job.status == "turn" for job in ledger.jobs(kind="row"))

    wait_for(a_turn_in_flight)
    # The ledger says "turn" just before the POST: give it time to reach the server (a turn
    # killed before its POST left is rightly never sent, and then has nothing to recover).
    time.sleep(0.8)  # the turn still waits out its 2 s latency on the server
    first.kill()
    kernels.remove(first)
    sent_before = cloud.faults.count("POST", "/run_sse")

    second, _ = open_kernel(folder, kernels, cloud.url)
    done = second.run("%nemo batch rows.csv --concurrency 2", timeout=240)
    assert done.error is None, done.error
    rows_seen = [(j.row, j.status, j.error) for j in ledger.jobs(kind="row")]
    assert "3 completed, 1 failed" in done.stdout, rows_seen
    rows = {job.row: job for job in ledger.jobs(kind="row")}
    assert rows[3].status == "failed" and "missing-photo.png" in (rows[3].error or "")
    for number in (1, 2, 4):
        assert Path(rows[number].output or "").is_file()
    time.sleep(0.5)  # the server logs a request once it ended
    sent = cloud.faults.count("POST", "/run_sse")
    assert sent == 3, f"one turn per good row in all ({sent_before} before the new kernel)"
    assert cloud.faults.count("POST", "/api/render/proxy/lambda") == 3


def test_the_budget_refuses_a_turn_before_anything_is_sent(folder, cloud, kernels):
    kernel, _ = open_kernel(folder, kernels, cloud.url)
    assert kernel.run("%nemo budget 0").error is None
    sent = cloud.faults.count("POST", "/run_sse")
    refused = kernel.run("%%nemo\ngenerate a realistic image of a lighthouse")
    assert refused.error is not None and "budget" in refused.error
    assert cloud.faults.count("POST", "/run_sse") == sent


def test_a_background_turn_writes_into_its_own_cell_while_other_cells_run(folder, cloud, kernels):
    cloud.turn_latency_s = 100  # 2 s at this time scale
    kernel, _ = open_kernel(folder, kernels, cloud.url)
    turn_cell = kernel.start("%%nemo --background\ngenerate a realistic image of a city at night")
    other_cell = kernel.start("print(sum(range(10)))")

    def parent(message: dict[str, Any]) -> str:
        return str(message["parent_header"].get("msg_id"))

    def final_block(message: dict[str, Any]) -> bool:
        html = str(message["content"].get("data", {}).get("text/html", ""))
        return message["msg_type"] == "display_data" and "nemo-footer" in html

    seen = kernel.messages(lambda seen: any(final_block(m) for m in seen))
    other_idle = next(
        index for index, m in enumerate(seen)
        if parent(m) == other_cell and m["msg_type"] == "status"
        and m["content"]["execution_state"] == "idle"
    )  # fmt: skip
    first_block = next(index for index, m in enumerate(seen) if final_block(m))
    assert other_idle < first_block, "the other cell ran while the turn was still going"
    outputs = [m for m in seen if m["msg_type"] in ("display_data", "update_display_data")]
    assert outputs and all(parent(m) == turn_cell for m in outputs)
    printed = [m["content"]["text"] for m in seen if m["msg_type"] == "stream"
               and parent(m) == other_cell]  # fmt: skip
    assert "".join(printed) == "45\n"
