"""A Chinese conversation reads Chinese: what the client itself writes (status lines,
progress, the timeline, the changes, credits, notes, the messages of its errors) follows the
session's language, while the English one stays as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_backend import API_URL, FakeBackend, fake_client
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output

from nemo_notebook._commands import CellArgs, ExportArgs, UploadArgs
from nemo_notebook._config import DEFAULT_WEB_URL
from nemo_notebook._draft import Draft
from nemo_notebook._errors import InsufficientCreditsError, NotebookError, NothingToExportError
from nemo_notebook._events import tool_status
from nemo_notebook._protocol import words_language
from nemo_notebook._workspace import DefaultSettings, Workspace

DRAFT = {
    "t": [
        {"id": "v", "tt": 0, "sg": [{"id": "a", "st": 0, "d": 10000, "n": "city timelapse"}]},
        {"id": "m", "tt": 1, "sg": [{"id": "b", "st": 0, "d": 10000, "n": "Lo-fi", "v": 0.35}]},
    ]
}
EDITED = {
    "t": [
        {"id": "v", "tt": 0, "sg": [{"id": "a", "st": 0, "d": 10000, "n": "city timelapse"}]},
        {"id": "m", "tt": 1, "sg": [{"id": "b", "st": 0, "d": 10000, "n": "Lo-fi", "v": 0.5}]},
        {"id": "t", "tt": 7, "sg": [{"id": "c", "st": 0, "d": 3000, "tx": "Urban Dreams"}]},
    ]
}


def test_the_language_of_a_session_code() -> None:
    assert [words_language(code) for code in ("zh", "zh-CN", "ZH_cn", "en", "ja", None)] == [
        "zh", "zh", "zh", "en", "en", "en",
    ]  # fmt: skip


def test_status_lines_in_chinese_and_english() -> None:
    assert tool_status("generate_image", "zh") == "正在生成图片…"
    assert tool_status("add_bgm", "zh") == "正在添加音乐…"
    assert tool_status("generate_image") == "generating image…"  # English as before


def test_the_timeline_and_its_changes_in_chinese() -> None:
    before, after = Draft.from_dict(DRAFT), Draft.from_dict(EDITED)
    assert before.summary() == (
        "Timeline (2 tracks): 1. Video: city timelapse (0-10s) 2. BGM: Lo-fi (0-10s, 35%)"
    )
    assert after.summary(language="zh") == (
        "时间线（3 条轨道）：1. 视频：city timelapse（0-10秒） 2. 背景音乐：Lo-fi（0-10秒，50%）"
        ' 3. 标题："Urban Dreams"（0-3秒）'
    )
    assert before.diff(after, language="zh") == (
        "背景音乐音量 35% -> 50%",
        "新增标题：'Urban Dreams'（0-3秒）",
    )
    assert before.diff(after) == ("BGM volume 35% -> 50%", "Title added: 'Urban Dreams' (0-3s)")


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.chdir(tmp_path)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nemo_notebook")
    ip.run_line_magic("config", 'NemoMagics.language = "zh"')
    yield ip
    ip.run_line_magic("unload_ext", "nemo_notebook")
    ip.config.pop("NemoMagics", None)


def run(ip: InteractiveShell, line: str, body: str | None = None) -> tuple[Any, CapturedIO]:
    with capture_output() as cap:
        if body is None:
            result = ip.run_line_magic("nemo", line)
        else:
            result = ip.run_cell_magic("nemo", line, body)
    return result, cap


def test_a_chinese_conversation_reads_chinese(shell: InteractiveShell, emulator: Any) -> None:
    _, cap = run(shell, f"connect {emulator.url}")
    assert cap.stdout.startswith(f"已连接到 {emulator.url}（匿名令牌）。")
    assert "在 NemoVideo 中认领此项目" in cap.outputs[0].data["text/plain"]
    _, cap = run(shell, "", "生成一张城市夜景的图片")
    assert "· 正在生成图片…" in cap.stdout
    table, _ = run(shell, "tracks")
    assert table.summary.startswith("时间线（")
    _, cap = run(shell, "credits")
    assert cap.stdout.startswith("积分：可用 ")
    _, cap = run(shell, "", "把背景音乐音量调到20%")
    changes, timeline = (o.data["text/plain"] for o in cap.outputs)
    assert changes == "草稿的变化：\n  • 背景音乐音量 30% -> 20%"
    assert timeline.startswith("时间线（3 条轨道）：1. 视频：") and "背景音乐：Lo-fi" in timeline
    _, cap = run(shell, "export")
    final = [part.rsplit("\r", 1)[-1] for part in cap.stdout.split("\n")]
    assert "正在渲染… 100%" in final and "已保存 nemo-main-1.mp4" in final
    _, cap = run(shell, "history")
    assert cap.stdout.startswith("1. 你：")


class _Written:
    """What a workspace writes; displays are not needed here."""

    live = False

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def display(self, obj: object, *, display_id: str | None = None) -> None:
        pass

    def update(self, obj: object, *, display_id: str) -> None:
        pass


def test_a_failure_of_the_core_reads_chinese_in_a_chinese_notebook(tmp_path: Path) -> None:
    backend = FakeBackend(drafts=[{"t": [{"tt": 0, "sg": []}]}])
    workspace = Workspace(
        settings=DefaultSettings(language="zh"),
        output=_Written(),
        client_factory=lambda **kwargs: fake_client(backend, tmp_path / "config", **kwargs),
        env={"NEMO_API_URL": API_URL},
        base_dir=tmp_path,
    )
    workspace.connect()
    with pytest.raises(NothingToExportError) as nothing:
        workspace.exports.export(ExportArgs())
    assert nothing.value.message.startswith("还没有可导出的内容：时间线上没有片段。")
    backend.fail_next = [("/api/credits", 402, {"code": 2001, "message": "Insufficient credits"})]
    with pytest.raises(InsufficientCreditsError) as broke:
        workspace.credits()
    assert str(broke.value) == (
        f"你的积分已用完。请在 {DEFAULT_WEB_URL}/register?bind=anon_1 注册，"
        "即可获得更多积分并保留你的作品。服务器返回：Insufficient credits（代码 2001，HTTP 402）"
    )


def test_long_work_and_upload_messages_read_chinese(tmp_path: Path) -> None:
    backend = FakeBackend(drafts=[{"t": [{"tt": 0, "sg": []}]}])
    output = _Written()
    workspace = Workspace(
        settings=DefaultSettings(language="zh", budget=0),
        output=output,
        client_factory=lambda **kwargs: fake_client(backend, tmp_path / "config", **kwargs),
        env={"NEMO_API_URL": API_URL},
        base_dir=tmp_path,
    )
    workspace.connect()
    with pytest.raises(NotebookError) as refused:
        workspace.chat("生成一张城市夜景的图片", CellArgs())
    assert refused.value.message.startswith(
        "积分预算 0 已用完（本内核已花费 0）；没有发送任何内容。"
    )
    with pytest.raises(FileNotFoundError, match=r"没有要上传的文件：.*missing\.png"):
        workspace.upload(UploadArgs(targets=(str(tmp_path / "missing.png"),)))
    workspace.jobs.budget(None, lift=True)
    assert output.text.endswith(
        "没有积分预算；本内核已花费 0 积分。用 `%nemo budget N` 设置预算。\n"
    )
    workspace.jobs.attach(None)
    assert output.text.endswith("此文件夹中没有未完成的任务。\n")


def test_every_phrase_of_the_notebook_has_both_languages_with_the_same_blanks() -> None:
    """A phrase added in one language only, or a Chinese one asking for a value the English
    caller does not give, would fail only when a Chinese notebook reaches it."""
    import string

    from nemo_notebook import _notebook_words

    english, chinese = _notebook_words._EN, _notebook_words._ZH
    assert set(english) == set(chinese)

    def blanks(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    for key, text in english.items():
        assert blanks(chinese[key]) <= blanks(text), key  # English alone may add "plural"
        assert blanks(text) - blanks(chinese[key]) <= {"plural"}, key
