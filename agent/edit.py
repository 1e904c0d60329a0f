"""edit_file: exact old → new replacements in a text file, all or none, answered with a unified diff.

Edits apply in order, each to the result of the ones before. Each must match exactly
`expected_replacements` times (default 1); otherwise nothing is written and the error says how many
matches there were and on which lines, or, with none, shows the closest near-miss.

What the edits do not touch is kept byte for byte: the encoding (UTF-8, UTF-8 with a BOM, UTF-16
with a BOM, else Latin-1, which maps every byte to itself), the line endings (in a file that uses
CRLF throughout, the edit texts' LF become CRLF, so a model that writes LF still matches), a final
newline or its absence, and the mode (the file is replaced atomically, agent/atomic.py).
"""

from __future__ import annotations

import codecs
import difflib
import os
import stat
from typing import Any

from agent import atomic
from agent.errors import OperationError
from agent.files import PathPolicy, read_bytes

# An encoding's name -> its byte-order mark and the codec for what follows it.
BOMS = {
    "utf-8 with BOM": (codecs.BOM_UTF8, "utf-8"),
    "utf-16-le with BOM": (codecs.BOM_UTF16_LE, "utf-16-le"),
    "utf-16-be with BOM": (codecs.BOM_UTF16_BE, "utf-16-be"),
}
MAX_EDIT_BYTES = 10 * 1024 * 1024
MAX_LINES_LISTED = 20
# Near-miss search: windows compared with difflib, quick ratios first; files past this many lines
# get a whitespace-insensitive hint only.
NEAR_MISS_MAX_LINES = 20000


def decode(data: bytes) -> tuple[str, str]:
    """The file's text and the codec that gives its bytes back exactly."""
    for encoding, (bom, codec) in BOMS.items():
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(codec), encoding
            except UnicodeDecodeError:
                break
    if b"\x00" in data[:8192]:
        raise OperationError("binary_file", "the file looks binary (it holds NUL bytes); edit_file edits text files")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def encode(text: str, encoding: str) -> bytes:
    bom, codec = BOMS.get(encoding, (b"", encoding))
    try:
        return bom + text.encode(codec)
    except UnicodeEncodeError as error:
        raise OperationError(
            "encoding_error", f"the file is {encoding} and the new text holds {error.object[error.start]!r}, which it cannot store"
        ) from None


def line_ending(text: str) -> str:
    """'crlf' when every line ends in CRLF, 'lf' when none does, else 'mixed'."""
    crlf = text.count("\r\n")
    if crlf == 0:
        return "lf"
    return "crlf" if crlf == text.count("\n") else "mixed"


def to_file_endings(fragment: str, ending: str) -> str:
    if ending == "crlf":
        return fragment.replace("\r\n", "\n").replace("\n", "\r\n")
    if ending == "lf":
        return fragment.replace("\r\n", "\n")
    return fragment


def apply(text: str, edits: list[dict[str, Any]], ending: str) -> tuple[str, int]:
    """The text with every edit applied in order, and the number of replacements; OperationError if
    any edit's match count differs from what it expects (nothing is applied then)."""
    total = 0
    for number, edit in enumerate(edits, 1):
        old, new, expected = _edit_fields(edit, number)
        old, new = to_file_endings(old, ending), to_file_endings(new, ending)
        found = text.count(old)
        if found != expected:
            raise OperationError("edit_mismatch", _mismatch(text, old, found, expected, number, len(edits)))
        text = text.replace(old, new)
        total += found
    return text, total


def _edit_fields(edit: Any, number: int) -> tuple[str, str, int]:
    if not isinstance(edit, dict):
        raise OperationError("invalid_arguments", f"edit {number} must be an object with old_text and new_text")
    old, new = edit.get("old_text"), edit.get("new_text")
    expected = edit.get("expected_replacements", 1)
    if not isinstance(old, str) or not isinstance(new, str):
        raise OperationError("invalid_arguments", f"edit {number}: old_text and new_text must be strings")
    if not old:
        raise OperationError("invalid_arguments", f"edit {number}: old_text is empty; give the exact text to replace")
    if not isinstance(expected, int) or isinstance(expected, bool) or expected < 1:
        raise OperationError("invalid_arguments", f"edit {number}: expected_replacements must be an integer of at least 1")
    return old, new, expected


