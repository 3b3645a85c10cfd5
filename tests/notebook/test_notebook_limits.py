"""Hostile sizes in the notebook layer: the draft diff, the panel's transcript and images, the
tracks table, and image URLs or image files from a broken or hostile backend (issue 12)."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_backend import TOKEN
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_notebook._client import Credits, NemoClient, Reply
from nemo_notebook._commands import CellArgs
from nemo_notebook._display import MAX_TABLE_ROWS, NoteView, TracksTable
from nemo_notebook._draft import DIFF_LINES, Draft, Segment, SessionState
from nemo_notebook._draft_diff import _match, _segment_key
from nemo_notebook._http import media_url_problem
from nemo_notebook._media_views import ImageView, generated_image_urls, image_size
from nemo_notebook._workspace import EXTRAS_STOPPED_MESSAGE, Workspace

# ------------------------------------------------------------------------------- draft diff


def _reference_match(
    before: Sequence[Any], after: Sequence[Any], key: Callable[[Any], Hashable]
) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """The matching as it was written first (nested scans): the meaning the fast one keeps."""
    first_with_id: dict[str, int] = {}
    for index, item in enumerate(before):
        if item.id is not None:
            first_with_id.setdefault(item.id, index)
    matched: list[int | None] = [None] * len(after)
    used: set[int] = set()
    for position, item in enumerate(after):
        same_id = first_with_id.get(item.id) if item.id is not None else None
        if same_id is not None and same_id not in used:
            matched[position] = same_id
            used.add(same_id)
    pools: dict[Hashable, list[int]] = {}
    for index, item in enumerate(before):
        if index not in used:
            pools.setdefault(key(item), []).append(index)
    for position, item in enumerate(after):
        if matched[position] is None:
            pool = pools.get(key(item), [])
            found = next(
                (
                    i
                    for i in pool
                    if before[i].id is None or item.id is None or before[i].id == item.id
                ),
                None,
            )
            if found is not None:
                pool.remove(found)
                matched[position] = found
                used.add(found)
    removed = [item for index, item in enumerate(before) if index not in used]
    pairs = [
        (None if i is None else before[i], item) for i, item in zip(matched, after, strict=True)
    ]
    return removed, pairs


_ids = st.lists(st.one_of(st.none(), st.sampled_from("abcde")), max_size=12)


@settings(max_examples=300, deadline=None)
@given(_ids, _ids)
def test_segment_matching_keeps_its_meaning(before_ids: list[Any], after_ids: list[Any]) -> None:
    before = [Segment({"id": ident, "st": n}) for n, ident in enumerate(before_ids)]
    after = [Segment({"id": ident, "st": n}) for n, ident in enumerate(after_ids)]
    removed, pairs = _match(before, after, _segment_key)
    expected_removed, expected_pairs = _reference_match(before, after, _segment_key)
    assert [id(item) for item in removed] == [id(item) for item in expected_removed]
    assert [(id(old), id(new)) for old, new in pairs] == [
        (id(old), id(new)) for old, new in expected_pairs
    ]


_BIG_DIFF = textwrap.dedent(
    """
    from nemo_notebook._draft import Draft

    def draft(prefix):
        segments = [{"id": f"{prefix}{n}", "st": n * 100, "d": 100, "n": f"clip {n}"}
                    for n in range(12_000)]
        return Draft.from_dict({"t": [{"id": "v", "tt": 0, "sg": segments}]})

    lines = draft("old").diff(draft("new"))
    print(len(lines))
    print(lines[-1])
    """
)


def test_a_12k_segment_diff_with_all_new_ids_is_quick_and_capped() -> None:
    # It took 37 s with nested scans; linear matching needs well under a second.
    result = subprocess.run(
        [sys.executable, "-c", _BIG_DIFF], capture_output=True, text=True, timeout=15, check=True
    )
    count, last = result.stdout.splitlines()
    assert int(count) == DIFF_LINES + 1
    assert last == f"… {24_000 - DIFF_LINES} more changes"


def test_a_capped_diff_still_ends_with_the_duration_and_describes_tracks_briefly() -> None:
    segments = [{"id": f"s{n}", "st": n * 1000, "d": 1000, "n": f"clip {n}"} for n in range(500)]
    after = Draft.from_dict({"t": [{"tt": 0, "sg": segments}]})
    lines = Draft.from_dict({}).diff(after, max_lines=5)
    assert lines[0].startswith("Video added: clip 0 (0-1s), ")
    assert lines[0].endswith("+490 more")
    assert lines[-1] == "Duration 0s -> 500s"
    assert Draft.from_dict({}).diff(after, max_lines=0) == (
        "… 1 more change",
        "Duration 0s -> 500s",
    )


# --------------------------------------------------------------------------- tracks table


def _long_draft(count: int) -> Draft:
    segments = [{"st": n * 100, "d": 100, "n": f"clip {n}"} for n in range(count)]
    return Draft.from_dict({"t": [{"tt": 0, "sg": segments}]})


def test_the_tracks_table_shows_at_most_max_rows_and_counts_the_rest() -> None:
    table = TracksTable(_long_draft(12_000))
    rendered = table.to_html()
    assert rendered.count(">clip ") == MAX_TABLE_ROWS == 200
    assert f"… {12_000 - MAX_TABLE_ROWS} more rows" in rendered
    assert table.to_text().endswith(f"… {12_000 - MAX_TABLE_ROWS} more rows")
    assert len(table.dataframe) == 12_000  # the data stays whole
    assert len(table.summary) < 1000  # the caption is capped too
    assert "more row" not in TracksTable(_long_draft(3)).to_html()
    assert TracksTable(_long_draft(3), max_rows=2).to_text().endswith("… 1 more row")


# --------------------------------------------------------------------------- image URLs

HOSTILE_URLS = {
    "file:///etc/passwd.png": "not a web address",
    "javascript:alert(1)//.png": "not a web address",
    "http://[::1/a.png": "malformed",
    "http://h:99999999/a.png": "malformed",
    "http://h/a\x00.png": "control characters",
    "http://h/a b.png": "spaces",
    "http://h/" + "a" * 70_000 + ".png": "longer than",
    "media/a.png": "not a web address",
    "http:///a.png": "no host",
}


def test_hostile_image_urls_are_refused_with_a_reason() -> None:
    for url, reason in HOSTILE_URLS.items():
        problem = media_url_problem(url)
        assert problem is not None and reason in problem, url
    for url in ("http://h/a.png", "https://cdn.example/x/y.JPG?s=1", "/media/generated/a.png"):
        assert media_url_problem(url) is None, url


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_as_an_image_url_gives_an_answer(url: str) -> None:
    problem = media_url_problem(url)
    assert problem is None or isinstance(problem, str)
    generated_image_urls([], [{"url": url}, url])  # never raises


def _png_bytes(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, "PNG")
    return out.getvalue()


class _Recorder:
    live = False

    def __init__(self) -> None:
        self.text, self.shown = "", []

    def write(self, text: str) -> None:
        self.text += text

    def display(self, obj: object, *, display_id: str | None = None) -> None:
        self.shown.append(obj)

    def update(self, obj: object, *, display_id: str) -> None:
        raise AssertionError("a terminal output is never updated")


def _workspace_on(
    client: Any, session: Any, folder: Path | None = None
) -> tuple[Workspace, _Recorder]:
    output = _Recorder()
    workspace = Workspace(output=output, base_dir=folder)
    workspace.client = client
    workspace.sessions["main"] = session
    return workspace, output


class _OneTurnSession:
    """A session whose one turn streamed and succeeded, with ``media`` new in its state."""

    def __init__(self, client: Any, media: list[str]) -> None:
        self.client, self.pending_question = client, None
        self.id, self.task_id, self.known_state = "s1", None, None
        after = {"state": {"draft": {}, "generated_media": [{"url": url} for url in media]}}
        self.reply = Reply(
            "m", "Done.", state=SessionState.from_api(after),
            state_before=SessionState.from_api({"state": {"draft": {}}}),
        )  # fmt: skip

    def send(self, text: str) -> Reply:
        return self.reply


def test_malformed_image_urls_in_state_never_break_the_cell(tmp_path: Path) -> None:
    served: list[str] = []
    good = "http://h/media/generated/ok.png"

    def handle(request: httpx.Request) -> httpx.Response:
        served.append(str(request.url))
        return httpx.Response(200, content=_png_bytes(4, 4))

    client = NemoClient(api_url="http://h", token=TOKEN, transport=httpx.MockTransport(handle))
    with client:
        session = _OneTurnSession(client, [*HOSTILE_URLS, good])
        workspace, output = _workspace_on(client, session, tmp_path)
        reply = workspace.chat("images", CellArgs(stream=False))
    assert reply is session.reply
    assert [url for url in served if "/media/" in url or "ok.png" in url] == [good]
    assert all("credits" in url or url == good for url in served)
    notes = [shown for shown in output.shown if isinstance(shown, NoteView)]
    assert len(notes) == len(HOSTILE_URLS)
    assert all(note.text.startswith("A generated image was skipped: its URL") for note in notes)
    assert all(len(note.text) < 120 for note in notes)
    assert [type(shown) for shown in output.shown if not isinstance(shown, NoteView)] == [ImageView]


# --------------------------------------------------------------------------- image files


def _forged_png(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header claims ``width`` x ``height`` (CRC fixed up)."""
    data = bytearray(_png_bytes(1, 1))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def test_a_20000_square_png_is_refused_from_its_header() -> None:
    view = ImageView(_forged_png(20_000, 20_000), label="bomb.png")
    assert view.note.startswith("bomb.png is not shown: 20000x20000 pixels")
    assert view.data == b""
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"} and "max_image_pixels" in bundle["text/plain"]
    assert ImageView(_forged_png(20_000, 20_000), preview=False).note  # exported files too
    assert not ImageView(_forged_png(100, 100), max_pixels=10_000).note
    assert ImageView(_forged_png(101, 100), max_pixels=10_000).note


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body).to_bytes(4, "big")
    return len(body).to_bytes(4, "big") + kind + body + crc


