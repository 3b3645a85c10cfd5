"""Image provenance from real metadata written in the test (no downloaded fixtures)."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from nemo_notebook.emulator.media import provenance, scenes
from nemo_notebook.emulator.media.image_metadata import decode_user_comment

SD_PARAMETERS = (
    "a lighthouse on a cliff, golden hour, highly detailed\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: 6ce0161689, "
    'Model: v1-5-pruned-emaonly, Lora hashes: "a: 1, b: 2", Version: v1.7.0'
)


def _photo_like(size: tuple[int, int] = (96, 64)) -> Image.Image:
    rng = np.random.default_rng(3)
    gradient = np.linspace(40, 200, size[0])[None, :, None] * np.ones((size[1], 1, 3))
    pixels = np.clip(gradient + rng.normal(0, 12, (size[1], size[0], 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _png_with(tmp_path: Path, name: str, **texts: str) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    path = tmp_path / name
    _photo_like().save(path, pnginfo=info)
    return path


def test_stable_diffusion_webui_parameters(tmp_path: Path) -> None:
    result = provenance.inspect_image(_png_with(tmp_path, "sd.png", parameters=SD_PARAMETERS))
    assert result["found"] is True
    assert result["generator"].startswith("Stable Diffusion WebUI")
    assert result["prompt"] == "a lighthouse on a cliff, golden hour, highly detailed"
    assert result["negative_prompt"] == "blurry, lowres"
    params = result["parameters"]
    assert params["Steps"] == "20" and params["Sampler"] == "Euler a"
    assert params["CFG scale"] == "7" and params["Seed"] == "1234"
    assert params["Model"] == "v1-5-pruned-emaonly" and params["Size"] == "512x512"
    assert params["Lora hashes"] == "a: 1, b: 2"  # quoted values keep their commas
    assert (result["format"], result["width"], result["height"]) == ("PNG", 96, 64)
    assert any("parameters" in source for source in result["sources"])
    assert "lighthouse" in result["summary"] and "not proof" in result["summary"]


COMFY_PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple",
          "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode",
          "inputs": {"text": "a red fox in snow", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark", "clip": ["4", 1]}},
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 42, "steps": 30, "cfg": 6.5, "sampler_name": "dpmpp_2m", "scheduler": "karras",
        "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
        "latent_image": ["5", 0]}},
}  # fmt: skip
COMFY_WORKFLOW = {"nodes": [
    {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["sd_xl_base_1.0.safetensors"]},
    {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["a red fox in snow"]},
]}  # fmt: skip


def test_comfyui_prompt_graph(tmp_path: Path) -> None:
    path = _png_with(
        tmp_path, "comfy.png", prompt=json.dumps(COMFY_PROMPT), workflow=json.dumps(COMFY_WORKFLOW)
    )
    result = provenance.inspect_image(path)
    assert result["found"] is True and result["generator"] == "ComfyUI"
    assert result["prompt"] == "a red fox in snow"
    assert result["negative_prompt"] == "watermark"
    params = result["parameters"]
    assert params["Model"] == "sd_xl_base_1.0.safetensors"
    assert (params["Seed"], params["Steps"], params["Sampler"]) == ("42", "30", "dpmpp_2m")


def test_comfyui_workflow_only(tmp_path: Path) -> None:
    result = provenance.inspect_image(
        _png_with(tmp_path, "wf.png", workflow=json.dumps(COMFY_WORKFLOW))
    )
    assert result["generator"] == "ComfyUI"
    assert result["parameters"]["Model"] == "sd_xl_base_1.0.safetensors"
    assert result["prompt"] == "a red fox in snow"


def test_novelai_chunks(tmp_path: Path) -> None:
    comment = json.dumps(
        {"uc": "bad hands", "steps": 28, "sampler": "k_euler", "seed": 9, "scale": 5}
    )
    path = _png_with(
        tmp_path,
        "nai.png",
        Software="NovelAI",
        Description="1girl, cherry blossoms",
        Comment=comment,
    )
    result = provenance.inspect_image(path)
    assert result["generator"] == "NovelAI" and result["prompt"] == "1girl, cherry blossoms"
    assert result["negative_prompt"] == "bad hands"
    assert result["parameters"]["Steps"] == "28"


def test_jpeg_exif_software_user_comment_and_camera(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0131] = "Photo Studio 5"
    exif[0x010E] = "harbour at dawn"
    exif[0x010F], exif[0x0110] = "Canon", "EOS R5"
    comment = "a harbour at dawn\nSteps: 25, Sampler: DPM++ 2M, Seed: 7"
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + comment.encode("utf-16-be")
    path = tmp_path / "photo.jpg"
    _photo_like().save(path, exif=exif, quality=90)
    result = provenance.inspect_image(path)
    assert result["found"] is True and result["format"] == "JPEG"
    assert result["software"] == "Photo Studio 5"
    assert result["camera"] == "Canon EOS R5"
    assert result["prompt"] == "a harbour at dawn"
    assert result["parameters"]["Steps"] == "25"
    assert "EXIF UserComment (0x9286)" in result["sources"]
    assert "camera" in result["summary"]


def test_jpeg_ascii_user_comment_is_decoded() -> None:
    assert decode_user_comment(b"ASCII\0\0\0hello") == "hello"
    assert decode_user_comment(b"UNICODE\0" + "hi".encode("utf-16-le")) == "hi"
    assert decode_user_comment(b"short") is None


XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
 xmlns:xmp="http://ns.adobe.com/xap/1.0/"
 Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
 xmp:CreatorTool="Image Creator"/>
</rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"""


