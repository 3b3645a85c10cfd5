"""Routing a person's words, translating the backend's GUI phrases, temporary issues."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_notebook import _gui_text
from nemo_notebook._gui_text import StreamTranslator, Translation, is_temporary_issue, translate_gui
from nemo_notebook._intents import Intent, Route, route

# ----------------------------------------------------------------------------------- route


@pytest.mark.parametrize(
    "message",
    [
        "export",
        "Export",
        "export the video",
        "export video",
        "Export the final video as MP4.",
        "download it please",
        "download the video",
        "Please download it!",
        "send me the video",
        "can you send me the final video?",
        "render",
        "save the video",
        "I'd like to export the video now",
        "导出",
        "导出视频",
        "请帮我导出视频",
        "把视频导出来吧",
        "下载",
        "下载视频。",
        "把视频发给我",
    ],
)
def test_export_requests(message: str) -> None:
    assert route(message) == Route(Intent.EXPORT)


@pytest.mark.parametrize(
    "message",
    [
        "credits",
        "my credits",
        "how many credits do I have",
        "How many credits do I have left?",
        "balance",
        "what's my balance",
        "check credits",
        "show my credit balance",
        "积分",
        "余额",
        "我还有多少积分",
        "查看余额",
        "剩余积分",
    ],
)
def test_credit_requests(message: str) -> None:
    assert route(message) == Route(Intent.CREDITS)


@pytest.mark.parametrize(
    "message",
    [
        "status",
        "Status?",
        "show tracks",
        "show the tracks",
        "show me the timeline",
        "timeline",
        "what's the status",
        "what's on the timeline",
        "preview in timeline",
        "状态",
        "查看状态",
        "显示轨道",
        "时间线",
        "当前状态",
    ],
)
def test_status_requests(message: str) -> None:
    assert route(message) == Route(Intent.STATUS)


@pytest.mark.parametrize(
    ("message", "argument"),
    [
        ("upload ~/photo.png", "~/photo.png"),
        ("upload https://x/y.jpg", "https://x/y.jpg"),
        ("Upload /data/clips/beach.mp4", "/data/clips/beach.mp4"),
        ("upload C:\\Users\\me\\song.mp3", "C:\\Users\\me\\song.mp3"),
        ("please upload photo.png", "photo.png"),
        ("upload the file: ./media/intro.mov", "./media/intro.mov"),
        ("upload '/tmp/my holiday.png'", "/tmp/my holiday.png"),
        ("上传 ~/photo.png", "~/photo.png"),
        ("上传图片：/tmp/a.jpg", "/tmp/a.jpg"),
        ("~/clip.mp4", "~/clip.mp4"),
        ("https://example.com/media/cat.webp", "https://example.com/media/cat.webp"),
        ('"/home/me/My Song.wav"', "/home/me/My Song.wav"),
        ("upload", None),
        ("upload a video", None),
        ("上传", None),
        ("上传文件", None),
    ],
)
def test_upload_requests(message: str, argument: str | None) -> None:
    assert route(message) == Route(Intent.UPLOAD, argument)


@pytest.mark.parametrize(
    ("message", "arguments"),
    [
        ("upload a.png b.jpg", ("a.png", "b.jpg")),
        ("~/a.png, ~/b.jpg and https://x/c.mp4", ("~/a.png", "~/b.jpg", "https://x/c.mp4")),
        ("上传 a.png 和 b.jpg", ("a.png", "b.jpg")),
        ("upload photo.png", ("photo.png",)),
    ],
)
def test_several_files_in_one_upload(message: str, arguments: tuple[str, ...]) -> None:
    decision = route(message)
    assert decision.intent is Intent.UPLOAD and decision.arguments == arguments


def test_files_named_inside_a_request_stay_a_chat_turn() -> None:
    assert route("make a.png b.jpg into a video").intent is Intent.CHAT


@pytest.mark.parametrize(
    "message",
    [
        "add the title 'Export Day'",
        "generate a video about credit cards",
        "make the status bar blue",
        "how do I export?",
        "export the video in 9:16 with a new title",
        "download speeds are slow in the city, make a video about that",
        "roll the credits at the end",
        "show a timeline of the Roman empire",
        "upload a video of a cat playing piano",
        "add lo-fi music at 35%",
        "generate a realistic image of a futuristic city at night",
        "the balance of colors is off",
        "添加标题'导出日'",
        "生成一个关于信用卡的视频",
        "把状态栏改成蓝色",
        "积分制度介绍视频",
        "上传的照片太暗了，调亮一点",
        "",
        "   ",
        "photo.png is my favourite, use it in the intro",
    ],
)
def test_messages_that_only_mention_the_words_are_chat(message: str) -> None:
    assert route(message) == Route(Intent.CHAT)


def test_route_of_non_text_and_huge_text_is_chat() -> None:
    assert route(None) == Route(Intent.CHAT)  # type: ignore[arg-type]
    assert route("export " * 10_000) == Route(Intent.CHAT)


# ------------------------------------------------------------------------ GUI translation


@pytest.mark.parametrize(
    ("text", "expected", "actions"),
    [
        (
            "Your video is ready, click [Export] to download it.",
            "Your video is ready.",
            ("export",),
        ),
        ("Click the Export button when you're happy with it.", "", ("export",)),
        (
            "Your video is ready. Use the Export button to save it.",
            "Your video is ready.",
            ("export",),
        ),
        (
            "I've added the title 'Urban Dreams'. You can preview it in the timeline.",
            "I've added the title 'Urban Dreams'.",
            ("status",),
        ),
        (
            "Open the Assets panel to see all generated images. The music is lo-fi.",
            "The music is lo-fi.",
            ("status",),
        ),
        ("Drag the music clip to move it. Done!", "Done!", ("chat",)),
        (
            "Added a title. Check your account billing page for remaining credits.",
            "Added a title.",
            ("credits",),
        ),
        ("To export, click the Export button.", "", ("export",)),
        (
            "Your video is ready and you can click Export to download it.",
            "Your video is ready.",
            ("export",),
        ),
        ("Great shot (click Export to save it).", "Great shot.", ("export",)),
        ("Click Export, or tell me what to change.", "Tell me what to change.", ("export",)),
        (
            "Here it is: click Export to download.\n\nAnything else?",
            "Here it is.\n\nAnything else?",
            ("export",),
        ),
        (
            "Click [Export] to render. I added lo-fi music. Drag it to adjust.",
            "I added lo-fi music.",
            ("export", "chat"),
        ),
        ("视频已生成，点击导出按钮即可下载。", "视频已生成。", ("export",)),
        ("标题已添加。您可以在时间线中预览。", "标题已添加。", ("status",)),
        ("打开素材面板查看所有图片。音乐已添加。", "音乐已添加。", ("status",)),
        ("拖拽音乐到时间线即可调整位置。好的！", "好的！", ("chat",)),
        ("视频准备好了，可以导出了。", "视频准备好了。", ("export",)),
        ("视频准备好了，您可以导出视频。", "视频准备好了。", ("export",)),
        ("编辑5积分；导出免费。", "编辑5积分；导出免费。", ()),
        ("还没有可以导出的内容。", "还没有可以导出的内容。", ()),
        ("Added lo-fi music at 35% volume.", "Added lo-fi music at 35% volume.", ()),
        (
            "The open sea at dawn, with a drop of rain.",
            "The open sea at dawn, with a drop of rain.",
            (),
        ),
        ("", "", ()),
    ],
)
def test_translation_table(text: str, expected: str, actions: tuple[str, ...]) -> None:
    assert translate_gui(text) == Translation(expected, actions)


def test_translation_keeps_paragraphs_and_has_no_double_spaces() -> None:
    text = (
        "I generated a city at night.  It has neon lights.\n\n"
        "Click [Export] to download. The title reads 'Neon'.\n"
        "- Preview it in the timeline\n- Ask me for changes"
    )
    result = translate_gui(text)
    assert result.text == (
        "I generated a city at night.  It has neon lights.\n\n"
        "The title reads 'Neon'.\n- Ask me for changes"
    )
    assert result.actions == ("export", "status")


def test_translation_of_only_gui_instructions_is_empty() -> None:
    result = translate_gui("Click [Export].\n\nOpen the Media panel. 拖拽素材到时间线。")
    assert result == Translation("", ("export", "status", "chat"))


def test_translation_does_not_leave_leading_space_or_dangling_punctuation() -> None:
    result = translate_gui("Click the Export button. Your video is 10s long!")
    assert result.text == "Your video is 10s long!"
    result = translate_gui("Done, click Export!")
    assert result.text == "Done!"


# ------------------------------------------------------------------------ temporary issues


@pytest.mark.parametrize(
    "text",
    [
        "I encountered a temporary issue.",
        "I encountered a temporary issue, please try again.",
        "Sorry, I ran into a temporary problem while adding the music.",
        "We hit a temporary glitch.",
        "There was a temporary issue with the request.",
        "遇到了临时问题。",
        "抱歉，我遇到了一个临时问题，请稍后重试。",
        "出现临时错误",
    ],
)
def test_temporary_issue_sentences(text: str) -> None:
    assert is_temporary_issue(text)


@pytest.mark.parametrize(
    "text",
    [
        "Your video is ready.",
        "The temporary title was replaced.",
        "A long sentence about a lot of things, "
        + "x" * 100
        + ", and at the end I encountered a temporary issue.",
        "",
    ],
)
def test_not_temporary_issue(text: str) -> None:
    assert not is_temporary_issue(text)


# ------------------------------------------------------------------------ stream translator


def test_stream_translator_returns_whole_sentences_only() -> None:
    stream = StreamTranslator()
    assert stream.feed("Your video is rea") == ""
    assert stream.feed("dy. Click [Exp") == "Your video is ready."
    assert stream.feed("ort] to save it. Add") == ""
    assert stream.actions == ("export",)
    assert stream.feed("ed music.\n") == " Added music."
    assert stream.finish(turn_ok=True) == "\n"


def test_stream_translator_splits_chinese_without_spaces() -> None:
    stream = StreamTranslator()
    assert stream.feed("视频已生成。点击导出") == "视频已生成。"
    assert stream.feed("按钮下载。好的") == ""
    assert stream.finish() == "好的"
    assert stream.actions == ("export",)


def test_finish_drops_a_trailing_temporary_issue_when_the_turn_went_well() -> None:
    stream = StreamTranslator()
    shown = stream.feed("Title added. I encountered a temporary issue. ")
    shown += stream.feed("Please try again.")
    shown += stream.finish(turn_ok=True)
    assert shown == "Title added."


def test_finish_keeps_the_temporary_issue_when_the_turn_failed() -> None:
    stream = StreamTranslator()
    shown = stream.feed("Title added. I encountered a temporary issue.")
    shown += stream.finish(turn_ok=False)
    assert shown == "Title added. I encountered a temporary issue."


def test_a_temporary_issue_followed_by_more_text_is_not_dropped() -> None:
    stream = StreamTranslator()
    assert stream.feed("I encountered a temporary issue. I retried") == ""
    assert stream.feed(" and the title is added. ") == (
        "I encountered a temporary issue. I retried and the title is added."
    )
    assert stream.finish(turn_ok=True) == " "


def test_chinese_trailing_temporary_issue_is_dropped() -> None:
    stream = StreamTranslator()
    shown = stream.feed("音乐已添加。遇到了临时问题。") + stream.finish(turn_ok=True)
    assert shown == "音乐已添加。"


def test_long_sentence_without_punctuation_is_not_held_forever() -> None:
    stream = StreamTranslator()
    shown = stream.feed("word " * 90)
    assert 0 < len(shown) <= 400
    assert shown + stream.finish() == ("word " * 90)


# ------------------------------------------------------------- streaming = whole translation

_WORDS = st.sampled_from(
    [
        "Your video is ready",
        "click [Export] to download it",
        "Click the Export button",
        "you can preview it in the timeline",
        "Open the Assets panel",
        "drag the clip",
        "check your billing page",
        "I added lo-fi music",
        "3.5s",
        "1",
        "example.com",
        "视频已生成",
        "点击导出按钮",
        "打开面板",
        "拖拽音乐",
        "好的",
        "(click Export)",
        "or tell me what to change",
        "and then",
    ]
)
_GLUE = st.sampled_from(
    [
        " ",
        ". ",
        "! ",
        "? ",
        ", ",
        "\n",
        "\n\n",
        "。",
        "！",
        "，",
        ".",
        "  ",
        "; ",
        ": ",
        ".\n",
        "",
        " \n\t  ",
    ]
)
_TEXTS = st.lists(st.tuples(_WORDS, _GLUE), max_size=12).map(
    lambda pairs: "".join(word + glue for word, glue in pairs)
)


def _chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(cut, len(text)) for cut in cuts})
    pieces, start = [], 0
    for point in [*points, len(text)]:
        pieces.append(text[start:point])
        start = point
    return pieces


@settings(max_examples=150, deadline=None)
@given(
    text=st.one_of(_TEXTS, st.text(max_size=300)),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=20),
    turn_ok=st.booleans(),
)
def test_streamed_translation_equals_the_whole_translation(
    text: str, cuts: list[int], turn_ok: bool
) -> None:
    expected = translate_gui(text)
    stream = StreamTranslator()
    shown = "".join(stream.feed(piece) for piece in _chunked(text, cuts))
    shown += stream.finish(turn_ok=turn_ok)
    assert shown == expected.text
    assert stream.actions == expected.actions


_ISSUES = st.sampled_from(
    ["I encountered a temporary issue.", "遇到了临时问题。", "We ran into a temporary error!"]
)


@settings(max_examples=100, deadline=None)
@given(
    text=_TEXTS,
    issue=_ISSUES,
    retry=st.sampled_from(["", " Please try again.", "请稍后重试。"]),
    tail=st.sampled_from(["", " ", "\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=20),
)
def test_trailing_temporary_issue_is_dropped_on_any_chunking(
    text: str, issue: str, retry: str, tail: str, cuts: list[int]
) -> None:
    full = f"{text}\n{issue}{retry}{tail}"
    whole = translate_gui(full).text
    stream = StreamTranslator()
    shown = "".join(stream.feed(piece) for piece in _chunked(full, cuts))
    shown += stream.finish(turn_ok=True)
    assert whole.startswith(shown)
    dropped = whole[len(shown) :]
    assert issue in dropped
    assert not is_temporary_issue(shown.strip()[-40:])


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.one_of(_TEXTS, st.text(max_size=120)), min_size=1, max_size=5),
    turn_ok=st.booleans(),
)
def test_whole_messages_translate_as_when_streamed(messages: list[str], turn_ok: bool) -> None:
    """``feed_message_end`` (messages separated as the merger separates them) == ``feed``."""
    pieces = [("\n\n" if index else "") + text for index, text in enumerate(messages)]
    whole, streamed = StreamTranslator(), StreamTranslator()
    shown = "".join(whole.feed_message_end(piece) for piece in pieces)
    shown += whole.finish(turn_ok=turn_ok)
    expected = "".join(streamed.feed(piece) for piece in pieces) + streamed.finish(turn_ok=turn_ok)
    assert shown == expected
    assert whole.actions == streamed.actions


def test_a_plain_whole_message_passes_without_sentence_splitting() -> None:
    stream = StreamTranslator()
    assert stream.feed_message_end("Here is your city. It glows.") == "Here is your city. It glows."
    said = stream.feed_message_end("\n\nClick the Export button to download it.")
    assert said + stream.finish() == ""
    assert stream.actions == ("export",)


def _scanned_while_streaming(monkeypatch: pytest.MonkeyPatch, pieces: list[str]) -> tuple[int, str]:
    """Characters handed to the sentence splitter while ``pieces`` stream, and the text shown."""
    scanned = 0
    split_units = _gui_text._split_units

    def counting(buffer: str, final: bool, resume: int = 0) -> tuple[list[str], int, int]:
        nonlocal scanned
        scanned += len(buffer)
        return split_units(buffer, final, resume)

    monkeypatch.setattr(_gui_text, "_split_units", counting)
    stream = StreamTranslator()
    shown = "".join(stream.feed(piece) for piece in pieces) + stream.finish()
    return scanned, shown


def test_a_whitespace_only_stream_is_not_rescanned_per_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pieces = [" "] * 20_000 + ["\n"] * 20_000 + ["Done."]
    scanned, shown = _scanned_while_streaming(monkeypatch, pieces)
    assert shown == "".join(pieces)
    assert scanned <= 4 * len(shown)  # the old buffer was rescanned per chunk: ~800 M characters


def test_long_leading_whitespace_is_not_rescanned_while_a_sentence_grows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pieces = [" " * 100_000] + ["word "] * 60 + ["end.", " More text."]
    scanned, shown = _scanned_while_streaming(monkeypatch, pieces)
    assert shown == "".join(pieces)
    assert scanned <= 4 * len(shown)