@pytest.fixture(scope="module")
def compressible_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 13000x13000 grey PNG of ~160 KB (decoding it needs ~170 MB, as RGB ~500 MB)."""
    side = 13_000
    row = bytes(1 + side)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    path = tmp_path_factory.mktemp("png") / "big.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )
    return path


_SHOW_IN_300_MB = textwrap.dedent(
    """
    import resource, sys
    from nemo_notebook._media_views import ImageView
    data = open(sys.argv[1], "rb").read()
    limit = 300 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    view = ImageView(data, label="big.png")
    print(view.note)
    """
)


def test_a_small_file_of_169_megapixels_is_not_decoded(compressible_png: Path) -> None:
    assert compressible_png.stat().st_size < 200_000
    result = subprocess.run(
        [sys.executable, "-c", _SHOW_IN_300_MB, str(compressible_png)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("big.png is not shown: 13000x13000 pixels")


def test_pillow_checks_the_size_of_formats_the_header_reader_does_not_know() -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (300, 200)).save(out, "BMP")
    assert image_size(out.getvalue()) is None
    view = ImageView(out.getvalue(), label="a.bmp", max_pixels=50_000)
    assert view.note.startswith("a.bmp is not shown: 300x200 pixels")


def test_header_sizes_of_the_usual_formats() -> None:
    from PIL import Image

    for fmt in ("PNG", "GIF", "JPEG", "WEBP"):
        out = io.BytesIO()
        Image.new("RGB", (321, 123)).save(out, fmt)
        assert image_size(out.getvalue()) == (321, 123), fmt


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8", b"RIFF\0\0\0\0WEBP", b""]),
    st.binary(max_size=64),
)
def test_image_headers_of_any_bytes_give_a_size_or_none(prefix: bytes, rest: bytes) -> None:
    size = image_size(prefix + rest)
    assert size is None or (len(size) == 2 and min(size) >= 0)


def test_large_previews_are_downscaled_to_960_px() -> None:
    from PIL import Image

    view = ImageView(_png_bytes(3000, 1500), label="wide.png")
    assert view.mime_type == "image/jpeg"
    assert Image.open(io.BytesIO(view.data)).size == (960, 480)


# --------------------------------------------------------------------------- interrupts


def test_an_interrupt_while_the_result_is_shown_says_so_in_one_line(tmp_path: Path) -> None:
    class InterruptingClient:
        api_url = "http://h"
        cassette_mode = None

        def credits(self) -> Credits:
            return Credits(10, 0, 10)

        def fetch_bytes(self, url: str) -> bytes:
            raise KeyboardInterrupt

    session = _OneTurnSession(InterruptingClient(), ["http://h/media/generated/a.png"])
    workspace, output = _workspace_on(session.client, session, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        workspace.chat("images", CellArgs(stream=False))
    assert output.text == "Done.\n" + EXTRAS_STOPPED_MESSAGE
    assert EXTRAS_STOPPED_MESSAGE.count("\n") == 1
