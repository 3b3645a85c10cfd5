"""The notebook display layer: throttled streaming, progress, tables, video/image embedding."""

from __future__ import annotations

import base64
import html
import subprocess
from pathlib import Path

import pytest

from nemo_notebook._display import (
    ChangesView,
    LinkView,
    NoteView,
    ProgressLine,
    ReplyView,
    StreamSink,
    TracksTable,
    TurnPrinter,
    option_lines,
)
from nemo_notebook._draft import Draft
from nemo_notebook._events import (
    Heartbeat,
    Question,
    Recovering,
    StillWorking,
    TextDelta,
    ToolCall,
    ToolResult,
)
from nemo_notebook._media_views import (
    ImageView,
    VideoView,
    extract_poster,
    generated_image_urls,
    image_mime_type,
    media_type,
    relative_src,
)

XSS = "<img src=x onerror=alert(1)>"
PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class StepClock:
    """A clock that advances by a fixed, exactly representable step on every read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Recorder:
    def __init__(self, clock: StepClock | None = None) -> None:
        self.clock = clock
        self.writes: list[tuple[float, str]] = []

    def __call__(self, text: str) -> None:
        self.writes.append((self.clock.now if self.clock else 0.0, text))

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.writes)


def sample_draft(title: str = "Urban Dreams") -> Draft:
    return Draft.from_dict(
        {
            "d": 10000,
            "m": {"title": "demo", "width": 1920, "height": 1080, "fps": 30},
            "t": [
                {"id": "v", "tt": 0, "sg": [{"id": "s1", "st": 0, "d": 10000, "n": "city"}]},
                {
                    "id": "a",
                    "tt": 1,
                    "n": "BGM",
                    "sg": [{"st": 0, "d": 10000, "n": "Lo-fi", "v": 0.35}],
                },
                {"id": "t", "tt": 7, "n": "Title", "sg": [{"st": 0, "d": 3000, "tx": title}]},
            ],
        }
    )


# --------------------------------------------------------------------------- stream sink


def test_sink_coalesces_20000_chunks_to_at_most_rate_per_second() -> None:
    clock = StepClock(1 / 2048)  # 20 000 chunks ~ 9.8 simulated seconds
    recorder = Recorder(clock)
    sink = StreamSink(recorder, rate=10, clock=clock)
    chunks = [f"w{i} " for i in range(20_000)]
    for chunk in chunks:
        sink.feed(chunk)
    sink.close()

    assert recorder.text == "".join(chunks) + "\n"
    times = [when for when, _ in recorder.writes[:-1]]  # the last one is the final flush
    for index, start in enumerate(times):
        in_window = [t for t in times[index:] if t < start + 1.0]
        assert len(in_window) <= 10
    assert 90 <= len(times) <= 10 * clock.now + 2
    assert sink.writes == len(times) + 1


def test_sink_writes_first_chunk_at_once_and_flushes_the_rest_on_close() -> None:
    clock = StepClock(0.001)
    recorder = Recorder(clock)
    sink = StreamSink(recorder, rate=10, clock=clock)
    sink.feed("Hello")
    sink.feed(", world")
    assert recorder.text == "Hello"
    sink.close()
    assert recorder.text == "Hello, world\n"


def test_sink_tick_flushes_when_due() -> None:
    clock = StepClock(0.06)
    recorder = Recorder(clock)
    sink = StreamSink(recorder, rate=10, clock=clock)
    sink.feed("a")
    sink.feed("b")
    assert recorder.text == "a"
    sink.tick()
    assert recorder.text == "ab"


def test_status_lines_start_on_a_new_line() -> None:
    recorder = Recorder()
    sink = StreamSink(recorder, rate=0)
    sink.feed("Working on it")
    sink.line("· generating image…")
    sink.feed("Done.")
    sink.close()
    assert recorder.text == "Working on it\n· generating image…\nDone.\n"


def test_text_resuming_after_a_status_line_loses_its_leading_space() -> None:
    recorder = Recorder()
    sink = StreamSink(recorder, rate=0)
    sink.feed("First sentence.")
    sink.line("· adding music…")
    sink.feed(" ")
    sink.feed(" Second sentence.\n\nThird.")
    sink.close()
    assert recorder.text == "First sentence.\n· adding music…\nSecond sentence.\n\nThird.\n"


def test_a_new_message_after_a_status_line_adds_no_blank_lines() -> None:
    recorder = Recorder()
    sink = StreamSink(recorder, rate=0)
    sink.feed("I made the image.")
    sink.line("· adding title…")
    sink.feed("\n\nI added the title.")  # the message separator the merger puts in
    sink.close()
    assert recorder.text == "I made the image.\n· adding title…\nI added the title.\n"


def test_turn_printer_shows_text_and_human_status_never_json() -> None:
    recorder = Recorder()
    printer = TurnPrinter(StreamSink(recorder, rate=0))
    for event in (
        TextDelta("Making it. "),
        ToolCall("generate_image", {"prompt": "city"}, "call_1"),
        ToolResult("generate_image", {"url": "http://x/y.png"}, "call_1"),
        Heartbeat(),
        StillWorking(121.7),
        Recovering("dropped"),
        TextDelta("Here it is."),
    ):
        printer.handle(event)
    printer.close()
    text = recorder.text
    assert text.startswith("Making it. \n· ")
    assert "generat" in text and "{" not in text and "call_1" not in text
    assert "still working… (2 min so far" in text
    assert "re-sending" in text
    assert text.endswith("Here it is.\n")
    assert printer.shown_text == "Making it. Here it is."


def test_a_question_reads_as_the_agents_words_then_its_numbered_options() -> None:
    recorder = Recorder()
    printer = TurnPrinter(StreamSink(recorder, rate=0))
    question = Question("Which aspect ratio?", ("16:9 landscape", "9:16 portrait"), "call_9")
    for event in (TextDelta("Sure."), TextDelta("\n\nWhich aspect ratio?"), question):
        printer.handle(event)
    printer.handle(TextDelta(" Either works."))
    printer.close()
    assert recorder.text == (
        "Sure.\n\nWhich aspect ratio?\n1. 16:9 landscape\n2. 9:16 portrait\nEither works.\n"
    )
    assert "· " not in recorder.text and "call_9" not in recorder.text
    assert printer.shown_text == "Sure.\n\nWhich aspect ratio? Either works."
    assert option_lines(("a", XSS)) == ["1. a", f"2. {XSS}"]


# --------------------------------------------------------------------------- progress


def collapse_carriage_returns(text: str) -> str:
    """What nbval and JupyterLab keep of a stream with "\\r" updates."""
    lines = []
    for line in text.split("\n"):
        lines.append(line.rsplit("\r", 1)[-1])
    return "\n".join(lines)


def test_progress_line_is_throttled_and_collapses_to_the_final_state() -> None:
    clock = StepClock(0.01)
    recorder = Recorder(clock)
    progress = ProgressLine(recorder, rate=10, clock=clock)
    for step in range(1001):
        progress(step / 1000)
    progress.finish()
    assert progress.writes <= 10 * clock.now + 2
    assert collapse_carriage_returns(recorder.text) == "Rendering… 100%\n"


def test_progress_skips_unchanged_percentages() -> None:
    recorder = Recorder()
    progress = ProgressLine(recorder, rate=0)
    for _ in range(5):
        progress(0.5)
    assert recorder.text == "\rRendering…  50%"


# --------------------------------------------------------------------------- tables and views


def test_tracks_table_has_summary_caption_and_escapes() -> None:
    table = TracksTable(sample_draft(XSS))
    bundle = table._repr_mimebundle_()
    assert XSS not in bundle["text/html"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in bundle["text/html"]
    assert bundle["text/html"].count("<caption>") == 1
    assert bundle["text/plain"].startswith("Timeline (3 tracks): 1. Video: city")
    assert table.summary in bundle["text/plain"]


def test_tracks_table_reads_for_people_not_as_a_dataframe() -> None:
    url = "http://127.0.0.1:9/media/generated/img_c514e6c572a455c8.png?sig=abcdefghijk"
    draft = Draft.from_dict(
        {
            "t": [
                {"tt": 0, "sg": [{"st": 0, "d": 5000, "n": "city", "src": url}]},
                {"tt": 1, "n": "Lo-fi", "sg": [{"st": 0, "d": 5000, "v": 0.35}]},
            ]
        }
    )
    table = TracksTable(draft)
    html_text, text = table.to_html(), table.to_text()
    assert "NaN" not in html_text and "NaN" not in text and "None" not in text
    assert ">35%</td>" in html_text and "0.35" not in html_text
    assert ">5</td>" in html_text and ">5.0<" not in html_text  # seconds without a trailing .0
    short = "img_c514e6c572a455c8.png"
    assert f">{short}</a>" in html_text and f'title="{html.escape(url, quote=True)}"' in html_text
    assert "?sig=" not in text and short in text  # the full URL only on hover
    assert html_text.count("<th ") == 8 and "'></th>" not in html_text  # no index column
    frame = table.dataframe  # the same rows for code
    assert frame["volume"].tolist()[1] == pytest.approx(0.35) and frame["source"][0] == url


def test_tracks_table_of_an_empty_draft() -> None:
    table = TracksTable(Draft.from_dict(None))
    bundle = table._repr_mimebundle_()
    assert bundle["text/plain"] == table.summary
    assert "<caption>" in bundle["text/html"]


def test_changes_and_links_escape_backend_text() -> None:
    changes = ChangesView(("Title added: " + XSS,))
    assert XSS not in changes.to_html() and XSS in changes.to_text()
    assert ChangesView(()).to_text().endswith("none")
    link = LinkView('https://nemovideo.com/claim?ct="x"><script>', XSS, note=XSS)
    rendered = link.to_html()
    assert "<script>" not in rendered and XSS not in rendered
    assert 'href="https://nemovideo.com/claim?ct=&quot;x&quot;&gt;&lt;script&gt;"' in rendered


def test_reply_view_shows_text_and_changes_escaped() -> None:
    class FakeReply:
        text = f"Done {XSS}"
        changes = (f"Title added: '{XSS}' (0-3s)",)

    bundle = ReplyView(FakeReply())._repr_mimebundle_()
    assert bundle["text/plain"].startswith(f"Done {XSS}\nChanges to the draft:\n  • Title")
    assert XSS not in bundle["text/html"] and "&lt;img" in bundle["text/html"]
    assert ReplyView(object()).to_text() == "(no reply and no change)"


def test_reply_view_lists_the_options_and_notes_unknown_changes() -> None:
    class AskingReply:
        text = "Which one?"
        changes = ()
        question = Question("Which one?", ("16:9", XSS), "c")
        changes_known = False

    view = ReplyView(AskingReply())
    assert view.to_text() == (
        f"Which one?\n1. 16:9\n2. {XSS}\n"
        "(What changed in the timeline is unknown: the session state could not be read.)"
    )
    rendered = view.to_html()
    assert "2. &lt;img" in rendered and XSS not in rendered and "nemo-note" in rendered
    note = NoteView(XSS)._repr_mimebundle_()
    assert note["text/plain"] == f"({XSS})" and XSS not in note["text/html"]


def test_image_view_bundles() -> None:
    png = ImageView(PNG_1x1, label=XSS)
    bundle = png._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"]) == PNG_1x1
    jpeg = ImageView(b"\xff\xd8\xff\xe0rest", label="a.jpg")
    assert "image/jpeg" in jpeg._repr_mimebundle_()
    webp = ImageView(b"RIFF\x00\x00\x00\x00WEBPVP8 ", label=XSS)._repr_mimebundle_()
    assert "data:image/webp;base64," in webp["text/html"] and XSS not in webp["text/html"]
    assert image_mime_type(b"not an image") is None


def test_generated_image_urls_only_new_stills() -> None:
    before = [{"url": "http://h/media/generated/a.png"}]
    after = [
        {"url": "http://h/media/generated/a.png"},
        {"url": "http://h/media/generated/b.png", "type": "image"},
        {"url": "http://h/media/generated/c.mp4"},
        "http://h/media/generated/d.jpg?x=1",
        {"cdn_url": "http://h/media/generated/b.png"},
        42,
    ]
    assert generated_image_urls(before, after) == [
        "http://h/media/generated/b.png",
        "http://h/media/generated/d.jpg?x=1",
    ]
    assert generated_image_urls(None, None) == []


# --------------------------------------------------------------------------- video


@pytest.fixture(scope="module")
def small_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    path = tmp_path_factory.mktemp("video") / "clip one.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i"]
    command += ["testsrc=size=160x90:rate=10:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    command += ["-movflags", "+faststart", str(path)]
    subprocess.run(command, check=True, timeout=60)
    return path


def test_small_video_is_embedded_with_a_poster(small_mp4: Path) -> None:
    poster = extract_poster(small_mp4)
    assert poster is not None and image_mime_type(poster) == "image/png"
    view = VideoView(small_mp4, embed_limit_bytes=10_000_000, poster=poster)
    bundle = view._repr_mimebundle_()
    assert view.embedded
    assert 'src="data:video/mp4;base64,' in bundle["text/html"]
    assert 'poster="data:image/png;base64,' in bundle["text/html"]
    assert bundle["text/plain"] == "<video: clip one.mp4>"


def test_large_video_is_linked_relative_to_the_notebook(small_mp4: Path) -> None:
    view = VideoView(small_mp4, embed_limit_bytes=10, base_dir=small_mp4.parent.parent)
    rendered = view.to_html()
    assert not view.embedded
    assert f'src="{small_mp4.parent.name}/clip%20one.mp4"' in rendered
    assert "poster" not in rendered
    forced = VideoView(small_mp4, embed_limit_bytes=10, embed=True)
    assert forced.embedded


def test_exported_media_types_follow_the_format(small_mp4: Path, tmp_path: Path) -> None:
    kinds = {name: media_type(f"nemo-main-1.{name}") for name in ("png", "JPG", "gif", "webm")}
    assert kinds == {"png": "image/png", "JPG": "image/jpeg", "gif": "image/gif",
                     "webm": "video/webm"}  # fmt: skip
    assert media_type("a.mov") == "video/quicktime" and media_type("a.xyz") is None
    webm = tmp_path / "clip.webm"
    webm.write_bytes(small_mp4.read_bytes())
    rendered = VideoView(webm).to_html()
    assert 'src="data:video/webm;base64,' in rendered and 'type="video/webm"' in rendered
    linked = VideoView(webm, embed=False, base_dir=tmp_path, mime_type="video/x-custom")
    assert 'type="video/x-custom"' in linked.to_html()


def test_an_exported_gif_keeps_its_frames() -> None:
    gif = b"GIF89a" + b"\x00" * 32
    view = ImageView(gif, label="a.gif", preview=False)
    assert view.data == gif and view.mime_type == "image/gif"


def test_poster_is_none_for_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert extract_poster(broken) is None


def test_relative_src_quotes_and_uses_slashes(tmp_path: Path) -> None:
    nested = tmp_path / "out dir" / "a&b.mp4"
    assert relative_src(nested, tmp_path) == "out%20dir/a%26b.mp4"


def test_only_http_links_become_clickable():
    from nemo_notebook._display import LinkView

    safe = LinkView("https://nemovideo.com/workspace/claim?ct=clm_a", "Claim").to_html()
    assert safe.startswith('<a href="https://nemovideo.com/')
    hostile = LinkView("javascript:alert(1)", "Claim").to_html()
    assert "<a " not in hostile and "javascript:alert(1)" in hostile
