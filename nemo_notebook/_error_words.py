"""What the core itself writes in its errors, in English and Chinese.

One table per language, keyed by what is being said; :func:`error_text` fills in the values.
The client's language picks the table (``NemoClient(language="zh")``, through
:func:`~nemo_notebook._protocol.words_language`). Both tables have the same keys and the same
placeholders. What a server said is never translated: it is filled in as a value.
"""

from __future__ import annotations

__all__ = ["EN", "ZH", "error_text"]

EN: dict[str, str] = {
    # -- how an API error names its details: "… (code 2001, HTTP 402, request id r1)"
    "details": "{message} ({details})",
    "detail_sep": ", ",
    "detail_code": "code {value}",
    "detail_status": "HTTP {value}",
    "detail_request_id": "request id {value}",
    "server_said": " Server said: {said}",
    # -- reading within the client's limits
    "size_bytes": "{count} bytes",
    "size_chars": "{count} characters",
    "size_megabytes": "{count} MB",
    "size_mega_chars": "{count} M characters",
    "limit_exceeded": (
        "{what} is larger than {size}, the client's {setting} limit, so the client stopped "
        "reading it.{then} If you trust the server, raise the limit with "
        "NemoClient(limits=Limits({setting}=...))."
    ),
    "what_answer": "The server's answer to {path}",
    "what_file_at": "The file at {path}",
    "what_rendered_file": "The rendered file",
    "what_turn_stream": "This turn's stream",
    "what_stream_line": "A line of the chat stream",
    "what_stream_event": "An event of the chat stream",
    "turn_may_still_finish": (
        " The server may still finish the turn: check with session.state() or `%nemo status`."
    ),
    # -- what a refusal means (PROTOCOL §7)
    "token_anonymous": "The anonymous token was refused even after renewing it.",
    "token_given": (
        "Your NEMO_TOKEN is invalid or expired. Get a new token at {web_url} and set "
        "NEMO_TOKEN, or unset it to use an anonymous token."
    ),
    "session_not_found": (
        "That session was not found (it may have expired or belong to another account). "
        "Start a new one with client.create_session() or `%nemo connect`."
    ),
    "credits_register_bind": (
        "You are out of credits. Register at {web_url}/register?bind={user_id} to get more "
        "credits and keep your work."
    ),
    "credits_register": "You are out of credits. Register at {web_url}/register to get more.",
    "credits_top_up": "You are out of credits. Top up your account at {web_url} to continue.",
    "unsupported_type": "The server does not accept this file type. Accepted types: {accepted}.",
    "too_large": (
        "The file is over the {limit} MB limit. Compress it or trim it and upload again."
    ),
    "client_id": (
        "The server refused the anonymous-token request (the X-Client-Id header). Set "
        "NEMO_CLIENT_ID to a UUID or delete the client_id file in the config folder so a "
        "new one is made."
    ),
    "bad_request": "The server refused the request as invalid; it was not retried.",
    "export_blocked": (
        "Your plan does not allow exporting on the server (this is not about credits). "
        "Upgrade at {web_url}, or render locally with the embedded emulator "
        "(`%nemo connect --local`)."
    ),
    "scope": (
        "The token lacks a permission (scope) needed for this call; retrying will not "
        "help. Use a token with read, write and upload scopes."
    ),
    "rate_limited": (
        "The server is rate limiting requests (waited and retried once). "
        "Wait a few minutes and try again."
    ),
    "server_error": "The server failed to answer. Try again in a moment.",
    "not_found": "The server has no such resource; is NEMO_API_URL the right server?",
    "refused": "The server refused the request.",
    "agent_error": (
        "The agent reported an error: {said}. Nothing was retried; rephrase the request or "
        "try again."
    ),
    # -- the connection
    "timed_out": (
        "{method} {path} timed out talking to {api_url}; check the connection and try again."
    ),
    "unreachable": (
        "Could not reach {api_url} ({error}); check NEMO_API_URL and the network, or use the "
        "embedded emulator (`%nemo connect --local`)."
    ),
    "not_json": "The server's answer to {path} is not JSON; is NEMO_API_URL the right server?",
    "lacks_field": "The server's answer lacks '{name}'; is NEMO_API_URL the right server?",
    "client_closed": "This NemoClient is closed; create a new NemoClient().",
    "token_rate_limited": (
        "The server refused a new anonymous token: it allows one per client id every 7 days "
        "and a few per network. Set NEMO_TOKEN to the token you have, or set NEMO_CLIENT_ID "
        "to a new UUID."
    ),
    "bad_media_url": "The server gave a media URL that cannot be fetched: {problem}.",
    "url_too_long": "its URL is longer than {limit} characters",
    "url_spaces": "its URL contains spaces or control characters",
    "url_malformed": "its URL is malformed",
    "url_not_web": "its URL is not a web address",
    "url_no_host": "its URL has no host",
    "download_broke_off": "The download from {path} broke off.",
    "download_short": "The download stopped after {written} of {expected} bytes.",
    # -- sessions, uploads, export
    "empty_session_id": "session_id is empty; pass the id of an existing session.",
    "empty_message": "The message is empty; say what the agent should do.",
    "no_files": "Name at least one file to upload.",
    "no_urls": "Name at least one URL to upload.",
    "url_not_http": "Only http(s) URLs can be uploaded, got {url}.",
    "no_such_file": "No such file: {path}",
    "upload_unsupported": (
        "'{name}' is not a supported type. Accepted: {accepted}. Convert it to one of these "
        "and upload again."
    ),
    "upload_empty": (
        "'{name}' is empty (0 bytes). Upload a real media file. Accepted types: {accepted}."
    ),
    "upload_too_large": (
        "'{name}' is {size} MB, over the {limit} MB limit. Compress it or trim it and upload again."
    ),
    "export_in_progress": "An export of this session is already running; wait for it to finish.",
    "nothing_to_export": (
        "Nothing to export yet: the timeline has no clips. Generate something first, "
        "e.g. 'generate a realistic image of a futuristic city at night'."
    ),
    "render_cancelled": "The render {id} was cancelled.",
    "render_timeout": (
        "The render {id} did not finish within {minutes} minutes. Check later with job.refresh()."
    ),
    "render_failed": (
        "The render failed ({reason}). Check the timeline with `%nemo status`, fix what the "
        "reason names, and export again."
    ),
    "render_failed_twice": (
        "The render failed twice ({reason}). Check the timeline with `%nemo status`, fix what "
        "the reason names, and export again."
    ),
    "no_reason": "no reason given",
    "cancel_unsupported": (
        "This server has no way to cancel a render, so it goes on; wait for it with "
        "job.wait() or ignore it (export costs no credits)."
    ),
    "render_not_completed": "The render is {status}, not completed; call job.wait() first.",
    # -- chat turns
    "turn_broke_off": "The turn's answer broke off before it was read.",
    "turn_no_state": (
        "The stream {reason} and this server offers no session state to check what "
        "happened. The message was not sent again."
    ),
    "turn_no_result": (
        "The turn gave no result: the stream {reason}, and {count} state checks found no "
        "change. The message was not sent again. The agent may still finish: check later "
        "with session.state() or `%nemo status`, or send the message again to retry (a new, "
        "charged turn)."
    ),
    "reason_dropped": "broke off",
    "reason_timeout": "timed out (only keep-alives)",
}

