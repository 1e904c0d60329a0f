"""File operations confined to the allowed roots, through agent/policy.py's `PathPolicy`.

A path is checked after resolving every symlink, by whole path components, so `/home/al` does not
admit `/home/alice` and a link pointing out of a root is refused. The checked file is then opened with
O_NOFOLLOW and judged on its descriptor (device and inode), so a symlink swapped in between the check
and the open, or a hard link to a denied file, is refused too.

This confines the file tools only: `run_shell_command` runs with the user's full rights. Use the
sandboxed (container) agent to contain the shell.
"""

from __future__ import annotations

import base64
import os
import stat
from typing import Any

from agent.errors import OperationError
from agent.policy import PathPolicy, wants_directory

__all__ = ["PathPolicy", "list_directory", "read_bytes", "read_file", "wants_directory"]

MAX_LIST_ENTRIES = 1000
BINARY_SNIFF_BYTES = 8192


def read_file(
    policy: PathPolicy, path: str, *, max_bytes: int, offset: int | None = None, limit: int | None = None, tail: int | None = None,
) -> dict[str, Any]:
    """A text file whole, or (with offset/limit, or when over max_bytes) a page of its lines, or (with
    `tail`) its last lines; an image (PNG, JPEG, GIF, WebP) as base64 `image` with its `mime_type`."""
    if tail is not None and (offset is not None or limit is not None):
        raise OperationError("invalid_arguments", "give tail (the last lines) or offset/limit (a page from a line), not both")
    real = policy.resolve(path)
    if not os.path.lexists(real):
        raise OperationError("not_found", f"no such file: {real}")
    info = os.stat(real)
    if stat.S_ISDIR(info.st_mode):
        raise OperationError("not_a_file", f"{real} is a directory, not a file; use list_directory")
    if not stat.S_ISREG(info.st_mode):
        raise OperationError("not_a_file", f"{real} is not a regular file (device, FIFO or socket)")
    fd = policy.open(real, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        opened = os.fstat(handle.fileno())
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) or not stat.S_ISREG(opened.st_mode):
            raise OperationError("path_changed", f"{real} changed while it was being opened; refused")
        sniff = handle.read(BINARY_SNIFF_BYTES)
        mime = image_type(sniff)
        if mime is not None:
            return _image(handle, real, opened.st_size, mime)
        if b"\x00" in sniff:
            raise OperationError(
                "binary_file", f"{real} looks binary ({opened.st_size} bytes, {_kind(sniff)}); not shown as text"
            )
        handle.seek(0)
        if tail is not None:
            return _read_tail(handle, real, opened.st_size, max_bytes, tail)
        if offset is not None or limit is not None or opened.st_size > max_bytes:
            return _read_lines(handle, real, opened.st_size, max_bytes, offset or 1, limit)
        data = handle.read(max_bytes + 1)
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError:
        raise OperationError("binary_file", f"{real} is not UTF-8 text ({len(data)} bytes); not shown") from None
    return {"path": real, "size": len(data), "content": content}


MAX_FILES_AT_ONCE = 50


def read_multiple_files(policy: PathPolicy, paths: list[str], *, max_bytes: int) -> dict[str, Any]:
    """Several text files in one answer, sharing `max_bytes`; one that cannot be read gets its error
    and does not stop the others."""
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise OperationError("invalid_arguments", "paths must be a non-empty list of strings")
    if len(paths) > MAX_FILES_AT_ONCE:
        raise OperationError("invalid_arguments", f"at most {MAX_FILES_AT_ONCE} paths at once, got {len(paths)}")
    answers, left = [], max_bytes
    for path in paths:
        try:
            if left <= 0:
                raise OperationError("budget_spent", f"not read: the {max_bytes}-byte answer budget is spent; read it on its own")
            answer = read_file(policy, path, max_bytes=left)
            if "image" in answer:
                raise OperationError("image_file", f"{answer['path']} is a {answer['mime_type']} image; read it alone with read_file")
            left -= len(answer["content"].encode("utf-8", "surrogatepass"))
        except OperationError as error:
            answer = {"path": path, "error": {"code": error.code, "message": error.message}}
        except OSError as error:
            answer = {"path": path, "error": {"code": "io_error", "message": f"{error.strerror}: {path}"}}
        answers.append(answer)
    return {"files": answers, "read": sum("error" not in a for a in answers), "failed": sum("error" in a for a in answers)}


MAGIC = (
    (b"\x7fELF", "ELF executable"), (b"\x89PNG", "PNG image"), (b"\xff\xd8\xff", "JPEG image"), (b"GIF8", "GIF image"),
    (b"%PDF", "PDF document"), (b"PK\x03\x04", "zip archive"), (b"\x1f\x8b", "gzip data"), (b"SQLite format 3", "SQLite database"),
)


# An image rides base64 in the answer (4/3 of its size), which an SSE event carries up to 1 MiB.
MAX_IMAGE_BYTES = 512 * 1024