def test_xmp_digital_source_type(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP)
    path = tmp_path / "xmp.png"
    _photo_like().save(path, pnginfo=info)
    result = provenance.inspect_image(path)
    assert result["found"] is True
    assert result["digital_source_type"] == "trainedAlgorithmicMedia"
    assert result["software"] == "Image Creator"
    assert "XMP DigitalSourceType" in result["sources"]
    assert "generative AI" in result["summary"]


def test_xmp_element_form_digital_capture(tmp_path: Path) -> None:
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description>'
        "<Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/"
        "digitalCapture</Iptc4xmpExt:DigitalSourceType></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    path = tmp_path / "capture.png"
    _photo_like().save(path, pnginfo=info)
    result = provenance.inspect_image(path)
    assert result["digital_source_type"] == "digitalCapture"
    assert "camera" in result["summary"]


def test_c2pa_chunk_presence(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add(b"caBX", b"\0\0\0\x10jumb\0\0\0\x08jumdc2pa")
    path = tmp_path / "c2pa.png"
    _photo_like().save(path, pnginfo=info)
    result = provenance.inspect_image(path)
    assert result["c2pa"] is True and result["found"] is True
    assert "not verified" in result["summary"]


def test_our_procedural_images_are_recognised(tmp_path: Path) -> None:
    path = tmp_path / "scene.png"
    scenes.save_image("a misty lake at dawn", path, 96, 54)
    result = provenance.inspect_image(path)
    assert "procedural" in result["generator"]
    assert result["prompt"] == "a misty lake at dawn"
    assert result["digital_source_type"] == "algorithmicMedia"
    assert "not an AI model" in result["summary"]


def test_plain_image_has_an_honest_summary(tmp_path: Path) -> None:
    for name in ("plain.png", "plain.jpg"):
        path = tmp_path / name
        _photo_like().save(path)
        result = provenance.inspect_image(path)
        assert result["found"] is False and result["sources"] == []
        assert "No generation metadata was found" in result["summary"]
        assert "does not prove" in result["summary"]
        assert result["reason"] is None and result["width"] == 96


def test_truncated_file(tmp_path: Path) -> None:
    full = tmp_path / "full.png"
    _photo_like((256, 256)).save(full)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    result = provenance.inspect_image(truncated)
    assert result["found"] is False
    assert "truncated" in result["reason"]


@pytest.mark.parametrize(
    "content", [b"just some text, not an image", b"", b"\x89PNG\r\n\x1a\n\0\0", b"\xff\xd8\xff\xe0"]
)
def test_non_images_never_raise(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "thing.png"
    path.write_bytes(content)
    result = provenance.inspect_image(path)
    assert result["found"] is False and result["reason"]
    assert result["summary"]


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        provenance.inspect_image(tmp_path / "nope.png")


def test_parse_sd_parameters_without_negative() -> None:
    parsed = provenance.parse_sd_parameters("a cat\nSteps: 4, Seed: 2")
    assert parsed == {
        "prompt": "a cat",
        "negative_prompt": None,
        "parameters": {"Steps": "4", "Seed": "2"},
    }


# -- hostile files: bounded memory and time, never an exception ------------------------------

MB = 1024 * 1024


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_with_chunks(*chunks: bytes) -> bytes:
    """A valid 8x8 PNG with ``chunks`` spliced in after the pixel data, before IEND."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (30, 90, 160)).save(buffer, "PNG")
    data = buffer.getvalue()
    end = data.rindex(b"IEND") - 4
    return data[:end] + b"".join(chunks) + data[end:]


def deflate_bomb(inflated_size: int, byte: bytes = b"a") -> bytes:
    """zlib data that inflates to ``inflated_size`` bytes, made without holding them."""
    packer = zlib.compressobj(9)
    block = byte * MB
    parts = [packer.compress(block) for _ in range(inflated_size // MB)]
    return b"".join(parts) + packer.flush()


def itxt(key: bytes, text: bytes, compressed: bool, method: int = 0) -> bytes:
    flags = bytes([1 if compressed else 0, method])
    return png_chunk(b"iTXt", key + b"\0" + flags + b"en\0\0" + text)


def _inspect_in_a_memory_limited_child(path: Path, headroom_mb: int) -> subprocess.CompletedProcess:
    code = f"""
import resource, re, sys
from nemo_notebook.emulator.media import provenance
status = open("/proc/self/status").read()
vm = int(re.search(r"VmSize:\\s+(\\d+) kB", status).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + {headroom_mb} * 1024 * 1024,) * 2)
data = open({str(path)!r}, "rb").read()
texts = provenance.png_text_chunks(data)
result = provenance.inspect_image({str(path)!r})
print(len(str(texts)) + len(str(result)))
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_compressed_text_bomb_is_never_inflated(tmp_path: Path) -> None:
    # ~200 KB of iTXt that inflates to 200 MB: one chunk with zlib (method 0), one with an
    # undefined method that Pillow skips (and the old reader inflated anyway).
    bomb = deflate_bomb(200 * MB)
    assert len(bomb) < 210_000
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_chunks(
        itxt(b"parameters", bomb, compressed=True, method=1),
        itxt(b"Description", bomb, compressed=True),
    ))  # fmt: skip
    done = _inspect_in_a_memory_limited_child(path, headroom_mb=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) < 20_000  # nothing of the bomb is kept


