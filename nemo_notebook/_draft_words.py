"""How the client writes a timeline and its changes, in English and Chinese: the track
summary people see (PROTOCOL §6) and the lines of a draft diff. Pure data; the session's
language picks the words (:func:`~nemo_notebook._protocol.words_language`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DraftWords", "draft_words"]


@dataclass(frozen=True)
class DraftWords:
    """The templates of one language (``str.format`` fields in braces)."""

    timeline: str  # {count} {noun}
    colon: str
    track_noun: tuple[str, str]  # one track, several tracks
    item: str  # {number} {kind} {description}
    empty: str
    more: str  # {count}
    list_sep: str
    detail_sep: str
    named: str  # {name} {details}
    unnamed: str  # {details}
    seconds: str  # {value}
    default_volume: str
    kinds: dict[str, str]  # the English default kind -> this language's
    other_track: str  # {kind}
    added: str  # {kind}
    added_what: str  # {kind} {what}
    removed: str  # {kind}
    removed_what: str  # {kind} {what}
    more_changes: tuple[str, str]  # {count}: one, several
    duration: str  # {old} {new}
    replaced: str  # {kind} {old} {new}
    renamed: str  # {kind} {old} {new}
    text: str  # {kind} {old} {new}
    volume: str  # {kind} {old} {new}
    fade: dict[str, str]  # "fade-in" / "fade-out" -> {kind} {old} {new}
    style: str  # {kind} {keys}
    timing: dict[str, str]  # "trimmed" / "moved" -> {kind} {subject}{old} {new}
    in_point: str  # {kind} {subject}{old} {new}
    canvas: str  # {old} {new}
    frame_rate: str  # {old} {new}
    project_title: str  # {old} {new}

    def kind(self, english: str) -> str:
        return self.kinds.get(english, english)


EN = DraftWords(
    timeline="Timeline ({count} {noun})",
    colon=": ",
    track_noun=("track", "tracks"),
    item="{number}. {kind}: {description}",
    empty="empty",
    more="+{count} more",
    list_sep=", ",
    detail_sep=", ",
    named="{name} ({details})",
    unnamed="({details})",
    seconds="{value}s",
    default_volume="default",
    kinds={},
    other_track="Track {kind}",
    added="{kind} added",
    added_what="{kind} added: {what}",
    removed="{kind} removed",
    removed_what="{kind} removed: {what}",
    more_changes=("… {count} more change", "… {count} more changes"),
    duration="Duration {old} -> {new}",
    replaced="{kind} replaced: {old} -> {new}",
    renamed="{kind} renamed: '{old}' -> '{new}'",
    text="{kind} text '{old}' -> '{new}'",
    volume="{kind} volume {old} -> {new}",
    fade={"fade-in": "{kind} fade-in {old} -> {new}", "fade-out": "{kind} fade-out {old} -> {new}"},
    style="{kind} style changed: {keys}",
    timing={
        "trimmed": "{kind} trimmed: {subject}{old} -> {new}",
        "moved": "{kind} moved: {subject}{old} -> {new}",
    },
    in_point="{kind} trimmed: {subject}in-point {old} -> {new}",
    canvas="Canvas {old} -> {new}",
    frame_rate="Frame rate {old} -> {new} fps",
    project_title="Project title '{old}' -> '{new}'",
)

ZH = DraftWords(
    timeline="时间线（{count} {noun}）",
    colon="：",
    track_noun=("条轨道", "条轨道"),
    item="{number}. {kind}：{description}",
    empty="空",
    more="另有 {count} 段",
    list_sep="，",
    detail_sep="，",
    named="{name}（{details}）",
    unnamed="（{details}）",
    seconds="{value}秒",
    default_volume="默认",
    kinds={
        "Video": "视频",
        "BGM": "背景音乐",
        "Music": "音乐",
        "Title": "标题",
        "Titles": "标题",
        "Captions": "字幕",
        "Subtitles": "字幕",
        "Track": "轨道",
    },
    other_track="轨道 {kind}",
    added="新增{kind}",
    added_what="新增{kind}：{what}",
    removed="移除{kind}",
    removed_what="移除{kind}：{what}",
    more_changes=("… 另有 {count} 处变化", "… 另有 {count} 处变化"),
    duration="时长 {old} -> {new}",
    replaced="{kind}替换：{old} -> {new}",
    renamed="{kind}改名：'{old}' -> '{new}'",
    text="{kind}文字 '{old}' -> '{new}'",
    volume="{kind}音量 {old} -> {new}",
    fade={"fade-in": "{kind}淡入 {old} -> {new}", "fade-out": "{kind}淡出 {old} -> {new}"},
    style="{kind}样式变化：{keys}",
    timing={
        "trimmed": "{kind}裁剪：{subject}{old} -> {new}",
        "moved": "{kind}移动：{subject}{old} -> {new}",
    },
    in_point="{kind}裁剪：{subject}入点 {old} -> {new}",
    canvas="画布 {old} -> {new}",
    frame_rate="帧率 {old} -> {new} fps",
    project_title="项目标题 '{old}' -> '{new}'",
)


def draft_words(language: str = "en") -> DraftWords:
    """The words of ``language`` (``"zh"``: Chinese; anything else: English)."""
    return ZH if language == "zh" else EN
