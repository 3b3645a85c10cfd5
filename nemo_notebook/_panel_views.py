"""The chat panel's words in English and Chinese (one table, chosen by the panel's language)
and its HTML views made in Python: the timeline card (coloured bars on a time axis and a
compact table) and the claim link. Everything that comes from the backend is escaped here.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from nemo_notebook._draft import CAPTION_SEGMENTS, TRACK_AUDIO, TRACK_TEXT, TRACK_VIDEO, Draft
from nemo_notebook._draft import format_seconds as _seconds
from nemo_notebook._draft_words import DraftWords, draft_words

__all__ = ["WORDS", "Words", "claim_html", "is_chinese", "timeline_html", "words_for"]

_EN: dict[str, str] = {
    "brand": "NemoVideo",
    "you": "You",
    "agent": "NemoVideo",
    "send": "Send",
    "send_title": "Send (Enter). Shift+Enter starts a new line.",
    "stop": "Stop",
    "stop_title": "Stop listening to this reply; nothing is sent again.",
    "export": "Export",
    "export_title": "Render the timeline to an MP4 and save it next to this notebook.",
    "placeholder": "Describe what to make or change…  (Enter sends, Shift+Enter: new line)",
    "empty_title": "What shall we make?",
    "empty_hint": "Ask for an image or a video, then refine it here: music, titles, length.",
    "example_1": "Generate a realistic image of a mountain lake at sunrise",
    "example_2": "Make a 5 second video of a city at night",
    "example_3": "Add lo-fi music at 35%",
    "session": "session {id}",
    "credits": "{n} credits",
    "credits_unknown": "credits: ?",
    "credits_title": "Credits available (reserved by running work: {frozen})",
    "timeline": "Timeline",
    "timeline_meta_one": "1 track · {duration} s",
    "timeline_meta": "{n} tracks · {duration} s",
    "timeline_empty": "The timeline is empty.",
    "table": "Table",
    "col_track": "#",
    "col_kind": "Track",
    "col_label": "Content",
    "col_time": "Time",
    "col_volume": "Volume",
    "col_source": "Source",
    "more_rows": "… {n} more rows",
    "more_row": "… 1 more row",
    "more_lanes": "+{n} more tracks (see the table)",
    "latest_export": "Latest export",
    "download": "Download",
    "open_image": "Open full size",
    "close": "Close",
    "answer_hint": "Pick an answer or type your own:",
    "ready": "Ready.",
    "type_first": "Type a message first.",
    "busy": "Still working on the last request; it takes a moment.",
    "busy_turn": "Still working on the last request; press Stop to stop listening to it.",
    "busy_export": "An export is running; it cannot be stopped and finishes on the server.",
    "working": "Working…",
    "done": "Done.",
    "stopped": (
        "Stopped. Nothing was re-sent; the server may still finish this turn. "
        "Show the timeline in a moment to see what it did."
    ),
    "stopped_note": "(stopped)",
    "nothing_to_stop": "Nothing to stop.",
    "export_cannot_stop": "An export cannot be stopped; it finishes on the server.",
    "rendering": "Rendering… {percent}%",
    "saved": "Saved {name}.",
    "exported_note": "Exported {name}.",
    "question": "The agent asked a question: pick an answer or type one.",
    "question_open": "The agent asked a question: type your answer.",
    "credits_updated": "Credits updated.",
    "upload_which": "Say which file or URL to upload, e.g. “upload photo.png”.",
    "uploaded": "Uploaded {names}.",
    "uploading": "Uploading…",
    "connected": "Connected to {url}.",
    "answering": "answering: {label}",
    "unchanged": "the draft did not change",
    "changes_title": "What changed",
    "still_working": "still working… ({minutes} min so far, nothing needs doing)",
    "recovering": "the stream was interrupted; checking the session state instead of re-sending…",
    "too_large": "Saved {name}; it is too large to show here, open it from the file browser.",
    "cannot_play": "Saved {name}; this format does not play here, open it from the file browser.",
    "error": "Error: {message}",
    "action_export": "Export video",
    "action_status": "Show timeline",
    "action_credits": "Check credits",
    "reading_timeline": "Reading the timeline…",
    "claim": "Claim this project in NemoVideo",
    "static_note": "A saved copy of the NemoVideo chat panel (the live panel runs in Jupyter).",
    "empty_log": "No messages yet.",
}

_ZH: dict[str, str] = {
    "brand": "NemoVideo",
    "you": "你",
    "agent": "NemoVideo",
    "send": "发送",
    "send_title": "发送（Enter）。Shift+Enter 换行。",
    "stop": "停止",
    "stop_title": "停止接收这条回复；不会重新发送任何内容。",
    "export": "导出",
    "export_title": "把时间线渲染成 MP4，并保存在这个笔记本旁边。",
    "placeholder": "描述你想生成或修改的内容…（Enter 发送，Shift+Enter 换行）",
    "empty_title": "想做点什么？",
    "empty_hint": "先让它生成图片或视频，再在这里继续调整：音乐、标题、时长。",
    "example_1": "生成一张日出时山间湖泊的写实图片",
    "example_2": "做一个 5 秒的城市夜景视频",
    "example_3": "添加 35% 音量的 lo-fi 音乐",
    "session": "会话 {id}",
    "credits": "{n} 积分",
    "credits_unknown": "积分：?",
    "credits_title": "可用积分（进行中的任务占用：{frozen}）",
    "timeline": "时间线",
    "timeline_meta_one": "1 条轨道 · {duration} 秒",
    "timeline_meta": "{n} 条轨道 · {duration} 秒",
    "timeline_empty": "时间线是空的。",
    "table": "表格",
    "col_track": "#",
    "col_kind": "轨道",
    "col_label": "内容",
    "col_time": "时间",
    "col_volume": "音量",
    "col_source": "来源",
    "more_rows": "… 还有 {n} 行",
    "more_row": "… 还有 1 行",
    "more_lanes": "另有 {n} 条轨道（见表格）",
    "latest_export": "最新导出",
    "download": "下载",
    "open_image": "查看原图",
    "close": "关闭",
    "answer_hint": "选择一个答案，或自己输入：",
    "ready": "就绪。",
    "type_first": "请先输入消息。",
    "busy": "上一个请求仍在处理中，请稍候。",
    "busy_turn": "上一个请求仍在处理中；按“停止”可以停止接收。",
    "busy_export": "正在导出；导出无法停止，会在服务器上完成。",
    "working": "处理中…",
    "done": "完成。",
    "stopped": "已停止。没有重新发送；服务器可能仍会完成这一轮。稍后查看时间线即可知道它做了什么。",
    "stopped_note": "（已停止）",
    "nothing_to_stop": "没有可以停止的任务。",
    "export_cannot_stop": "导出无法停止，会在服务器上完成。",
    "rendering": "渲染中… {percent}%",
    "saved": "已保存 {name}。",
    "exported_note": "已导出 {name}。",
    "question": "助手提了一个问题：选择一个答案，或自己输入。",
    "question_open": "助手提了一个问题：请输入你的回答。",
    "credits_updated": "积分已更新。",
    "upload_which": "请说明要上传的文件或网址，例如“上传 photo.png”。",
    "uploaded": "已上传 {names}。",
    "uploading": "上传中…",
    "connected": "已连接到 {url}。",
    "answering": "回答：{label}",
    "unchanged": "草稿没有变化",
    "changes_title": "改动",
    "still_working": "仍在处理中…（已 {minutes} 分钟，无需操作）",
    "recovering": "连接中断；正在读取会话状态，不会重新发送…",
    "too_large": "已保存 {name}；文件太大，无法在这里显示，请在文件浏览器中打开。",
    "cannot_play": "已保存 {name}；这种格式无法在这里播放，请在文件浏览器中打开。",
    "error": "出错：{message}",
    "action_export": "导出视频",
    "action_status": "查看时间线",
    "action_credits": "查看积分",
    "reading_timeline": "正在读取时间线…",
    "claim": "在 NemoVideo 中认领这个项目",
    "static_note": "NemoVideo 聊天面板的保存副本（实时面板在 Jupyter 中运行）。",
    "empty_log": "还没有消息。",
}

WORDS = {"en": _EN, "zh": _ZH}


def is_chinese(language: str) -> bool:
    """``zh``, ``zh-CN``, ``zh_Hans``… choose Chinese; everything else English."""
    return language.strip().lower().replace("_", "-").split("-")[0] == "zh"


@dataclass(frozen=True)
class Words:
    """The panel's words in one language: ``words("saved", name="a.mp4")``."""

    language: str
    table: dict[str, str]

    def __call__(self, key: str, **values: Any) -> str:
        text = self.table.get(key) or _EN[key]
        return text.format(**values) if values else text

    def labels(self) -> dict[str, str]:
        """The labels the browser side shows (sent once, with the widget)."""
        return dict(self.table)


