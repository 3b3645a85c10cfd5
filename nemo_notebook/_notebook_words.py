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
    "backend_replay": "the cassette {path} (replayed{local})",
    "replay_local": ", as the local emulator",
    "recording": (
        "Recording every exchange into {path} (no token or client id is written). "
        "Re-run this notebook offline with `%nemo connect{local} --replay {path}`.\n"
    ),
    "replaying": (
        "Replaying {path}{local}: every answer comes from the cassette, nothing goes to the "
        "network and no credits are spent.\n"
    ),
    "footer_local": "NemoVideo · local emulator",
    "footer_machine": "NemoVideo · a server on this machine",
    "footer_cloud": "NemoVideo",
    "footer_replayed": " · replayed",
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
    "background_started": (
        "Working in the background as job {job}: other cells can run meanwhile. "
        "`%nemo jobs` lists it; `%nemo attach {job}` waits for it.\n"
    ),
    "background_failed": "Job {job} failed: {error}\n",
    "session_busy": (
        "A turn is already running in session '{session}' (job {job}). Wait for it with "
        "`%nemo attach {job}`, or use another session with `--session NAME`."
    ),
    "reopened": "Reopened {count} session{plural} of this folder: {names}.\n",
    "unfinished": (
        "Left unfinished: {jobs}. `%nemo attach` waits for them and delivers what they made.\n"
    ),
    "kind_turn": "turn",
    "kind_export": "export",
    "kind_row": "batch row",
    "job_ref": "{kind} {id} ({session}, {status})",
    "budget_spent": (
        "The credit budget of {budget} is used up ({spent} spent in this kernel); nothing was "
        "sent. Raise it with `%nemo budget N` or lift it with `%nemo budget off`."
    ),
    "budget_batch": (
        "This batch would spend about {estimate} credits ({rows} rows at ~{each}), more than "
        "the {remaining} left in the budget; nothing was sent. Add --yes to start it anyway "
        "(no row starts once the budget is used up), or raise it with `%nemo budget N`."
    ),
    "budget_none": (
        "No credit budget; this kernel spent {spent} credits. Set one with `%nemo budget N`.\n"
    ),
    "budget_show": "Budget: {budget} credits; this kernel spent {spent}, {remaining} left.\n",
    "spent": "{credits} credits",
    "spent_recorded": "{credits} credits when recorded",
    "nothing_unfinished": "Nothing is left unfinished in this folder.\n",
    "no_such_job": "There is no job {id} in this folder's ledger; `%nemo jobs` lists them.",
    "waiting_for": "Waiting for {kind} {id}…\n",
    "job_finished": "{Kind} {id}: {status}.\n",
    "turn_in_flight": (
        "Turn {id} was in flight when its kernel stopped; reading the session's state to see "
        "what it did (the message is never sent again)…\n"
    ),
    "turn_state_unknown": (
        "Turn {id}: what the session held before it is unknown; this is its timeline now.\n"
    ),
    "export_never_sent": "Export {id} was never submitted; run `%nemo export` again.\n",
    "row_elsewhere": (
        "Job {id} is a row of a batch: run the same `%nemo batch` again to continue it.\n"
    ),
    "other_backend": "Job {id} ran on {backend}; connect to it first to attach.\n",
    "no_jobs": "No jobs recorded in this folder yet.\n",
    "batch_plan": (
        "Batch of {rows} rows ({todo} to run, about {estimate} credits), {concurrency} at a "
        "time; videos go to {folder}/\n"
    ),
    "batch_done": (
        "Batch {batch}: {completed} completed, {failed} failed, {skipped} skipped · "
        "{credits} credits · videos in {folder}/\n"
    ),
    "batch_bar": "Batch",
    "no_upload_file": "No such file to upload: {files}",
    "say_which_file": "Say which file to upload: `%nemo upload PATH|URL`.",
    "empty_message": "The message is empty: write it in the cell body under %%nemo.",
    "image_skipped": "A generated image was skipped: {problem}.",
    "image_unfetched": "Could not fetch a generated image: {error}",
    "add_local_only": (
        "`%nemo credits --add` tops up the local emulator only; run `%nemo connect --local` "
        "first. Cloud credits come from your NemoVideo account."
    ),
    "no_account": "The local emulator did not say which account this is.",
    "no_emulator_replaying": (
        "No emulator runs here: this notebook replays the cassette {path}. To work with a live "
        "one, `%nemo connect --local`."
    ),
    "no_local_emulator": (
        "No local emulator in this notebook: run `%nemo connect --local` first, or start one "
        "yourself with `nemo_notebook.emulator.start()`."
    ),
    "still_running_here": (
        "Job {job} is still running on this connection; wait for it with `%nemo attach {job}` "
        "before connecting elsewhere."
    ),
    "batch_unreadable": "Cannot read the batch file: {error}",
    "batch_empty": "{name} has no rows under its header.",
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
    "backend_replay": "录制文件 {path}（回放{local}）",
    "replay_local": "，作为本地模拟器",
    "recording": (
        "正在把每次请求与应答录制到 {path}（不写入令牌和客户端 ID）。"
        "之后可用 `%nemo connect{local} --replay {path}` 离线重跑此笔记本。\n"
    ),
    "replaying": "正在回放 {path}{local}：所有应答都来自录制文件，不访问网络，也不消耗积分。\n",
    "footer_local": "NemoVideo · 本地模拟器",
    "footer_machine": "NemoVideo · 本机上的服务器",
    "footer_cloud": "NemoVideo",
    "footer_replayed": " · 回放",
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
    "background_started": (
        "已作为任务 {job} 在后台运行：其他单元格可以同时运行。"
        "`%nemo jobs` 列出它；`%nemo attach {job}` 等待它完成。\n"
    ),
    "background_failed": "任务 {job} 失败：{error}\n",
    "session_busy": (
        "会话 '{session}' 中已有一轮对话在运行（任务 {job}）。用 `%nemo attach {job}` 等待它，"
        "或用 `--session NAME` 使用另一个会话。"
    ),
    "reopened": "已重新打开此文件夹的 {count} 个会话：{names}。\n",
    "unfinished": "尚未完成：{jobs}。`%nemo attach` 会等待它们并交付结果。\n",
    "kind_turn": "对话",
    "kind_export": "导出",
    "kind_row": "批量行",
    "job_ref": "{kind} {id}（{session}，{status}）",
    "budget_spent": (
        "积分预算 {budget} 已用完（本内核已花费 {spent}）；没有发送任何内容。"
        "用 `%nemo budget N` 提高预算，或用 `%nemo budget off` 取消预算。"
    ),
    "budget_batch": (
        "这批任务约需 {estimate} 积分（{rows} 行，每行约 {each}），超过预算剩余的 {remaining}；"
        "没有发送任何内容。加上 --yes 仍然开始（预算用完后不再开始新行），"
        "或用 `%nemo budget N` 提高预算。"
    ),
    "budget_none": "没有积分预算；本内核已花费 {spent} 积分。用 `%nemo budget N` 设置预算。\n",
    "budget_show": "预算：{budget} 积分；本内核已花费 {spent}，剩余 {remaining}。\n",
    "spent": "{credits} 积分",
    "spent_recorded": "录制时 {credits} 积分",
    "nothing_unfinished": "此文件夹中没有未完成的任务。\n",
    "no_such_job": "此文件夹的任务记录中没有任务 {id}；`%nemo jobs` 列出所有任务。",
    "waiting_for": "正在等待{kind} {id}…\n",
    "job_finished": "{Kind} {id}：{status}。\n",
    "turn_in_flight": (
        "内核停止时对话 {id} 仍在进行；正在读取会话状态查看它做了什么（消息不会重新发送）…\n"
    ),
    "turn_state_unknown": "对话 {id}：之前的会话状态未知；这是它现在的时间线。\n",
    "export_never_sent": "导出 {id} 从未提交；请再次运行 `%nemo export`。\n",
    "row_elsewhere": "任务 {id} 是批量任务中的一行：再次运行同一个 `%nemo batch` 以继续。\n",
    "other_backend": "任务 {id} 在 {backend} 上运行；请先连接到它再等待。\n",
    "no_jobs": "此文件夹中还没有任务记录。\n",
    "batch_plan": (
        "批量任务共 {rows} 行（待运行 {todo} 行，约 {estimate} 积分），每次 {concurrency} 行；"
        "视频保存到 {folder}/\n"
    ),
    "batch_done": (
        "批量任务 {batch}：完成 {completed}，失败 {failed}，跳过 {skipped} · "
        "{credits} 积分 · 视频在 {folder}/\n"
    ),
    "batch_bar": "批量",
    "no_upload_file": "没有要上传的文件：{files}",
    "say_which_file": "请说明要上传哪个文件：`%nemo upload PATH|URL`。",
    "empty_message": "消息是空的：请在 %%nemo 下面的单元格正文中写出消息。",
    "image_skipped": "跳过了一张生成的图片：{problem}。",
    "image_unfetched": "无法获取一张生成的图片：{error}",
    "add_local_only": (
        "`%nemo credits --add` 只为本地模拟器充值；请先运行 `%nemo connect --local`。"
        "云端积分来自你的 NemoVideo 账户。"
    ),
    "no_account": "本地模拟器没有说明这是哪个账户。",
    "no_emulator_replaying": (
        "这里没有运行模拟器：此笔记本正在回放录制文件 {path}。要使用真实的模拟器，请运行 "
        "`%nemo connect --local`。"
    ),
    "no_local_emulator": (
        "此笔记本中没有本地模拟器：请先运行 `%nemo connect --local`，"
        "或自己用 `nemo_notebook.emulator.start()` 启动一个。"
    ),
    "still_running_here": (
        "任务 {job} 仍在此连接上运行；连接到别处之前，请用 `%nemo attach {job}` 等待它完成。"
    ),
    "batch_unreadable": "无法读取批量任务文件：{error}",
    "batch_empty": "{name} 的表头下面没有任何行。",
}


def say(key: str, language: str = "en", **values: object) -> str:
    """The phrase ``key`` in ``language`` (``"zh"`` or ``"en"``) with ``values`` filled in."""
    table = _ZH if language == "zh" else _EN
    return table[key].format(**values) if values else table[key]
