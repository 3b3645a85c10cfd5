"""The emulator serves every variant of PROTOCOL §8 (``emulator.variants``), switched per server.

One real server on a loopback port (the rule-based agent, work sped up) is switched between
variants by the tests; an autouse fixture switches it back. Plain httpx only: the client library
is tested elsewhere. Also here: export formats, cancelling renders, several files in one upload,
the user id in the session and state answers, and a session that disappears.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from nemo_notebook._cli import build_parser
from nemo_notebook.emulator import VARIANTS, start
from nemo_notebook.emulator.agent.questions import OPTIONS, chosen_option
from nemo_notebook.emulator.variants import ActiveVariants, VariantSwitch, parse_variants

TIME_SCALE = 0.05
HEARTBEAT_S = 0.5  # unscaled: a keep-alive would be due every 25 ms of silence
ATTRIBUTION = {"X-Skill-Source": "nemo-notebook", "X-Skill-Version": "t", "X-Skill-Platform": "t"}
GENERATE = "generate a realistic image of a futuristic city at night"
NOT_FOUND = {"detail": "Not Found"}


# -- the server and its users ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("emulator-variants")
    with start(
        data_dir, time_scale=TIME_SCALE, heartbeat_interval=HEARTBEAT_S, tokens_per_ip=100_000
    ) as handle:
        yield handle


@pytest.fixture(autouse=True)
def default_variants(server: Any) -> Iterator[None]:
    server.set_variants(None, state_delay_s=3.0)
    yield
    server.set_variants(None, state_delay_s=3.0)


@pytest.fixture
def http(server: Any) -> Iterator[httpx.Client]:
    # the admin secret too: the /_emulator/ tests use this client
    with httpx.Client(base_url=server.url, timeout=60, headers=server.admin_headers()) as client:
        yield client


@dataclass
class Wire:
    """A raw SSE answer: each frame with the time its last byte arrived."""

    status: int
    frames: list[tuple[float, str]] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [frame for _, frame in self.frames]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(f[6:]) for f in self.texts if f.startswith("data: ")]


def parts_of(event: dict[str, Any]) -> list[dict[str, Any]]:
    return list(event.get("content", {}).get("parts", []))


def calls_in(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p["functionCall"] for e in events for p in parts_of(e) if "functionCall" in p]


def final_texts(wire: Wire) -> list[str]:
    """The text of every non-partial model event (what a person reads)."""
    return [
        part["text"]
        for event in wire.events
        if not event.get("partial")
        for part in parts_of(event)
        if "text" in part
    ]


_ids = iter(range(10**9))


@dataclass
class User:
    http: httpx.Client
    token: str
    user_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **ATTRIBUTION}

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path, headers=self.headers)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, headers=self.headers, **kwargs)

    def new_session(self, language: str = "en") -> str:
        created = self.post("/api/tasks/me/with-session/nemo_agent", json={"language": language})
        return str(ok(created)["session_id"])

    def state_response(self, session_id: str) -> httpx.Response:
        return self.get(f"/api/state/nemo_agent/me/{session_id}/latest")

    def run(self, session_id: str, message: str, streaming: bool = True) -> Wire:
        body = {
            "app_name": "nemo_agent",
            "user_id": "me",
            "session_id": session_id,
            "new_message": {"role": "user", "parts": [{"text": message}]},
            "streaming": streaming,
        }
        with self.http.stream("POST", "/run_sse", json=body, headers=self.headers) as response:
            wire = Wire(response.status_code)
            buffer = b""
            for chunk in response.iter_raw():
                buffer += chunk
                *complete, buffer = buffer.split(b"\n\n")
                now = time.monotonic()
                wire.frames += [(now, frame.decode()) for frame in complete if frame]
        return wire

    def upload(self, session_id: str, *names: str) -> list[dict[str, Any]]:
        files = [("files", (name, png_bytes(), "image/png")) for name in names]
        uploaded = self.post(f"/api/upload-video/nemo_agent/me/{session_id}", files=files)
        return list(ok(uploaded)["files"])

    def credits(self) -> int:
        return int(ok(self.get("/api/credits/balance/simple"))["available"])


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0, body
    return body["data"]


def png_bytes(width: int = 320, height: int = 180) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (width, height), (40, 110, 190)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def user(http: httpx.Client) -> User:
    answer = http.post("/api/auth/anonymous-token", headers={"X-Client-Id": f"v-{next(_ids)}"})
    data = ok(answer)
    return User(http, data["token"], data["user_id"])


@pytest.fixture(scope="module")
def baseline(server: Any) -> list[str]:
    """What a person reads for GENERATE on a fresh session without variants."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        answer = http.post("/api/auth/anonymous-token", headers={"X-Client-Id": "v-baseline"})
        data = ok(answer)
        account = User(http, data["token"], data["user_id"])
        wire = account.run(account.new_session(), GENERATE)
    texts = final_texts(wire)
    assert len(texts) >= 2 and "(1920x1080)" in texts[0], texts
    return texts