def test_text_chunks_are_capped_one_by_one_and_in_all() -> None:
    just_fits = zlib.compress(b"b" * provenance.MAX_TEXT_CHUNK_BYTES)
    too_big = zlib.compress(b"c" * (provenance.MAX_TEXT_CHUNK_BYTES + 1))
    texts = provenance.png_text_chunks(png_with_chunks(
        itxt(b"fits", just_fits, compressed=True),
        png_chunk(b"zTXt", b"over\0\0" + too_big),
        png_chunk(b"tEXt", b"plain\0hello"),
    ))  # fmt: skip
    assert texts == {"fits": "b" * provenance.MAX_TEXT_CHUNK_BYTES, "plain": "hello"}
    many = [itxt(f"k{i}".encode(), just_fits, compressed=True) for i in range(10)]
    texts = provenance.png_text_chunks(png_with_chunks(*many))
    assert sum(len(t) for t in texts.values()) <= provenance.MAX_TEXT_BYTES


def test_a_long_settings_chunk_parses_in_linear_time(tmp_path: Path) -> None:
    # Runs of text with no ':' or ',' made the old settings regex quadratic: 60 KB held the
    # GIL for most of a minute. The bound below is a safety net, far above the real time.
    hostile = "a cat\nSteps: 20, " + "x" * 60_000 + "\n" + "\n" * 60_000 + "Steps: 4, Seed: 1"
    path = tmp_path / "slow.png"
    path.write_bytes(png_with_chunks(png_chunk(b"tEXt", b"parameters\0" + hostile.encode())))
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(provenance.inspect_image(path)))
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "inspecting a 120 KB text chunk took over 20 s"
    assert outcome["parameters"]["Steps"] == "4" and outcome["parameters"]["Seed"] == "1"


