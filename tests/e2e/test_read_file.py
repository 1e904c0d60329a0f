"""read_file's images, tail and line numbers through the real stack (gunicorn + gevent server, a real
agent with a throwaway HOME, the official client over /mcp and /sse)."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from tests.e2e.test_file_tools import TRANSPORTS, scenario


def png(width: int = 2, height: int = 2) -> bytes:
    """A real, decodable PNG (red pixels), made here so the test needs no image library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_image_comes_back_as_image_content_and_a_big_one_is_refused(server, box, transport):
    picture = box.scratch / "red.png"
    picture.write_bytes(png())
    webp = box.scratch / "pic.webp"
    webp.write_bytes(b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(24))
    huge = box.scratch / "huge.gif"
    huge.write_bytes(b"GIF89a" + bytes(600 * 1024))

    async def body(call):
        answer = await call("read_file", "box", path=str(picture))
        assert not answer["is_error"], answer["text"]
        images = [c for c in answer["raw"].content if c.type == "image"]
        assert len(images) == 1 and images[0].mime_type == "image/png" and base64.b64decode(images[0].data) == png()
        assert "image/png image" in answer["text"] and "image" not in answer["structured"]
        assert answer["structured"]["mime_type"] == "image/png" and answer["structured"]["size"] == len(png())
        other = await call("read_file", "box", path=str(webp))
        assert [c.mime_type for c in other["raw"].content if c.type == "image"] == ["image/webp"]
        refused = await call("read_file", "box", path=str(huge))
        assert refused["is_error"] and "image/gif image of" in refused["text"] and "512 KiB" in refused["text"]
        several = await call("read_multiple_files", "box", paths=[str(picture)])
        assert "read it alone with read_file" in several["text"]

    scenario(server, transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tail_gives_the_last_lines_numbered_as_in_the_whole_file(server, box, transport):
    log = box.scratch / "app.log"
    log.write_text("".join(f"entry {n}\n" for n in range(1, 5001)))
    open_end = box.scratch / "open.txt"
    open_end.write_text("a\nb\nc")

    async def body(call):
        tail = await call("read_file", "box", path=str(log), tail=3)
        assert tail["structured"]["content"] == "entry 4998\nentry 4999\nentry 5000\n"
        assert tail["structured"]["offset"] == 4998 and tail["structured"]["total_lines"] == 5000
        assert "the last 3 of 5000 lines, from line 4998" in tail["text"]
        numbered = await call("read_file", "box", path=str(log), tail=2, line_numbers=True)
        assert numbered["text"].startswith("  4999\tentry 4999\n  5000\tentry 5000\n")
        page = await call("read_file", "box", path=str(log), offset=10, limit=2, line_numbers=True)
        assert page["text"].startswith("    10\tentry 10\n    11\tentry 11\n")
        last = await call("read_file", "box", path=str(open_end), tail=2)
        assert last["structured"]["content"] == "b\nc" and last["structured"]["total_lines"] == 3
        both = await call("read_file", "box", path=str(log), tail=2, offset=3)
        assert both["is_error"] and "not both" in both["text"]

    scenario(server, transport, body)