def words_for(language: str) -> Words:
    code = "zh" if is_chinese(language) else "en"
    return Words(code, WORDS[code])


# ----------------------------------------------------------------------------------- timeline

_KIND_CLASSES = {TRACK_VIDEO: "video", TRACK_AUDIO: "audio", TRACK_TEXT: "text"}
MAX_LANES = 8
MAX_BARS = 60  # bars drawn per lane; the table lists every segment (up to its row cap)
_LABEL_CHARS = 60
_SOURCE_CHARS = 28


def _cut(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


_TICK_STEPS_MS = (100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000)


def _ticks(total_ms: int, most: int = 6) -> list[tuple[float, str]]:
    """Axis labels at round seconds (0, 1, 2… or 0, 5, 10…), at most ``most`` of them."""
    step = next((s for s in _TICK_STEPS_MS if total_ms / s <= most - 1), None)
    step = step or max(total_ms // (most - 1), 1)
    return [(100.0 * at / total_ms, _seconds(at) + " s") for at in range(0, total_ms + 1, step)]


def timeline_html(draft: Draft, words: Words, *, max_rows: int | None) -> str:
    """The timeline card: a header (tracks, length, size), one lane of coloured bars per track
    on a shared time axis, and the compact table (time as a range, volume in %, the source's
    file name with its full URL on hover) under a disclosure, at most ``max_rows`` rows."""
    tracks = draft.tracks
    summary = draft.summary(max_segments=CAPTION_SEGMENTS, language=words.language)
    kinds = draft_words(words.language)
    total_ms = max(draft.duration_ms, *(track.end_ms for track in tracks), 1) if tracks else 1
    duration = _seconds(total_ms if tracks else 0)
    meta = (
        words("timeline_meta_one", duration=duration)
        if len(tracks) == 1
        else words("timeline_meta", n=len(tracks), duration=duration)
    )
    if draft.width and draft.height:
        meta += f" · {draft.width}×{draft.height}"
    head = (
        f"<div class='nemo-tl-head'><span class='nemo-tl-title'>{_esc(words('timeline'))}</span>"
        f"<span class='nemo-tl-meta'>{_esc(meta)}</span></div>"
    )
    if not tracks:
        empty = f"<div class='nemo-tl-empty'>{_esc(words('timeline_empty'))}</div>"
        return f"<div class='nemo-timeline' title='{_esc(summary)}'>{head}{empty}</div>"
    lanes = "".join(_lane(track, total_ms, kinds) for track in tracks[:MAX_LANES])
    if len(tracks) > MAX_LANES:
        more = words("more_lanes", n=len(tracks) - MAX_LANES)
        lanes += f"<div class='nemo-tl-more'>{_esc(more)}</div>"
    axis = "".join(
        f"<span style='left:{left:.1f}%'>{_esc(label)}</span>" for left, label in _ticks(total_ms)
    )
    picture = (
        f"<div class='nemo-tl-lanes'>{lanes}"
        f"<div class='nemo-tl-axis' aria-hidden='true'><div class='nemo-tl-axis-in'>{axis}</div>"
        "</div></div>"
    )
    table = _table(draft, words, kinds, summary, max_rows)
    return (
        f"<div class='nemo-timeline' data-tracks='{len(tracks)}'>{head}{picture}"
        f"<details class='nemo-tl-details'><summary>{_esc(words('table'))}</summary>{table}"
        "</details></div>"
    )


def _lane(track: Any, total_ms: int, kinds: DraftWords) -> str:
    kind = _KIND_CLASSES.get(track.type, "other")
    bars = []
    for segment in track.segments[:MAX_BARS]:
        left = 100.0 * min(segment.start_ms, total_ms) / total_ms
        width = max(100.0 * segment.duration_ms / total_ms, 0.6)
        width = min(width, 100.0 - left) if left < 100.0 else 0.6
        name = track.segment_name(segment) or ""
        tip = f"{name} ({segment.range_text})" if name else segment.range_text
        bars.append(
            f"<span class='nemo-tl-bar' style='left:{left:.2f}%;width:{width:.2f}%' "
            f"title='{_esc(_cut(tip, 200))}'>{_esc(_cut(name, 40))}</span>"
        )
    name = _esc(track.kind_in(kinds))
    return (
        f"<div class='nemo-tl-lane nemo-tl-{kind}'><span class='nemo-tl-name' title='{name}'>"
        f"{name}</span><div class='nemo-tl-track'>{''.join(bars)}</div></div>"
    )


def _table(
    draft: Draft, words: Words, kinds: DraftWords, summary: str, max_rows: int | None
) -> str:
    heads = ("col_track", "col_kind", "col_label", "col_time", "col_volume", "col_source")
    head = "".join(f"<th>{_esc(words(key))}</th>" for key in heads)
    rows: list[str] = []
    hidden = 0
    limit = None if max_rows is None else max(max_rows, 0)
    for number, track in enumerate(draft.tracks, 1):
        for segment in track.segments:
            if limit is not None and len(rows) >= limit:
                hidden += 1
                continue
            rows.append(_row(number, track, segment, kinds))
    more = ""
    if hidden:
        text = words("more_row") if hidden == 1 else words("more_rows", n=hidden)
        more = f"<div class='nemo-more-rows'>{_esc(text)}</div>"
    return (
        f"<table class='nemo-tl-table'><caption>{_esc(summary)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"
    )


def _row(number: int, track: Any, segment: Any, kinds: DraftWords) -> str:
    label = track.segment_name(segment) or ""
    start, end = _seconds(segment.start_ms), _seconds(segment.end_ms)
    volume = segment.volume
    volume_text = "" if volume is None else f"{round(volume * 100)}%"
    source = segment.src or ""
    short = _cut(segment.source_name or source, _SOURCE_CHARS) if source else ""
    cells = (
        f"<td>{number}</td>",
        f"<td>{_esc(track.kind_in(kinds))}</td>",
        f"<td title='{_esc(_cut(label, 500))}'>{_esc(_cut(label, _LABEL_CHARS))}</td>",
        f"<td class='nemo-num'>{start}–{end} s</td>",
        f"<td class='nemo-num'>{volume_text}</td>",
        f"<td title='{_esc(source[:2000])}'>{_esc(short)}</td>" if source else "<td></td>",
    )
    return "<tr>" + "".join(cells) + "</tr>"


# -------------------------------------------------------------------------------- claim link


def claim_html(url: str, note: str, words: Words) -> str:
    """The claim link (http(s) only; anything else shows as text) with its note."""
    label = _esc(words("claim"))
    note_html = f" <span class='nemo-claim-note'>{_esc(note)}</span>" if note else ""
    if not url.lower().startswith(("http://", "https://")):
        return f"<span>{label}: <code>{_esc(url)}</code></span>{note_html}"
    return (
        f"<a href='{_esc(url)}' target='_blank' rel='noopener noreferrer'>{label} ↗</a>{note_html}"
    )
