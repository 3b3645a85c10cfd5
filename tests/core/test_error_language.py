"""A client in Chinese fails in Chinese: the messages the core writes in its errors follow the
client's language, what the server said is quoted as it was, and an English client reads as
before."""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fake_backend import FakeBackend, adk_text, draft_with_video, sse

from nemo_notebook import (
    InsufficientCreditsError,
    NemoClient,
    NemoError,
    NothingToExportError,
    RateLimitError,
    RenderFailedError,
    ServerError,
    SessionNotFoundError,
    StreamFailedError,
    Timing,
    TransportError,
    TurnTimeoutError,
)
from nemo_notebook._error_words import EN, ZH

API = "http://nemo.test"
FAST = Timing(rate_limit_wait=0.001, render_poll_min=0.001, render_poll_max=0.001)


def client_over(backend: FakeBackend, language: str) -> NemoClient:
    return NemoClient(api_url=API, transport=backend.transport(), timing=FAST, language=language)


def failing(prefix: str, status: int, body: dict[str, object]) -> FakeBackend:
    return FakeBackend(fail_next=[(prefix, status, body)])


def render_failing_twice() -> FakeBackend:
    backend = FakeBackend(
        drafts=[draft_with_video()],
        render_script=[{"status": "failed", "error": "missing media file"}],
    )
    backend.state_changes_after_reads = 0
    return backend


def out_of_credits(language: str) -> NemoError:
    backend = failing("/api/credits", 402, {"code": 2001, "message": "Insufficient credits"})
    return caught(InsufficientCreditsError, client_over(backend, language).credits)


def caught(kind: type[BaseException], call: Callable[[], object]) -> NemoError:
    with pytest.raises(kind) as raised:
        call()
    assert isinstance(raised.value, NemoError)
    return raised.value


# ----------------------------------------------------------------------------- Chinese


def test_out_of_credits_in_chinese_keeps_the_register_link_and_the_servers_words() -> None:
    error = out_of_credits("zh")
    assert error.message == (
        "你的积分已用完。请在 https://nemovideo.com/register?bind=anon_1 注册，"
        "即可获得更多积分并保留你的作品。服务器返回：Insufficient credits"
    )
    assert str(error) == error.message + "（代码 2001，HTTP 402）"


def test_a_lost_session_in_chinese() -> None:
    backend = failing("/api/state/", 404, {"code": 1002, "message": "session not found"})
    error = caught(SessionNotFoundError, client_over(backend, "zh-CN").session("9").state)
    assert error.message.startswith("找不到这个会话（可能已过期，或属于另一个账号）。")
    assert "client.create_session()" in error.message and "`%nemo connect`" in error.message
    assert error.message.endswith("服务器返回：session not found")


def test_rate_limited_after_the_one_retry_in_chinese() -> None:
    backend = FakeBackend(fail_next=[("/api/credits", 429, {}), ("/api/credits", 429, {})])
    error = caught(RateLimitError, client_over(backend, "zh").credits)
    assert error.message == "服务器正在限制请求频率（已等待并重试过一次）。请过几分钟再试。"
    assert backend.count("GET", "/api/credits/balance/simple") == 2


def test_a_server_error_in_chinese() -> None:
    backend = failing("/api/credits", 503, {"message": "upstream busy"})
    error = caught(ServerError, client_over(backend, "zh").credits)
    assert error.message == "服务器没能给出回答。请稍后再试。服务器返回：upstream busy"
    assert str(error).endswith("（HTTP 503）")


def test_an_unreachable_server_in_chinese() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = NemoClient(
        api_url=API, token="t" * 20, transport=httpx.MockTransport(handler), language="zh"
    )
    error = caught(TransportError, client.credits)
    assert error.message == (
        f"无法连接 {API}（ConnectError）；请检查 NEMO_API_URL 和网络，"
        "或使用内置模拟器（`%nemo connect --local`）。"
    )


