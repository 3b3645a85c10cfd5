"""What the notebook layer itself writes, in English and Chinese.

One table per language, keyed by what is being said; :func:`say` fills in the values. The
session's language picks the table (``%config NemoMagics.language = "zh"``); the agent's own
words are never translated here.
"""

from __future__ import annotations

__all__ = ["say"]

_EN: dict[str, str] = {
    "stopped": (
        "Stopped. Nothing was re-sent; the server may still finish this turn. "
        "Run `%nemo status` to see what it did.\n"
    ),
    "local_credits": (
        "The local emulator's balance ran out. Top it up with `%nemo credits --add 1000`: it is "
        "a stand-in on this machine, so nothing is charged."
    ),
    "not_connected": (
        "Not connected yet. Run `%nemo connect --local` to work offline with the embedded "
        "emulator, or `%nemo connect` for NemoVideo's cloud (set NEMO_TOKEN to use your account)."
    ),
    "export_stopped": (
        "Stopped waiting for the render; the server may still finish it (export costs no "
        "credits). Run `%nemo export` again for a new one.\n"
    ),
    "extras_stopped": (
        "Stopped showing the result; the turn itself finished. Run `%nemo status` to see the "
        "timeline.\n"
    ),
    "still_connected": (
        "Still connected to {backend}; the sessions are kept (`--new` starts over).\n"
    ),
    "started_local": "Started the local emulator; connected to {url}.\n",
    "connected": "Connected to {url}{token}.\n",
    "token_anonymous": " (anonymous token)",
    "token_given": " (your NEMO_TOKEN)",
    "backend_local": "the local emulator ({url})",
    "backend_machine": "a server on this machine ({url})",
    "backend_cloud": "NemoVideo ({url})",
    "backend_none": "no backend",
    "footer_local": "NemoVideo · local emulator",
    "footer_machine": "NemoVideo · a server on this machine",
    "footer_cloud": "NemoVideo",
    "recovered": "(The stream was interrupted; this is what the session shows.)\n",
    "unchanged": "The agent finished without a reply; the draft did not change.\n",
    "see_tracks": "To see the timeline: `%nemo tracks`.\n",
    "see_credits": "To see your credits: `%nemo credits`.\n",
    "ready_to_export": "Ready to export: run `%nemo export{option}` to render the MP4.\n",
    "added_credits": "Added {amount} credits on the local emulator: {available} available.\n",
    "credits": (
        "Credits: {available} available, {frozen} reserved by running work, {total} in total.\n"
    ),
    "uploaded": "Uploaded {what}.\n",
    "unchanged_export": (
        "The timeline has not changed since {path}; showing it again "
        "(`%nemo export --again` renders anew).\n"
    ),
    "saved": "Saved {path}\n",
    "no_turns": "No turns yet in session '{session}'.\n",
    "turn_you": "{number}. you: {text}\n",
    "turn_nemo": "   nemo: {text}\n",
    "no_text": "(no text; {count} change{plural} to the draft)",
    "no_sessions": "No sessions yet; the first %%nemo cell starts 'main'.\n",
    "session_line": "{name}: {count} turn{plural} (id {id})\n",
    "answer_hint": "Answer in the next %%nemo{option} cell.",
    "answer_hint_options": (
        "Answer in the next %%nemo{option} cell with an option's number or your own words, "
        "e.g. `%%nemo{option}` then `{example}`."
    ),
    "rendering": "Rendering",
    "changes_title": "Changes to the draft",
    "still_working": "still working… ({minutes} min so far, nothing needs doing)",
    "recovering": "the stream was interrupted; checking the session state instead of re-sending…",
    "answering": "· answering: {label}",
    "unknown_changes": (
        "What changed in the timeline is unknown: the session state could not be read."
    ),
    "streamed_timeline": (
        "The server's session state could not be read; this is the timeline as this session's "
        "turns streamed it."
    ),
    "claim_label": "Claim this project in NemoVideo",
    "claim_local": "issued by the local emulator, so it opens no real NemoVideo project",
    "claim_machine": "issued by a server on this machine, so it opens no real NemoVideo project",
    "claim_cloud": "opens this project in NemoVideo; the link is valid for 7 days",
    "no_claim": "No claim link this time: {reason}",
    "replaced": (
        "The session {old} was not found on the server (it expired or was removed); the "
        "work continues in a new session, {new}, which does not have the earlier timeline."
    ),
}

