"""Background work, the jobs table, attach, the credit budget and batch through the magics of a
real ``InteractiveShell`` against the real emulator (the kernel-level story is in
``test_kernel_jobs.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output

from nemo_notebook import Ledger, NotebookError, Reply
from nemo_notebook._background import Running
from nemo_notebook._commands import AttachArgs, BudgetArgs, parse_cell_line, parse_line


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)  # the kernel's folder: the ledger and exports go here
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nemo_notebook")
    yield ip
    ip.run_line_magic("unload_ext", "nemo_notebook")
    ip.config.pop("NemoMagics", None)
    ip.user_ns.pop("_nemo", None)


@pytest.fixture
def connected(shell: InteractiveShell, emulator: Any) -> Iterator[InteractiveShell]:
    with capture_output():
        shell.run_line_magic("nemo", f"connect {emulator.url}")
    yield shell
    emulator.turn_latency_s = 0


def line(ip: InteractiveShell, text: str) -> tuple[Any, CapturedIO]:
    with capture_output() as cap:
        result = ip.run_line_magic("nemo", text)
    return result, cap


def cell(ip: InteractiveShell, options: str, body: str) -> tuple[Any, CapturedIO]:
    with capture_output() as cap:
        result = ip.run_cell_magic("nemo", options, body)
    return result, cap


def test_the_new_commands_parse_and_refuse_bad_arguments() -> None:
    assert parse_cell_line("--background").background is True
    assert parse_cell_line("--wait").background is False
    assert parse_cell_line("").background is None
    assert parse_line("export --background")[1].background is True
    assert parse_line("attach")[1] == AttachArgs()
    assert parse_line("attach 7")[1] == AttachArgs(7)
    assert parse_line("budget 500")[1] == BudgetArgs(amount=500)
    assert parse_line("budget off")[1] == BudgetArgs(lift=True)
    batch = parse_line("batch rows.csv --concurrency 3 --yes")[1]
    assert (batch.file, batch.concurrency, batch.yes) == ("rows.csv", 3, True)
    for bad in (
        "attach x",
        "attach 1 2",
        "budget -5",
        "budget lots",
        "batch",
        "batch a.csv --concurrency 0",
    ):
        with pytest.raises(UsageError):
            parse_line(bad)
    with pytest.raises(UsageError, match="not both"):
        parse_cell_line("--background --wait")


def test_a_background_turn_returns_at_once_and_its_handle_gives_the_reply(connected, emulator):
    emulator.turn_latency_s = 100  # 1 s at the tests' time scale
    started = time.monotonic()
    _, cap = cell(connected, "--background --out job", "generate a realistic image of a red barn")
    assert time.monotonic() - started < 0.8
    assert "in the background as job 1" in cap.stdout
    job = connected.user_ns["job"]
    assert isinstance(job, Running)
    with capture_output():
        reply = job.result_or_raise(timeout=60)
    assert isinstance(reply, Reply) and reply.text
    [record] = Ledger.in_folder(Path.cwd()).jobs(kind="turn")
    assert record.status == "completed" and (record.credits or 0) > 0


def test_a_second_turn_on_a_busy_session_is_refused_before_it_is_sent(connected, emulator):
    emulator.turn_latency_s = 150
    cell(connected, "--background --out job", "generate a realistic image of a pier")
    sent = emulator.faults.count("POST", "/run_sse")
    with pytest.raises(NotebookError, match="already running in session 'main'"):
        cell(connected, "", "add lo-fi music at 35%")
    other, _ = cell(connected, "--session other --wait", "generate a realistic image of a dune")
    assert isinstance(other, type(None))  # a turn in another session runs meanwhile
    with capture_output():
        connected.user_ns["job"].wait(60)
    time.sleep(0.3)  # the server logs a stream once it ended
    # the server logs a stream when it ends: the background turn's and the other session's
    assert emulator.faults.count("POST", "/run_sse") == sent + 2


def test_the_background_setting_makes_it_the_default_and_wait_overrides_it(connected):
    connected.run_line_magic("config", "NemoMagics.background = True")
    _, cap = cell(connected, "", "generate a realistic image of a glacier")
    assert "in the background" in cap.stdout
    with capture_output():
        connected.user_ns["_nemo"].wait(60)
    _, cap = cell(connected, "--wait", "add the title 'Ice'")
    assert "in the background" not in cap.stdout


def test_jobs_lists_the_folders_turns_and_exports(connected):
    empty, cap = line(connected, "jobs")
    assert empty is None and "No jobs recorded" in cap.stdout
    cell(connected, "", "generate a realistic image of a futuristic city at night")
    line(connected, "export --link")
    table, _ = line(connected, "jobs")
    assert list(table.columns) == [
        "kind",
        "session",
        "started",
        "status",
        "progress",
        "output",
        "credits",
    ]
    assert list(table["kind"]) == ["export", "turn"]  # newest first
    assert list(table["status"]) == ["completed", "completed"]
    assert table.iloc[0]["output"] == "nemo-main-1.mp4" and table.iloc[0]["progress"] == "100%"


def test_attach_delivers_a_background_export_into_its_own_cell(connected):
    cell(connected, "", "generate a realistic image of a harbour")
    _, started = line(connected, "export --background --link")
    assert "in the background as job 2" in started.stdout
    _, cap = line(connected, "attach 2")
    assert (Path.cwd() / "nemo-main-1.mp4").is_file()
    assert any("<video" in str(shown.data.get("text/html", "")) for shown in cap.outputs)
    _, cap = line(connected, "attach")
    assert "Nothing is left unfinished" in cap.stdout
    with pytest.raises(NotebookError, match="no job 99"):
        line(connected, "attach 99")


def test_the_budget_caps_this_kernel_and_refuses_before_sending(connected, emulator):
    _, cap = line(connected, "budget")
    assert "No credit budget; this kernel spent 0 credits" in cap.stdout
    _, cap = cell(connected, "", "generate a realistic image of a canyon")
    footer = cap.outputs[-1].data.get("text/html", "") if cap.outputs else ""
    spent = connected.magics_manager.registry["NemoMagics"].workspace.spending.spent
    assert spent > 0
    assert f"{spent} credits" in cap.stdout + "".join(
        str(shown.data.get("text/html", "")) for shown in cap.outputs
    ), footer
    _, cap = line(connected, f"budget {spent}")
    assert f"Budget: {spent} credits; this kernel spent {spent}, 0 left." in cap.stdout
    sent = emulator.faults.count("POST", "/run_sse")
    with pytest.raises(NotebookError, match=r"budget of .* is used up"):
        cell(connected, "", "add lo-fi music at 35%")
    assert emulator.faults.count("POST", "/run_sse") == sent
    line(connected, "budget off")
    cell(connected, "", "add lo-fi music at 35%")
    assert emulator.faults.count("POST", "/run_sse") == sent + 1


def test_a_batch_over_the_budget_needs_yes(connected, tmp_path):
    (tmp_path / "rows.csv").write_text("prompt\na city\na lake\n", encoding="utf-8")
    line(connected, "budget 50")
    with pytest.raises(NotebookError, match=r"about 200 credits .* --yes"):
        line(connected, "batch rows.csv")
    assert Ledger.in_folder(tmp_path).jobs(kind="row") == []


def test_a_batch_from_a_csv_gives_a_table_and_a_rerun_redoes_nothing(connected, emulator, tmp_path):
    (tmp_path / "rows.csv").write_text(
        "prompt,input\ngenerate a realistic image of a bay,\nexplain this,nowhere.png\n",
        encoding="utf-8",
    )
    table, cap = line(connected, "batch rows.csv --concurrency 2")
    assert list(table["status"]) == ["completed", "failed"]
    assert "nowhere.png" in table.iloc[1]["error"]
    assert "1 completed, 1 failed, 0 skipped" in cap.stdout
    assert (tmp_path / "rows-videos").is_dir()
    sent = emulator.faults.count("POST", "/run_sse")
    again, cap = line(connected, "batch rows.csv")
    assert "(0 to run" in cap.stdout and list(again["status"]) == ["completed", "failed"]
    assert emulator.faults.count("POST", "/run_sse") == sent


def test_a_new_kernel_in_the_folder_reopens_the_named_sessions(connected, emulator):
    cell(connected, "--session promo", "generate a realistic image of a meadow")
    workspace = connected.magics_manager.registry["NemoMagics"].workspace
    ids = {name: session.id for name, session in workspace.sessions.items()}
    connected.run_line_magic("unload_ext", "nemo_notebook")  # as a restarted kernel would be
    connected.run_line_magic("load_ext", "nemo_notebook")
    _, cap = line(connected, f"connect {emulator.url}")
    assert "Reopened 2 sessions of this folder:" in cap.stdout
    assert f"main ({ids['main']})" in cap.stdout and f"promo ({ids['promo']})" in cap.stdout
    _, cap = line(connected, f"connect {emulator.url} --new")
    assert "Reopened" not in cap.stdout


def test_local_emulator_sessions_are_never_reopened_by_another_emulator(shell):
    _, cap = line(shell, "connect --local")
    cell(shell, "", "generate a realistic image of a quiet street")
    shell.run_line_magic("unload_ext", "nemo_notebook")  # its emulator ends with it
    shell.run_line_magic("load_ext", "nemo_notebook")
    _, cap = line(shell, "connect --local")
    assert "Reopened" not in cap.stdout and "Left unfinished" not in cap.stdout
    backends = {job.backend for job in Ledger.in_folder(Path.cwd()).jobs()}
    assert len(backends) == 1 and "(local " in backends.pop()


def test_a_background_turns_handle_reads_as_one_line(connected):
    cell(connected, "--background --out job", "generate a realistic image of a fjord")
    job = connected.user_ns["job"]
    assert repr(job) in ("<background turn 1: running>", "<background turn 1: done>")
    with capture_output():
        job.wait(60)
    assert repr(job) == "<background turn 1: done>"