def _mismatch(text: str, old: str, found: int, expected: int, number: int, count: int) -> str:
    which = f"edit {number} of {count}" if count > 1 else "the edit"
    head = f"{which}: old_text was found {found} time{'s' if found != 1 else ''}, expected {expected}; nothing was changed."
    if found:
        lines = _match_lines(text, old)
        shown = ", ".join(str(n) for n in lines[:MAX_LINES_LISTED]) + (" …" if len(lines) > MAX_LINES_LISTED else "")
        return (
            f"{head} Matches start on line{'s' if found > 1 else ''} {shown}. Add surrounding lines to old_text to make it "
            "unique, or set expected_replacements to the number of matches to replace them all."
        )
    return head + " " + near_miss(text, old)


def _match_lines(text: str, old: str) -> list[int]:
    lines, start = [], 0
    while (at := text.find(old, start)) >= 0:
        lines.append(text.count("\n", 0, at) + 1)
        start = at + len(old)
    return lines


def near_miss(text: str, old: str) -> str:
    """Where the text comes closest to `old`, as a diff of old_text against the file's lines there."""
    file_lines = text.replace("\r\n", "\n").split("\n")
    want = old.replace("\r\n", "\n").strip("\n").split("\n")
    squeezed = [" ".join(line.split()) for line in want]
    span = len(want)
    for start in range(len(file_lines) - span + 1):
        if [" ".join(line.split()) for line in file_lines[start : start + span]] == squeezed:
            return (
                f"The text is at line {start + 1} if whitespace is ignored: copy the file's exact indentation and spaces "
                "(read_file shows them)." + _diff(want, file_lines[start : start + span], start + 1)
            )
    if len(file_lines) > NEAR_MISS_MAX_LINES:
        return "No close match was searched for in a file this long; read the region with read_file and copy it exactly."
    best, best_start = 0.0, -1
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2("\n".join(want))
    for start in range(max(1, len(file_lines) - span + 1)):
        matcher.set_seq1("\n".join(file_lines[start : start + span]))
        if matcher.real_quick_ratio() <= best or matcher.quick_ratio() <= best:
            continue
        ratio = matcher.ratio()
        if ratio > best:
            best, best_start = ratio, start
    if best_start < 0 or best < 0.5:
        return "Nothing in the file comes close; read it with read_file and copy the text exactly."
    window = file_lines[best_start : best_start + span]
    return (
        f"The closest text ({best:.0%} similar) starts at line {best_start + 1}; its differences from old_text:"
        + _diff(want, window, best_start + 1)
    )


def _diff(want: list[str], have: list[str], first_line: int) -> str:
    body = difflib.unified_diff(want, have, "old_text", f"file (line {first_line})", n=2, lineterm="")
    return "\n" + "\n".join(body)


def unified_diff(before: str, after: str, path: str) -> str:
    """A git-style diff with line numbers in its hunk headers, LF for display."""
    a = before.replace("\r\n", "\n").splitlines(keepends=True)
    b = after.replace("\r\n", "\n").splitlines(keepends=True)
    lines = []
    for line in difflib.unified_diff(a, b, f"a{path}", f"b{path}", n=3):
        lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(lines)


def edit_file(policy: PathPolicy, path: str, edits: Any, *, dry_run: bool = False) -> dict[str, Any]:
    if not isinstance(edits, list) or not edits:
        raise OperationError("invalid_arguments", "edits must be a non-empty list of {old_text, new_text}")
    real = policy.resolve(path, write=True)
    if not os.path.lexists(real):
        raise OperationError("not_found", f"no such file: {real}; create it with write_file")
    if not stat.S_ISREG(os.stat(real).st_mode):
        raise OperationError("not_a_file", f"{real} is not a regular file")
    data = read_bytes(policy, real, max_bytes=MAX_EDIT_BYTES)
    text, encoding = decode(data)
    ending = line_ending(text)
    new_text, replacements = apply(text, edits, ending)
    new_data = encode(new_text, encoding)
    result: dict[str, Any] = {
        "path": real,
        "replacements": replacements,
        "dry_run": bool(dry_run),
        "diff": unified_diff(text, new_text, real),
        "encoding": encoding,
        "line_endings": ending,
    }
    if not dry_run and new_data != data:
        atomic.replace(real, [new_data])
        result["bytes_written"] = len(new_data)
    return result