ZH: dict[str, str] = {
    "details": "{message}（{details}）",
    "detail_sep": "，",
    "detail_code": "代码 {value}",
    "detail_status": "HTTP {value}",
    "detail_request_id": "请求 ID {value}",
    "server_said": "服务器返回：{said}",
    "size_bytes": "{count} 字节",
    "size_chars": "{count} 个字符",
    "size_megabytes": "{count} MB",
    "size_mega_chars": "{count} M 个字符",
    "limit_exceeded": (
        "{what}超过了 {size}（客户端的 {setting} 上限），客户端已停止读取。{then}"
        "如果你信任这个服务器，可以用 NemoClient(limits=Limits({setting}=...)) 提高上限。"
    ),
    "what_answer": "服务器对 {path} 的回答",
    "what_file_at": "{path} 处的文件",
    "what_rendered_file": "渲染出的文件",
    "what_turn_stream": "这一轮的数据流",
    "what_stream_line": "对话数据流中的一行",
    "what_stream_event": "对话数据流中的一个事件",
    "turn_may_still_finish": (
        "服务器可能仍会完成这一轮：用 session.state() 或 `%nemo status` 查看。"
    ),
    "token_anonymous": "匿名令牌在重新获取后仍被拒绝。",
    "token_given": (
        "你的 NEMO_TOKEN 无效或已过期。请在 {web_url} 获取新令牌并设置 NEMO_TOKEN，"
        "或取消设置它以使用匿名令牌。"
    ),
    "session_not_found": (
        "找不到这个会话（可能已过期，或属于另一个账号）。"
        "请用 client.create_session() 或 `%nemo connect` 新建一个。"
    ),
    "credits_register_bind": (
        "你的积分已用完。请在 {web_url}/register?bind={user_id} 注册，"
        "即可获得更多积分并保留你的作品。"
    ),
    "credits_register": "你的积分已用完。请在 {web_url}/register 注册以获得更多积分。",
    "credits_top_up": "你的积分已用完。请在 {web_url} 为账号充值后继续。",
    "unsupported_type": "服务器不接受这种文件类型。支持的类型：{accepted}。",
    "too_large": "文件超过了 {limit} MB 的上限。请压缩或裁剪后重新上传。",
    "client_id": (
        "服务器拒绝了匿名令牌请求（X-Client-Id 请求头）。请把 NEMO_CLIENT_ID 设为一个 UUID，"
        "或删除配置文件夹中的 client_id 文件，以便生成新的。"
    ),
    "bad_request": "服务器认为请求无效而拒绝了它；没有重试。",
    "export_blocked": (
        "你的套餐不允许在服务器上导出（这与积分无关）。请在 {web_url} 升级，"
        "或用内置模拟器在本地渲染（`%nemo connect --local`）。"
    ),
    "scope": (
        "令牌缺少这次调用所需的权限（scope），重试也没有用。"
        "请使用具有 read、write 和 upload 权限的令牌。"
    ),
    "rate_limited": "服务器正在限制请求频率（已等待并重试过一次）。请过几分钟再试。",
    "server_error": "服务器没能给出回答。请稍后再试。",
    "not_found": "服务器上没有这个资源；NEMO_API_URL 指向的服务器对吗？",
    "refused": "服务器拒绝了请求。",
    "agent_error": "智能体报告了一个错误：{said}。没有重试；请换个说法或再试一次。",
    "timed_out": "{method} {path} 与 {api_url} 通信超时；请检查网络连接后重试。",
    "unreachable": (
        "无法连接 {api_url}（{error}）；请检查 NEMO_API_URL 和网络，"
        "或使用内置模拟器（`%nemo connect --local`）。"
    ),
    "not_json": "服务器对 {path} 的回答不是 JSON；NEMO_API_URL 指向的服务器对吗？",
    "lacks_field": "服务器的回答缺少 '{name}'；NEMO_API_URL 指向的服务器对吗？",
    "client_closed": "这个 NemoClient 已关闭；请新建一个 NemoClient()。",
    "token_rate_limited": (
        "服务器拒绝发放新的匿名令牌：每个客户端 ID 每 7 天只能领取一个，每个网络也只能领取几个。"
        "请把 NEMO_TOKEN 设为你已有的令牌，或把 NEMO_CLIENT_ID 设为一个新的 UUID。"
    ),
    "bad_media_url": "服务器给出的媒体链接无法获取：{problem}。",
    "url_too_long": "链接超过 {limit} 个字符",
    "url_spaces": "链接含有空格或控制字符",
    "url_malformed": "链接格式不正确",
    "url_not_web": "链接不是网址",
    "url_no_host": "链接没有主机名",
    "download_broke_off": "从 {path} 的下载中断了。",
    "download_short": "下载在 {expected} 字节中只收到 {written} 字节就停止了。",
    "empty_session_id": "session_id 为空；请传入一个已有会话的 id。",
    "empty_message": "消息为空；请说明要智能体做什么。",
    "no_files": "请至少指定一个要上传的文件。",
    "no_urls": "请至少指定一个要上传的链接。",
    "url_not_http": "只能上传 http(s) 链接，收到的是 {url}。",
    "no_such_file": "找不到文件：{path}",
    "upload_unsupported": (
        "不支持 '{name}' 的文件类型。支持的类型：{accepted}。请转换成其中一种后重新上传。"
    ),
    "upload_empty": "'{name}' 是空文件（0 字节）。请上传真正的媒体文件。支持的类型：{accepted}。",
    "upload_too_large": (
        "'{name}' 有 {size} MB，超过了 {limit} MB 的上限。请压缩或裁剪后重新上传。"
    ),
    "export_in_progress": "这个会话已有一个导出正在进行；请等它完成。",
    "nothing_to_export": (
        "还没有可导出的内容：时间线上没有片段。请先生成一些内容，例如“生成一张城市夜景的图片”。"
    ),
    "render_cancelled": "渲染 {id} 已被取消。",
    "render_timeout": "渲染 {id} 没有在 {minutes} 分钟内完成。请稍后用 job.refresh() 查看。",
    "render_failed": (
        "渲染失败了（{reason}）。请用 `%nemo status` 检查时间线，"
        "修正原因里提到的问题，然后重新导出。"
    ),
    "render_failed_twice": (
        "渲染失败了两次（{reason}）。请用 `%nemo status` 检查时间线，"
        "修正原因里提到的问题，然后重新导出。"
    ),
    "no_reason": "未说明原因",
    "cancel_unsupported": (
        "这个服务器无法取消渲染，渲染会继续进行；可以用 job.wait() 等它完成，"
        "也可以不管它（导出不消耗积分）。"
    ),
    "render_not_completed": "渲染状态为 {status}，尚未完成；请先调用 job.wait()。",
    "turn_broke_off": "这一轮的回答还没读完就中断了。",
    "turn_no_state": (
        "数据流{reason}，而这个服务器不提供会话状态，无法查看发生了什么。消息没有重新发送。"
    ),
    "turn_no_result": (
        "这一轮没有结果：数据流{reason}，{count} 次状态检查都没有发现变化。消息没有重新发送。"
        "智能体可能仍会完成：稍后用 session.state() 或 `%nemo status` 查看，"
        "或再次发送消息来重试（这是新的一轮，会消耗积分）。"
    ),
    "reason_dropped": "中断了",
    "reason_timeout": "超时了（只收到保活信号）",
}


def error_text(key: str, language: str = "en", **values: object) -> str:
    """The message ``key`` in ``language`` (``"zh"`` or ``"en"``) with ``values`` filled in."""
    table = ZH if language == "zh" else EN
    return table[key].format(**values)