@pytest.mark.parametrize(
    "xmp",
    [
        "<x:xmpmeta " + "a" * 500_000 + "</x:xmpmeta>",
        "<x:xmpmeta><dc:description>x" + " " * 500_000 + "</x:xmpmeta>",
        "<x:xmpmeta>" + "<a:DigitalSourceType>" * 20_000 + "</x:xmpmeta>",
    ],
)
def test_hostile_xmp_parses_in_linear_time(tmp_path: Path, xmp: str) -> None:
    path = tmp_path / "xmp.png"
    path.write_bytes(png_with_chunks(itxt(b"XML:com.adobe.xmp", xmp.encode(), compressed=False)))
    worker = threading.Thread(target=provenance.inspect_image, args=(path,))
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "a 500 KB XMP packet took over 20 s"


def test_deep_json_and_huge_fields_give_a_small_result(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    path.write_bytes(png_with_chunks(
        png_chunk(b"tEXt", b"prompt\0" + b"[" * 200_000),
        png_chunk(b"tEXt", b"workflow\0" + b"{\"nodes\":" * 50_000),
        png_chunk(b"tEXt", b"Description\0" + b"d" * 200_000),
        png_chunk(b"tEXt", b"parameters\0Steps: 1, " + b", ".join(
            f"K{i}: {'v' * 900}".encode() for i in range(200))),
    ))  # fmt: skip
    result = provenance.inspect_image(path)
    assert result["found"] is True
    assert len(json.dumps(result)) < 100_000
    assert len(result["parameters"]) <= 64 and len(result["description"]) <= 2000


PNG_CHUNK_KINDS = st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IDAT", b"IEND", b"caBX"])
CHUNK_PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(zlib.compress),
    st.tuples(st.binary(max_size=20), st.binary(max_size=4), st.binary(max_size=200)).map(
        lambda parts: parts[0] + b"\0" + parts[1] + b"\0" + zlib.compress(parts[2])
    ),
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(st.tuples(PNG_CHUNK_KINDS, CHUNK_PAYLOADS), max_size=8), st.binary(max_size=40))
def test_png_text_chunks_never_raise(chunks: list[tuple[bytes, bytes]], tail: bytes) -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(k, p) for k, p in chunks) + tail
    texts = provenance.png_text_chunks(data)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in texts.items())
    assert provenance.png_text_chunks(data[: len(data) // 2]) is not None  # truncated too


@FUZZ
@given(st.text(alphabet=st.sampled_from(list('ab :,"\\\n 5Steps')), max_size=400))
def test_sd_parameters_never_raise(text: str) -> None:
    parsed = provenance.parse_sd_parameters("Steps: 1, " + text)
    assert all(isinstance(v, str) for v in parsed["parameters"].values())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(PNG_CHUNK_KINDS, CHUNK_PAYLOADS), max_size=5))
def test_inspect_image_never_raises_on_hostile_chunks(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[tuple[bytes, bytes]]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.png"
    path.write_bytes(png_with_chunks(*(png_chunk(k, p) for k, p in chunks)))
    result = provenance.inspect_image(path)
    assert isinstance(result["summary"], str) and result["summary"]