_ZH: dict[str, str] = {
    "stopped": "已停止。没有重新发送；服务器可能仍会完成这一轮。运行 `%nemo status` 查看结果。\n",
    "local_credits": (
        "本地模拟器的积分用完了。用 `%nemo credits --add 1000` 充值：它只是本机上的替身，不会扣费。"
    ),
    "not_connected": (
        "尚未连接。运行 `%nemo connect --local` 使用内置模拟器离线工作，或运行 `%nemo connect` "
        "使用 NemoVideo 云端（设置 NEMO_TOKEN 以使用你的账户）。"
    ),
    "export_stopped": (
        "已停止等待渲染；服务器可能仍会完成（导出不消耗积分）。再次运行 `%nemo export` 重新导出。\n"
    ),
    "extras_stopped": "已停止显示结果；这一轮本身已完成。运行 `%nemo status` 查看时间线。\n",
    "still_connected": "仍连接到 {backend}；会话保留（`--new` 重新开始）。\n",
    "started_local": "已启动本地模拟器；已连接到 {url}。\n",
    "connected": "已连接到 {url}{token}。\n",
    "token_anonymous": "（匿名令牌）",
    "token_given": "（你的 NEMO_TOKEN）",
    "backend_local": "本地模拟器（{url}）",
    "backend_machine": "本机上的服务器（{url}）",
    "backend_cloud": "NemoVideo（{url}）",
    "backend_none": "没有后端",
    "footer_local": "NemoVideo · 本地模拟器",
    "footer_machine": "NemoVideo · 本机上的服务器",
    "footer_cloud": "NemoVideo",
    "recovered": "（连接中断；以下是会话中的结果。）\n",
    "unchanged": "代理没有回复；草稿没有变化。\n",
    "see_tracks": "查看时间线：`%nemo tracks`。\n",
    "see_credits": "查看积分：`%nemo credits`。\n",
    "ready_to_export": "可以导出了：运行 `%nemo export{option}` 渲染 MP4。\n",
    "added_credits": "已在本地模拟器上添加 {amount} 积分：可用 {available}。\n",
    "credits": "积分：可用 {available}，运行中的任务冻结 {frozen}，共 {total}。\n",
    "uploaded": "已上传 {what}。\n",
    "unchanged_export": (
        "自 {path} 以来时间线没有变化；再次显示它（`%nemo export --again` 重新渲染）。\n"
    ),
    "saved": "已保存 {path}\n",
    "no_turns": "会话 '{session}' 还没有对话。\n",
    "turn_you": "{number}. 你：{text}\n",
    "turn_nemo": "   nemo：{text}\n",
    "no_text": "（没有文字；草稿有 {count} 处变化）",
    "no_sessions": "还没有会话；第一个 %%nemo 单元格会开始 'main'。\n",
    "session_line": "{name}：{count} 轮对话（id {id}）\n",
    "answer_hint": "在下一个 %%nemo{option} 单元格中回答。",
    "answer_hint_options": (
        "在下一个 %%nemo{option} 单元格中用选项编号或你自己的话回答，"
        "例如 `%%nemo{option}` 然后 `{example}`。"
    ),
    "rendering": "正在渲染",
    "changes_title": "草稿的变化",
    "still_working": "仍在处理…（已过 {minutes} 分钟，无需操作）",
    "recovering": "连接中断；正在查看会话状态，不会重新发送…",
    "answering": "· 回答：{label}",
    "unknown_changes": "时间线的变化未知：无法读取会话状态。",
    "streamed_timeline": "无法读取服务器的会话状态；这是本会话各轮流式传来的时间线。",
    "claim_label": "在 NemoVideo 中认领此项目",
    "claim_local": "由本地模拟器签发，不会打开真实的 NemoVideo 项目",
    "claim_machine": "由本机上的服务器签发，不会打开真实的 NemoVideo 项目",
    "claim_cloud": "在 NemoVideo 中打开此项目；链接 7 天内有效",
    "no_claim": "这次没有认领链接：{reason}",
    "replaced": (
        "服务器上找不到会话 {old}（已过期或被删除）；"
        "工作在新会话 {new} 中继续，新会话没有之前的时间线。"
    ),
}


def say(key: str, language: str = "en", **values: object) -> str:
    """The phrase ``key`` in ``language`` (``"zh"`` or ``"en"``) with ``values`` filled in."""
    table = _ZH if language == "zh" else _EN
    return table[key].format(**values) if values else table[key]