# -- selecting variants ------------------------------------------------------------------------


def test_variant_names_parse_alone_combined_or_as_a_list() -> None:
    assert parse_variants(None) == ActiveVariants()
    assert parse_variants("quiet-stream").as_list() == ["quiet-stream"]
    combined = parse_variants("state-slow, progressive")
    assert combined == parse_variants(["progressive", "state-slow"]) == parse_variants(combined)
    assert combined.as_list() == ["state-slow", "progressive"]  # in the order of VARIANTS
    assert "progressive" in combined and "quiet-stream" not in combined
    with pytest.raises(ValueError, match="valid: render-top-level, render-percent"):
        parse_variants("progresive")
    with pytest.raises(ValueError, match="unknown variant"):
        _ = "no-such-variant" in combined  # a typo in the emulator's own code raises
    assert len(VARIANTS) == 15 and len(set(VARIANTS)) == 15


def test_start_refuses_unknown_variants() -> None:
    with pytest.raises(ValueError, match="plan-402"):
        start(variant="plan-403")


def test_the_handle_and_the_admin_api_switch_variants(server: Any, http: httpx.Client) -> None:
    assert len(server.variants) == 0 and server.state_delay_s == 3.0
    assert server.set_variants("progressive,quiet-stream").as_list() == [
        "quiet-stream",
        "progressive",
    ]
    assert "progressive" in server.variants and "variants=" in repr(server)
    answer = http.post("/_emulator/variants", json={"variants": ["plan-402"], "state_delay_s": 1})
    assert ok(answer)["variants"] == ["plan-402"] and ok(answer)["state_delay_s"] == 1.0
    assert server.variants.as_list() == ["plan-402"] and server.state_delay_s == 1.0
    only_delay = ok(http.post("/_emulator/variants", json={"state_delay_s": 2}))
    assert only_delay["variants"] == ["plan-402"] and only_delay["state_delay_s"] == 2.0
    read = ok(http.get("/_emulator/variants"))
    assert read["available"] == list(VARIANTS)
    bad_bodies: list[dict[str, Any]] = [{"variants": ["nope"]}, {"state_delay_s": -1}, {"x": 1}]
    for bad in bad_bodies:
        assert http.post("/_emulator/variants", json=bad).status_code == 400
    assert ok(http.post("/_emulator/variants", json={"variants": []}))["variants"] == []


def test_the_serve_command_takes_variants() -> None:
    args = build_parser().parse_args(
        ["serve", "--variant", "progressive,quiet-stream", "--variant", "state-slow"]
    )
    assert args.variant == ["quiet-stream", "progressive", "state-slow"]
    assert build_parser().parse_args(["serve"]).variant == []
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--variant", "bogus"])


def test_switch_counters_restart_when_the_set_changes() -> None:
    switch = VariantSwitch("state-failing", state_delay_s=0.5)
    assert [switch.count("reads", "s1") for _ in range(3)] == [1, 2, 3]
    assert switch.count("reads", "s2") == 1
    switch.note("s1", "asked", True)
    switch.set("state-failing")
    assert switch.count("reads", "s1") == 1 and switch.recall("s1", "asked") is None