def image_type(head: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, GIF or WebP image from its first bytes, else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":  # a PNG opens with its header chunk
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _image(handle, real: str, size: int, mime: str) -> dict[str, Any]:
    if size > MAX_IMAGE_BYTES:
        raise OperationError(
            "file_too_large",
            f"{real} is a {mime} image of {size} bytes, over the {MAX_IMAGE_BYTES // 1024} KiB an answer carries; "
            "scale it down first (e.g. with run_shell_command: convert, sips or ffmpeg)",
        )
    handle.seek(0)
    data = handle.read(MAX_IMAGE_BYTES + 1)
    return {"path": real, "size": len(data), "mime_type": mime, "image": base64.b64encode(data).decode("ascii")}


def _read_tail(handle, real: str, size: int, max_bytes: int, count: int) -> dict[str, Any]:
    """The last `count` lines (within max_bytes), numbered as in the whole file."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise OperationError("invalid_arguments", "tail must be a whole number of lines, at least 1")
    total = 0
    for chunk in iter(lambda: handle.read(1024 * 1024), b""):
        total += chunk.count(b"\n")
    if size:
        handle.seek(size - 1)
        total += handle.read(1) != b"\n"  # a last line without a newline counts
    start = max(size - max_bytes, 0)
    handle.seek(start)
    parts = handle.read(max_bytes).split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    if start > 0 and lines:
        lines = lines[1:]  # the first one is cut: it began before the window
    stopped = ""
    if len(lines) < count and start > 0:
        stopped = f"{max_bytes}-byte read limit reached"
    lines = lines[-count:]
    try:
        content = b"".join(lines).decode("utf-8")
    except UnicodeDecodeError:
        raise OperationError("binary_file", f"{real} is not UTF-8 text ({size} bytes); not shown") from None
    result: dict[str, Any] = {"path": real, "size": size, "content": content, "offset": total - len(lines) + 1, "lines": len(lines), "total_lines": total}
    if stopped:
        result["stopped"] = stopped
    return result


def _kind(head: bytes) -> str:
    return next((name for magic, name in MAGIC if head.startswith(magic)), "binary data")


def _read_lines(handle, real: str, size: int, max_bytes: int, first: int, limit: int | None) -> dict[str, Any]:
    """Lines from `first` (counting from 1), at most `limit` of them and `max_bytes` in all."""
    number = 0
    for number in range(1, first):
        if not handle.readline():
            number -= 1
            break
    lines: list[bytes] = []
    used = 0
    stopped = ""
    while True:
        line = handle.readline()
        if not line:
            break
        if limit is not None and len(lines) >= limit:
            stopped = "line limit reached"
            break
        if used + len(line) > max_bytes:
            if not lines:
                raise OperationError(
                    "file_too_large",
                    f"{real} is {size} bytes, over the {max_bytes}-byte read limit, and line {first} alone does not "
                    "fit; read it with run_shell_command (e.g. cut or head -c)",
                )
            stopped = f"{max_bytes}-byte read limit reached"
            break
        lines.append(line)
        used += len(line)
    data = b"".join(lines)
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError:
        raise OperationError("binary_file", f"{real} is not UTF-8 text ({size} bytes); not shown") from None
    result: dict[str, Any] = {"path": real, "size": size, "content": content, "offset": first, "lines": len(lines)}
    if stopped:
        result["next_offset"] = first + len(lines)
        result["stopped"] = stopped
    else:
        result["total_lines"] = first - 1 + len(lines) if first - 1 <= number else number
    return result


def read_bytes(policy: PathPolicy, real: str, *, max_bytes: int) -> bytes:
    """A regular file's bytes, opened through the policy's gate; refused past `max_bytes`."""
    fd = policy.open(real, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        opened = os.fstat(handle.fileno())
        if not stat.S_ISREG(opened.st_mode):
            raise OperationError("not_a_file", f"{real} is not a regular file")
        if opened.st_size > max_bytes:
            raise OperationError("file_too_large", f"{real} is {opened.st_size} bytes, over the {max_bytes}-byte limit")
        return handle.read(max_bytes + 1)


def _cache_stat(entry: os.DirEntry) -> None:
    try:
        entry.stat()
    except OSError:
        pass


def list_directory(policy: PathPolicy, path: str) -> dict[str, Any]:
    real = policy.resolve(path)
    if not os.path.exists(real):
        raise OperationError("not_found", f"no such directory: {real}")
    if not os.path.isdir(real):
        raise OperationError("not_a_directory", f"{real} is not a directory; use read_file")
    entries = []
    fd = policy.open(real, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(fd) as scan:
            items = sorted(scan, key=lambda e: e.name)
        for entry in items[:MAX_LIST_ENTRIES]:
            if entry.is_file(follow_symlinks=False):
                _cache_stat(entry)  # while the directory's descriptor is still open
    except PermissionError:
        raise OperationError("permission_denied", f"permission denied: {real}") from None
    finally:
        os.close(fd)
    for entry in items[:MAX_LIST_ENTRIES]:
        name = entry.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        try:
            if entry.is_symlink():
                kind, size = "symlink", None
            elif entry.is_dir():
                kind, size = "directory", None
            elif entry.is_file():
                kind, size = "file", entry.stat().st_size
            else:
                kind, size = "other", None
        except OSError:
            kind, size = "unknown", None
        entries.append({"name": name, "type": kind, "size": size})
    return {"path": real, "entries": entries, "truncated": max(0, len(items) - MAX_LIST_ENTRIES)}
