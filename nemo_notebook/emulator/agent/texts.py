"""The agent's wording in English and Chinese, and how it writes times, spans and volumes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._draft import format_range, format_seconds

TEMPORARY_ISSUE = {
    "en": "I encountered a temporary issue, but your changes were saved.",
    "zh": "我遇到了一个临时问题，但您的更改已保存。",
}
GUI_PHRASES = {
    "en": (
        "Click the Export button to download your video.",
        "You can preview it in the timeline.",
        "Open the timeline panel to see all tracks.",
    ),
    "zh": ("点击导出按钮即可下载视频。", "您可以在时间轴中预览。", "打开时间轴面板查看所有轨道。"),
}
SCENE_SHOTS = {"en": ("wide shot", "close view", "closing shot"), "zh": ("全景", "近景", "结尾")}
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "image_done": (
            "Here is your image of {label} ({width}x{height}): {scene}. It was drawn by the "
            "emulator's procedural scene generator, not by a neural model."
        ),
        "video_done": (
            "Here is your {seconds} video of {label}: {count} moving scenes ({shots}), "
            "{width}x{height}. {scene}. The footage is procedural, made by the emulator's "
            "scene generator."
        ),
        "stage_two": (
            'I added {mood} background music at {volume} and the title "{title}" ({span}). '
            "The timeline now has {tracks} tracks."
        ),
        "music_added": "Added {mood} background music at {volume}, spanning {span}.",
        "music_replaced": "Replaced the background music with {mood} at {volume} ({span}).",
        "title_added": 'Added the title "{title}" ({span}).',
        "title_replaced": 'The title now reads "{title}" ({span}).',
        "title_restyled": 'Updated the style of the title "{title}" ({span}).',
        "captions_added": "Added {count} caption(s): {items}.",
        "aspect_set": "The canvas is now {ratio} ({width}x{height}).",
        "aspect_same": "The canvas is already {ratio} ({width}x{height}).",
        "duration_set": "The video is now {seconds} long.",
        "trimmed_head": "Cut the first {cut}; the video is now {seconds} long.",
        "trimmed_tail": "Cut the last {cut}; the video is now {seconds} long.",
        "removed": "Removed {what}.",
        "volume_set": "The background music volume is now {volume} (was {before}).",
        "nothing_to_edit": (
            "There is nothing to edit yet. Generate something first, for example "
            '"generate a realistic image of a futuristic city at night".'
        ),
        "no_music": 'There is no background music yet; try "add lo-fi background music".',
        "no_target": "I could not find {what} to remove.",
        "need_text": (
            "What should it say? For example: add the title 'Urban Dreams' for 3 seconds, "
            "or add a caption 'Hello' at 2s."
        ),
        "need_seconds": "How long should it be? For example: make it 15 seconds.",
        "bad_duration": "Please choose a length between 1 second and 5 minutes.",
        "cut_too_much": "The video is only {seconds} long, so I cannot cut {cut}.",
        "upload_first": (
            "Please upload an image first (PNG, JPG, WebP or GIF), then ask me to explain it. "
            "Nothing was charged."
        ),
        "explain_done": "{explanation} I also made an explainer video ({seconds}) of the findings.",
        "export": (
            "Your timeline is ready. Click the Export button to download your video; "
            "exporting costs no credits."
        ),
        "export_empty": (
            "There is nothing to export yet. Generate an image or a video first, then click "
            "the Export button."
        ),
        "credits": (
            "You can check your account billing page for your credit balance. Generating an "
            "image costs {image} credits, a video {video}, music {music}, a title {text} and "
            "an edit {edit}; exporting is free."
        ),
        "status": "{summary}. You can preview it in the timeline.",
        "status_empty": "The timeline is empty. Generate an image or a video to start.",
        "help": (
            "I am the NemoVideo agent (running in the local emulator). I can:\n"
            '- generate an image: "generate a realistic image of a futuristic city at night"\n'
            '- generate a short video: "make a 10 second video of waves on a beach at sunset"\n'
            '- explain an uploaded image: "explain what this AI image is and how it was made"\n'
            '- add music: "add lo-fi background music at 35%"\n'
            "- add a title or captions: \"add the title 'Urban Dreams' for 3 seconds\", "
            "\"add a caption 'Hello' at 2s\"\n"
            '- change the format or length: "make it vertical", "make it 15 seconds", '
            '"trim to 6 seconds", "cut the first 2 seconds"\n'
            '- remove or adjust: "remove the music", "set the music volume to 50%"\n'
            "Images and footage here are procedural (made by the emulator's scene generator)."
        ),
    },
    "zh": {
        "image_done": (
            "这是您要的{label}图片（{width}x{height}）：{scene}。它由模拟器的程序化场景生成器"
            "绘制，并非神经网络模型生成。"
        ),
        "video_done": (
            "这是您要的{seconds}{label}视频：{count}个动态镜头（{shots}），{width}x{height}。"
            "{scene}。画面由模拟器的程序化场景生成器制作。"
        ),
        "stage_two": (
            "已添加{mood}背景音乐（音量{volume}）和标题“{title}”（{span}）。时间轴现在有{tracks}条轨道。"
        ),
        "music_added": "已添加{mood}背景音乐，音量{volume}，覆盖{span}。",
        "music_replaced": "已将背景音乐更换为{mood}，音量{volume}（{span}）。",
        "title_added": "已添加标题“{title}”（{span}）。",
        "title_replaced": "标题已改为“{title}”（{span}）。",
        "title_restyled": "已更新标题“{title}”的样式（{span}）。",
        "captions_added": "已添加{count}条字幕：{items}。",
        "aspect_set": "画布已改为{ratio}（{width}x{height}）。",
        "aspect_same": "画布已经是{ratio}（{width}x{height}）。",
        "duration_set": "视频时长已改为{seconds}。",
        "trimmed_head": "已剪掉开头{cut}，视频现在长{seconds}。",
        "trimmed_tail": "已剪掉结尾{cut}，视频现在长{seconds}。",
        "removed": "已删除{what}。",
        "volume_set": "背景音乐音量已调为{volume}（原为{before}）。",
        "nothing_to_edit": "还没有可以编辑的内容。请先生成内容，例如“生成一张海边日落的图片”。",
        "no_music": "还没有背景音乐，可以说“添加背景音乐”。",
        "no_target": "没有找到要删除的{what}。",
        "need_text": "要显示什么文字？例如：添加标题“城市之梦”，或在2秒添加字幕“你好”。",
        "need_seconds": "要多长？例如：改成15秒。",
        "bad_duration": "请选择1秒到5分钟之间的时长。",
        "cut_too_much": "视频只有{seconds}，无法剪掉{cut}。",
        "upload_first": "请先上传一张图片（PNG、JPG、WebP或GIF），再让我解释它。本次未扣积分。",
        "explain_done": "{explanation}我还把这些发现做成了一段{seconds}的讲解视频。",
        "export": "时间轴已就绪。点击导出按钮即可下载视频，导出不消耗积分。",
        "export_empty": "还没有可以导出的内容。请先生成图片或视频，再点击导出按钮。",
        "credits": (
            "您可以在账户账单页面查看积分余额。生成图片{image}积分，视频{video}积分，"
            "音乐{music}积分，标题{text}积分，编辑{edit}积分；导出免费。"
        ),
        "status": "{summary}。您可以在时间轴中预览。",
        "status_empty": "时间轴是空的。先生成一张图片或一段视频吧。",
        "help": (
            "我是NemoVideo助手（运行在本地模拟器中）。我可以：\n"
            "- 生成图片：“生成一张海边日落的图片”\n"
            "- 生成短视频：“生成一个10秒的城市夜景视频”\n"
            "- 解释上传的图片：“解释这张图片”\n"
            "- 添加音乐：“添加背景音乐”\n"
            "- 添加标题或字幕：“添加标题「城市之梦」”，“在2秒添加字幕「你好」”\n"
            "- 修改画幅或时长：“改成竖屏”，“改成15秒”，“剪掉前2秒”\n"
            "- 删除或调整：“删除音乐”，“把音乐音量调到50%”\n"
            "这里的图片和画面都是程序化生成的（由模拟器的场景生成器制作）。"
        ),
    },
}


def wording(lang: str, key: str, **values: Any) -> str:
    return TEXTS[lang][key].format(**values)


def seconds_text(ms: int, lang: str = "en") -> str:
    """``2500`` -> ``"2.5s"`` (``"2.5秒"`` in Chinese)."""
    return format_seconds(ms) + ("秒" if lang == "zh" else "s")


def span_text(start_ms: int, duration_ms: int) -> str:
    """``(0, 3000)`` -> ``"0-3s"``, as in the track summary."""
    return format_range(start_ms, start_ms + duration_ms)


def percent_text(volume: float) -> str:
    return f"{round(volume * 100)}%"


def quoted_span(text: str, start: int, duration: int, lang: str) -> str:
    span = span_text(start, duration)
    return f"“{text}”（{span}）" if lang == "zh" else f'"{text}" ({span})'


def volume_question(lang: str) -> str:
    if lang == "zh":
        return "要调到多大音量？例如：把音乐音量调到50%。"
    return "Which volume would you like? For example: set the music volume to 50%."


_TIME_ZH = {"night": "夜晚", "dusk": "黄昏", "sunset": "日落", "dawn": "黎明", "day": "白天"}
_ELEMENT_ZH = (
    ("moon", "月亮"),
    ("star", "星星"),
    ("sun", "太阳"),
    ("cloud", "云"),
    ("mountain", "群山"),
    ("tree", "树林"),
    ("city", "城市天际线"),
    ("water", "水面倒影"),
    ("beach", "沙滩"),
)


def scene_text(description: object, lang: str) -> str:
    """What the scene generator drew, in one phrase (from scenes.describe_scene)."""
    if not isinstance(description, Mapping):
        return ""
    elements = description.get("elements")
    names = [str(e) for e in elements] if isinstance(elements, list | tuple) else []
    time_of_day = str(description.get("time_of_day") or "")
    if lang == "zh":
        found = [zh for en, zh in _ELEMENT_ZH if any(en in name for name in names)]
        time_zh = _TIME_ZH.get(time_of_day, time_of_day)
        return f"一幅程序化的{time_zh}场景" + (f"，包含{'、'.join(found)}" if found else "")
    if description.get("description"):
        return str(description["description"])
    return f"a procedural {time_of_day or 'landscape'} scene" + (
        f" with {', '.join(names)}" if names else ""
    )