# -- render answers ------------------------------------------------------------------------------


def still_draft(user: User, session_id: str, seconds: float, size: tuple[int, int]) -> dict:
    image = user.upload(session_id, "still.png")[0]
    ms = round(seconds * 1000)
    return {
        "d": ms,
        "m": {"title": "t", "width": size[0], "height": size[1], "fps": 10},
        "t": [
            {"id": "v", "tt": 0, "sg": [{"id": "s", "st": 0, "d": ms, "src": image["cdn_url"]}]},
            {"id": "x", "tt": 7, "sg": [{"id": "t", "st": 0, "d": ms, "tx": "Hello"}]},
        ],
    }


def submit(user: User, render_id: str, session_id: str, draft: dict, **output: str) -> Any:
    body = {"id": render_id, "sessionId": session_id, "draft": draft, "output": output}
    return user.post("/api/render/proxy/lambda", json=body)


def poll(user: User, render_id: str) -> dict[str, Any]:
    body = user.get(f"/api/render/proxy/lambda/{render_id}").json()
    return body["data"] or body


def wait_render(user: User, render_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Every status seen until the job ends."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(poll(user, render_id))
        if seen[-1]["status"] in ("completed", "failed", "cancelled"):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"render {render_id} did not finish: {seen[-1]}")


def test_render_top_level(server: Any, user: User) -> None:
    session_id = user.new_session()
    draft = still_draft(user, session_id, 1, (160, 90))
    server.set_variants("render-top-level")
    submitted = submit(user, "render_top_1", session_id, draft, quality="low").json()
    assert submitted == {
        "success": True,
        "data": None,
        "id": "render_top_1",
        "status": "pending",
        "progress": 0,
    }
    final = wait_render(user, "render_top_1")[-1]
    body = user.get("/api/render/proxy/lambda/render_top_1").json()
    assert body["data"] is None and "code" not in body and "outputUrl" not in body
    assert body["status"] == final["status"] == "completed" and body["progress"] == 1.0
    assert user.http.get(body["output"]["url"]).content[4:8] == b"ftyp"


def test_render_percent(server: Any, user: User) -> None:
    session_id = user.new_session()
    draft = still_draft(user, session_id, 3, (320, 180))
    server.set_variants("render-percent")
    submitted = ok(submit(user, "render_pct_1", session_id, draft, quality="low"))
    assert submitted["progress"] == 5
    seen = wait_render(user, "render_pct_1")
    assert seen[-1]["status"] == "completed" and seen[-1]["progress"] == 100
    before = [s["progress"] for s in seen if s["status"] != "completed"]
    assert all(isinstance(p, int) and 5 <= p <= 99 for p in before), before
    assert before == sorted(before)
    ok(submit(user, "render_pct_2", session_id, {"t": []}))  # nothing to render: it fails
    failed = wait_render(user, "render_pct_2")[-1]
    assert failed["status"] == "failed" and failed["progress"] < 100


def test_plan_402_refuses_export_for_the_plan(server: Any, user: User) -> None:
    session_id = user.new_session()
    server.set_variants("plan-402")
    refused = submit(user, "render_plan_1", session_id, {"t": []})
    assert refused.status_code == 402
    message = refused.json()["message"].lower()
    assert "free plan" in message and "credit" not in message