def test_nothing_to_export_in_chinese() -> None:
    backend = FakeBackend(drafts=[{"t": [{"tt": 0, "sg": []}]}])
    error = caught(NothingToExportError, client_over(backend, "zh").session("1").export)
    assert error.message.startswith("还没有可导出的内容：时间线上没有片段。")


def test_a_render_that_failed_twice_in_chinese() -> None:
    backend = render_failing_twice()
    job = client_over(backend, "zh").session("1").export()
    error = caught(RenderFailedError, job.wait)
    assert error.message == (
        "渲染失败了两次（missing media file）。请用 `%nemo status` 检查时间线，"
        "修正原因里提到的问题，然后重新导出。"
    )
    assert backend.count("POST", "/api/render/proxy/lambda") == 2


def test_a_missing_upload_file_in_chinese(tmp_path: Path) -> None:
    session = client_over(FakeBackend(), "zh").session("1")
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError) as raised:
        session.upload(missing)
    assert str(raised.value) == f"找不到文件：{missing}"


def test_an_agent_error_in_chinese_quotes_the_agent() -> None:
    backend = FakeBackend(turn=lambda _b: iter([sse({"error": "model overloaded"})]))
    error = caught(StreamFailedError, lambda: client_over(backend, "zh").session("1").send("hi"))
    assert error.message == (
        "智能体报告了一个错误：model overloaded。没有重试；请换个说法或再试一次。"
    )


def test_a_dropped_turn_without_state_in_chinese() -> None:
    def broken_stream() -> Iterator[bytes]:
        yield sse(adk_text("Working", partial=True))
        raise httpx.ReadError("connection reset by peer")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/run_sse":
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, content=broken_stream())
        return httpx.Response(404, json={"detail": "Not Found"})

    client = NemoClient(
        api_url=API, token="t" * 20, transport=httpx.MockTransport(handler), language="zh"
    )
    error = caught(TurnTimeoutError, lambda: client.session("s1").send("hi"))
    assert error.message == (
        "数据流中断了，而这个服务器不提供会话状态，无法查看发生了什么。消息没有重新发送。"
    )


def test_the_language_of_the_messages_follows_the_clients() -> None:
    client = client_over(FakeBackend(), "zh")
    assert (client.language, client.connection.language) == ("zh-CN", "zh")
    assert client.connection.account().language == "zh"
    client.language = "en"
    assert (client.language, client.connection.language) == ("en", "en")


# ----------------------------------------------------------------------------- English


def test_an_english_client_reads_as_before(tmp_path: Path) -> None:
    error = out_of_credits("en")
    assert str(error) == (
        "You are out of credits. Register at https://nemovideo.com/register?bind=anon_1 to get "
        "more credits and keep your work. Server said: Insufficient credits (code 2001, HTTP 402)"
    )
    backend = FakeBackend(drafts=[{"t": [{"tt": 0, "sg": []}]}])
    error = caught(NothingToExportError, client_over(backend, "en").session("1").export)
    assert error.message == (
        "Nothing to export yet: the timeline has no clips. Generate something first, "
        "e.g. 'generate a realistic image of a futuristic city at night'."
    )
    job = client_over(render_failing_twice(), "en").session("1").export()
    assert caught(RenderFailedError, job.wait).message == (
        "The render failed twice (missing media file). Check the timeline with `%nemo status`, "
        "fix what the reason names, and export again."
    )
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError) as raised:
        client_over(FakeBackend(), "en").session("1").upload(missing)
    assert str(raised.value) == f"No such file: {missing}"


# ----------------------------------------------------------------------------- the tables


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_both_tables_say_the_same_things_with_the_same_values() -> None:
    assert set(EN) == set(ZH)
    assert {key: placeholders(EN[key]) for key in EN} == {key: placeholders(ZH[key]) for key in ZH}
    assert all(ZH[key].strip() for key in ZH)