def test_cancel_stops_a_render_and_no_cancel_has_no_endpoint(server: Any, user: User) -> None:
    session_id = user.new_session()
    long_draft = still_draft(user, session_id, 600, (320, 180))
    ok(submit(user, "render_cancel_1", session_id, long_draft, quality="high"))
    ok(submit(user, "render_cancel_2", session_id, long_draft))  # queued behind the first
    deadline = time.monotonic() + 30
    while poll(user, "render_cancel_1")["progress"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert poll(user, "render_cancel_1")["status"] == "processing"

    server.set_variants("no-cancel")
    refused = user.post("/api/render/proxy/lambda/render_cancel_2/cancel")
    assert (refused.status_code, refused.json()) == (404, NOT_FOUND)
    server.set_variants(None)

    for render_id in ("render_cancel_2", "render_cancel_1"):
        answer = user.post(f"/api/render/proxy/lambda/{render_id}/cancel")
        assert answer.json() == {
            "code": 0,
            "message": "ok",
            "data": {"id": render_id, "status": "cancelled"},
        }
        assert poll(user, render_id)["status"] == "cancelled"
        assert poll(user, render_id)["error"] == "cancelled"
    assert ok(user.post("/api/render/proxy/lambda/render_cancel_1/cancel"))["status"] == "cancelled"
    renders = server.data_dir / "media" / "renders"
    # ffmpeg is killed at its next progress report, then its partial file is removed.
    assert eventually(lambda: not processes_naming("render_cancel_1"))
    assert eventually(lambda: not [p for p in renders.iterdir() if "render_cancel" in p.name])

    ok(submit(user, "render_after_cancel", session_id, still_draft(user, session_id, 1, (160, 90))))
    assert wait_render(user, "render_after_cancel")[-1]["status"] == "completed"
    again = user.post("/api/render/proxy/lambda/render_after_cancel/cancel")
    assert again.status_code == 409 and again.json()["code"] == 409
    assert poll(user, "render_cancel_1")["status"] == "cancelled"


def eventually(condition: Callable[[], object], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def processes_naming(marker: str) -> list[str]:
    """Pids whose command line contains ``marker`` (Linux /proc; the render's ffmpeg)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                pids.append(cmdline.parent.name)
        except OSError:
            continue
    return pids


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("mp4", "video/mp4"), ("webm", "video/webm"), ("gif", "image/gif"), ("png", "image/png")],
)
def test_export_formats_decode(server: Any, user: User, fmt: str, content_type: str) -> None:
    from nemo_notebook.emulator.media.render import GIF_MAX_WIDTH, probe

    session_id = user.new_session()
    draft = still_draft(user, session_id, 2, (640, 360))
    render_id = f"render_format_{fmt}"
    ok(submit(user, render_id, session_id, draft, format=fmt, quality="low"))
    final = wait_render(user, render_id)[-1]
    assert final["status"] == "completed", final
    url = final["output"]["url"]
    assert url.split("?", 1)[0].endswith(f"/{render_id}.{fmt}") and url == final["outputUrl"]
    served = user.http.get(url)
    assert served.headers["content-type"] == content_type
    download = user.get(f"/api/render/proxy/{render_id}/download")
    assert download.headers["content-type"] == content_type
    assert f'filename="{render_id}.{fmt}"' in download.headers["content-disposition"]
    assert download.content == served.content and len(served.content) == final["output"]["size"]
    path = server.data_dir / "media" / "renders" / f"{render_id}.{fmt}"
    if fmt in ("mp4", "webm"):
        info = probe(path)
        codecs = {"mp4": ("h264", "aac"), "webm": ("vp9", "opus")}[fmt]
        assert (info["video_codec"], info["audio_codec"]) == codecs
        assert (info["width"], info["height"]) == (640, 360)
        assert abs(info["duration_s"] - 2) < 0.2
    else:
        image = Image.open(BytesIO(served.content))
        if fmt == "png":
            assert image.format == "PNG" and image.size == (640, 360)  # the full canvas
            red, _green, blue = image.convert("RGB").getpixel((10, 10))  # type: ignore[misc]
            assert blue > 150 > red  # the blue still, 1 s in
        else:
            assert image.format == "GIF" and image.size == (min(640, GIF_MAX_WIDTH), 270)
            assert getattr(image, "n_frames", 1) >= 15


def test_an_unknown_export_format_is_400(user: User) -> None:
    refused = submit(user, "render_format_bad", user.new_session(), {"t": []}, format="avi")
    assert refused.status_code == 400
    assert "mp4, webm, gif, png" in refused.json()["message"]


# -- the state endpoint ------------------------------------------------------------------------


def test_state_slow(server: Any, http: httpx.Client, user: User) -> None:
    session_id = user.new_session()
    answer = http.post("/_emulator/variants", json={"variants": "state-slow", "state_delay_s": 0.4})
    assert ok(answer)["state_delay_s"] == 0.4
    started = time.monotonic()
    ok(user.state_response(session_id))
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    ok(user.get("/api/credits/balance/simple"))
    assert time.monotonic() - started < 0.3  # only the state endpoint is slow


def test_state_failing(server: Any, user: User) -> None:
    session_id, other = user.new_session(), user.new_session()
    server.set_variants("state-failing")
    answers = [user.state_response(session_id) for _ in range(9)]
    assert [a.status_code for a in answers] == [500, 200, 403, 200, 404, 200, 200, 200, 500]
    assert answers[0].json()["code"] == 500 and answers[2].json()["code"] == 403
    assert answers[4].headers["content-type"].startswith("text/html")
    assert "404 Not Found" in answers[4].text
    assert answers[6].headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(answers[6].text)
    for good in answers[1:8:2]:
        assert ok(good)["session_id"] == session_id
    assert user.state_response(other).status_code == 500  # counted per session


def test_state_missing(server: Any, http: httpx.Client, user: User) -> None:
    session_id = user.new_session()
    server.set_variants("state-missing")
    anonymous = http.get("/api/state/nemo_agent/me/1/latest")
    for response in (user.state_response(session_id), anonymous):
        assert (response.status_code, response.json()) == (404, NOT_FOUND)
    ok(user.get("/api/credits/balance/simple"))


def test_state_maps(server: Any, user: User) -> None:
    session_id = user.new_session()
    user.upload(session_id, "a.png", "b.png")
    server.set_variants("state-maps")
    state = ok(user.state_response(session_id))["state"]
    assert list(state["video_infos"]) == ["video_1", "video_2"]
    assert [v["filename"] for v in state["video_infos"].values()] == ["a.png", "b.png"]
    assert state["generated_media"] == {} and state["video_analyses"] == {}
    server.set_variants(None)
    assert isinstance(ok(user.state_response(session_id))["state"]["video_infos"], list)


# -- the chat stream ---------------------------------------------------------------------------


def test_quiet_stream_sends_nothing_while_a_tool_runs(
    server: Any, user: User, baseline: list[str]
) -> None:
    server.set_variants("quiet-stream")
    wire = user.run(user.new_session(), GENERATE)
    assert wire.status == 200
    assert all(frame.startswith("data: {") for frame in wire.texts), wire.texts
    assert all("author" in event for event in wire.events)  # no heartbeat frames
    first_call = next(i for i, e in enumerate(wire.events) if calls_in([e]))
    gap = wire.frames[first_call + 1][0] - wire.frames[first_call][0]
    assert gap >= 1.5 * TIME_SCALE > HEARTBEAT_S * TIME_SCALE  # silent longer than a beat
    assert final_texts(wire) == baseline


def test_progressive_streaming_has_the_stock_adk_shape(
    server: Any, user: User, baseline: list[str]
) -> None:
    server.set_variants("progressive")
    wire = user.run(user.new_session(), GENERATE)
    events = [e for e in wire.events if "author" in e]  # not the keep-alives
    assert not any("turnComplete" in e for e in events)
    for event in events:
        assert list(event["actions"]) == [
            "stateDelta",
            "artifactDelta",
            "requestedAuthConfigs",
            "requestedToolConfirmations",
        ]
        assert event["nodeInfo"] == {"path": "nemo_agent@1"} and event["author"] == "nemo_agent"
    mixed = [e for e in events if [next(iter(p)) for p in parts_of(e)] == [
        "text", "functionCall", "text"]]  # fmt: skip
    assert len(mixed) == 1 and mixed[0]["partial"] is False
    aggregate = mixed[0]
    assert aggregate["finishReason"] == "STOP" and aggregate["longRunningToolIds"] == []
    call = parts_of(aggregate)[1]["functionCall"]
    assert list(call) == ["id", "args", "name"]
    streamed = [e for e in events if e["id"] == aggregate["id"] and e["partial"]]
    assert [p for e in streamed for p in parts_of(e) if "functionCall" in p] == [
        {"functionCall": call}
    ]
    assert streamed[-1]["finishReason"] == "STOP"
    assert not any("finishReason" in e for e in streamed[:-1])
    text = "".join(p["text"] for e in streamed for p in parts_of(e) if "text" in p)
    assert text == parts_of(aggregate)[0]["text"] + parts_of(aggregate)[2]["text"]
    assert "".join(final_texts(wire)) == "".join(baseline)  # the same words, split otherwise
    responses = [e for e in events if parts_of(e) and "functionResponse" in parts_of(e)[0]]
    assert responses and all("partial" not in e for e in responses)


STOCK_AGENT = textwrap.dedent(
    """
    from google.adk.agents import LlmAgent
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_response import LlmResponse
    from google.adk.utils.streaming_utils import StreamingResponseAggregator
    from google.genai import types


    def generate_image(prompt: str) -> dict:
        return {"url": "https://x.test/a.png"}


    def chunk(part, finish=None):
        content = types.Content(role="model", parts=[part])
        candidate = types.Candidate(content=content, finish_reason=finish)
        return types.GenerateContentResponse(candidates=[candidate])


    class FakeLlm(BaseLlm):
        async def generate_content_async(self, llm_request, stream=False):
            parts = [p for c in llm_request.contents for p in (c.parts or [])]
            stop = types.FinishReason.STOP
            if any(p.function_response for p in parts):
                chunks = [chunk(types.Part(text="Done: ")), chunk(types.Part(text="ok."), stop)]
            else:
                call = types.FunctionCall(id="call_1", name="generate_image", args={"prompt": "x"})
                chunks = [chunk(types.Part(text="Sure. ")), chunk(types.Part(text="Making it. ")),
                          chunk(types.Part(function_call=call)),
                          chunk(types.Part(text="On its way."), stop)]
            aggregator = StreamingResponseAggregator()
            for piece in chunks:
                async for response in aggregator.process_response(piece):
                    yield response
            yield aggregator.close()


    root_agent = LlmAgent(
        name="nemo_agent", model=FakeLlm(model="fake"), instruction="-", tools=[generate_image]
    )
    """
)


def stock_adk_events(root: Path) -> list[dict[str, Any]]:
    """One streamed turn of a stock ``adk api_server`` serving a fake model (no network)."""
    agent_dir = root / "agents" / "nemo_agent"
    agent_dir.mkdir(parents=True)
    (agent_dir / "__init__.py").write_text("from . import agent\n")
    (agent_dir / "agent.py").write_text(STOCK_AGENT)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "google.adk.cli", "api_server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--session_service_uri", "memory://"]
    command += ["--artifact_service_uri", "memory://", str(root / "agents")]
    log = (root / "adk.log").open("wb")
    proc = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert eventually(lambda: adk_ready(url), timeout=60), (root / "adk.log").read_text()
        session = {"session_id": "s1"}
        httpx.post(f"{url}/apps/nemo_agent/users/me/sessions", json=session, timeout=10)
        body = {
            "app_name": "nemo_agent",
            "user_id": "me",
            "session_id": "s1",
            "new_message": {"role": "user", "parts": [{"text": "go"}]},
            "streaming": True,
        }
        answer = httpx.post(f"{url}/run_sse", json=body, timeout=30)
        return [
            json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data:")
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def adk_ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/list-apps", timeout=1).status_code == 200
    return False


def signature(event: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """An event's keys (in order) and its parts' kinds: what the variant must match."""
    return tuple(event), tuple(next(iter(part)) for part in parts_of(event))


@pytest.mark.slow
def test_progressive_matches_a_stock_google_adk_api_server(
    server: Any, user: User, tmp_path: Path
) -> None:
    pytest.importorskip("google.adk")
    stock = stock_adk_events(tmp_path)
    server.set_variants("progressive")
    ours = [e for e in user.run(user.new_session(), GENERATE).events if "author" in e]
    assert {signature(e) for e in stock} <= {signature(e) for e in ours}
    assert {json.dumps(e["actions"]) for e in stock} == {json.dumps(stock[0]["actions"])}
    assert ours[0]["actions"] == stock[0]["actions"] and ours[0]["nodeInfo"] == stock[0]["nodeInfo"]
    stock_call, our_call = calls_in(stock)[0], calls_in(ours)[0]
    assert list(our_call) == list(stock_call)
    mixed = [e for e in stock if signature(e)[1] == ("text", "functionCall", "text")]
    assert len({e["id"] for e in stock if e["id"] == mixed[0]["id"]}) == 1  # one id per response
    assert len([e for e in stock if e["id"] == mixed[0]["id"]]) == 5


def test_text_frames(server: Any, user: User, baseline: list[str]) -> None:
    server.set_variants("text-frames")
    wire = user.run(user.new_session(), GENERATE)
    frames = wire.events
    assert {f["type"] for f in frames} <= {"text", "tool_call", "tool_result", "heartbeat"}
    assert "".join(f["text"] for f in frames if f["type"] == "text") == "".join(baseline)
    assert all("content" not in f for f in frames)
    calls = [f for f in frames if f["type"] == "tool_call"]
    results = [f for f in frames if f["type"] == "tool_result"]
    assert [c["name"] for c in calls] == ["generate_image", "add_music", "add_text"]
    assert [r["name"] for r in results] == [c["name"] for c in calls]
    assert calls[0]["args"] == {"prompt": "a futuristic city at night, realistic"}
    assert results[0]["result"]["width"] == 1920
    assert not any(f.startswith(":") for f in wire.texts)  # keep-alives are typed frames too
    frames = user.run(user.new_session(), "hello", streaming=False).events
    whole = [f for f in frames if f["type"] != "heartbeat"]
    assert [f["type"] for f in whole] == ["text"] and whole[0]["text"].startswith("I am the")


def test_fstring_errors_are_not_json(server: Any, user: User) -> None:
    server.set_variants("fstring-errors")
    server.set_credits(user.user_id, 5)  # enough to start a turn, not for an image
    wire = user.run(user.new_session(), GENERATE)
    last = wire.texts[-1]
    assert last.startswith('data: {"error": "The agent "nemo_agent" stopped: Not enough credits')
    with pytest.raises(ValueError):
        json.loads(last[6:])
    assert user.credits() == 5


def test_ask_question_first_then_the_original_request(
    server: Any, user: User, baseline: list[str]
) -> None:
    server.set_variants("ask-question")
    shapes = []
    for _ in range(3):
        session_id = user.new_session()
        asked = user.run(session_id, GENERATE)
        assert final_texts(asked) == [] and not any(e.get("partial") for e in asked.events)
        (call,) = calls_in(asked.events)
        (result,) = [p for e in asked.events for p in parts_of(e) if "functionResponse" in p]
        assert call["name"] == result["functionResponse"]["name"] == "ask_question"
        shapes.append(call["args"])
    assert user.credits() == 100  # asking is free
    labels = list(OPTIONS["en"])
    assert shapes[0] == {"question": "Which aspect ratio would you like?", "options": labels}
    assert shapes[1]["questions"][0]["options"][1] == {"id": "b", "label": "9:16 portrait"}
    assert shapes[2]["prompt"] and [o["id"] for o in shapes[2]["options"]] == ["a", "b", "c"]

    answered = user.run(session_id, "2")
    assert final_texts(answered) == [t.replace("1920x1080", "1080x1920") for t in baseline]
    state = ok(user.state_response(session_id))["state"]
    assert state["canvas_config"]["ratio"] == "9:16" and state["draft"]["t"]
    assert user.credits() == 100 - 27  # charged as usual, once
    again = user.run(session_id, "generate an image of a lake")  # asked once per session
    assert "ask_question" not in [c["name"] for c in calls_in(again.events)]


def test_ask_question_in_chinese(server: Any, user: User) -> None:
    server.set_variants("ask-question")
    session_id = user.new_session("zh")
    asked = user.run(session_id, "生成一张海边日落的图片")
    (call,) = calls_in(asked.events)
    assert call["args"]["question"] == "您想要哪种画面比例？"
    assert call["args"]["options"] == list(OPTIONS["zh"])
    answered = user.run(session_id, "1:1 方形")
    assert any("图片" in t for t in final_texts(answered))
    assert ok(user.state_response(session_id))["state"]["canvas_config"]["ratio"] == "1:1"


@pytest.mark.parametrize(
    ("answer", "index"),
    [("2", 1), ("3.", 2), ("b", 1), ("(c)", 2), ("option 1", 0), ("9:16 portrait", 1),
     ("square", 2), ("the landscape one", 0), ("9", None), ("whatever", None)],
)  # fmt: skip
def test_answers_pick_options(answer: str, index: int | None) -> None:
    assert chosen_option(answer, OPTIONS["en"]) == index


# -- auth, credits ---------------------------------------------------------------------------


def test_gateway_codes(server: Any, http: httpx.Client, user: User) -> None:
    server.set_variants("gateway-codes")
    unknown = http.get(
        "/api/credits/balance/simple", headers={"Authorization": "Bearer nmv_usr_" + "z" * 43}
    )
    assert (unknown.status_code, unknown.json()["code"]) == (401, 1011)
    server.store.expire_all_tokens()
    expired = user.get("/api/credits/balance/simple")
    assert (expired.status_code, expired.json()["code"]) == (401, 1010)
    server.set_variants(None)
    assert user.get("/api/credits/balance/simple").json()["code"] == 1001


def test_credits_402(server: Any, user: User) -> None:
    session_id = user.new_session()
    server.set_credits(user.user_id, 0)
    server.set_variants("credits-402")
    refused = user.post("/run_sse", json={
        "app_name": "nemo_agent", "session_id": session_id,
        "new_message": {"parts": [{"text": GENERATE}]}})  # fmt: skip
    assert (refused.status_code, refused.json()) == (402, {"message": "Insufficient credits"})


# -- independent of variants -------------------------------------------------------------------


def test_several_files_in_one_upload_are_all_kept(user: User) -> None:
    session_id = user.new_session()
    files = user.upload(session_id, "one.png", "two.png", "three.png")
    assert [f["filename"] for f in files] == ["one.png", "two.png", "three.png"]
    for item in files:
        assert user.http.get(item["cdn_url"]).content == png_bytes()
    infos = ok(user.state_response(session_id))["state"]["video_infos"]
    assert [i["cdn_url"] for i in infos] == [f["cdn_url"] for f in files]


def test_the_user_id_is_in_the_session_and_state_answers(user: User) -> None:
    created = ok(user.post("/api/tasks/me/with-session/nemo_agent", json={}))
    assert created["user_id"] == user.user_id and created["user_id"].startswith("anon_")
    assert ok(user.state_response(created["session_id"]))["user_id"] == user.user_id


def test_a_forgotten_session_is_1002_everywhere(
    server: Any, http: httpx.Client, user: User
) -> None:
    session_id = user.new_session()
    ok(submit(user, "render_forgotten", session_id, {"t": []}))
    assert server.forget_session(session_id) is True
    calls = [
        user.state_response(session_id),
        user.post("/run_sse", json={"app_name": "nemo_agent", "session_id": session_id,
                                    "new_message": {"parts": [{"text": "hi"}]}}),
        user.post(f"/api/upload-video/nemo_agent/me/{session_id}",
                  files=[("files", ("a.png", png_bytes(), "image/png"))]),
        user.post("/api/auth/claim-token", json={"session_id": session_id}),
        submit(user, "render_forgotten_2", session_id, {"t": []}),
        user.get("/api/render/proxy/lambda/render_forgotten"),
    ]  # fmt: skip
    assert [(c.status_code, c.json()["code"]) for c in calls] == [(404, 1002)] * len(calls)
    other = user.new_session()
    answer = http.post("/_emulator/forget-session", json={"session_id": other})
    assert ok(answer) == {"session_id": other, "forgot": True}
    assert user.state_response(other).json()["code"] == 1002
    assert ok(http.post("/_emulator/forget-session", json={"session_id": other}))["forgot"] is False
