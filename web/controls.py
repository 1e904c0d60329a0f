"""Control characters made visible, and frames that printed text cannot imitate.

Command output, file contents and file names are written by whoever controls the machine's files.
Raw, their terminal escapes (ESC/CSI/OSC: clear screen, window title, OSC 52 clipboard writes, OSC 8
hyperlinks), BEL, other C0/C1 controls and bidi overrides and isolates (which reorder what a reader
sees, so `exe.txt` can display as `txt.exe`) reach a transcript or a terminal and act there. `escape`
writes each as a visible `\\xNN` or `\\uNNNN`; newline and tab stay, and so does a carriage return
that ends a line (CRLF), since only a lone one can overwrite a line. `name` also writes newline and
tab visibly, for a file name or path shown on one line: a name holding a newline cannot forge a
second entry. The audit trail stores text through `escape` too.

Frames. Such text may also imitate Code Remote's own words: a command can print `[exit code 0]` and
then fail. Where Code Remote's words follow untrusted text, a frame line (`⟦end of output⟧`) marks
where it ends. A frame is built by `frame()` as NUL + this process's random token + label + NUL, and
only `shown()`, applied once to every answer's text, turns it into `⟦label⟧`. Printed text cannot make
one: it does not know the token, its own NULs are escaped, and so are its brackets ⟦ ⟧, which come
out as `\\u27e6` and `\\u27e7`. The real exit code, state and truncation are in the structured content.
"""

from __future__ import annotations

import re
import secrets

CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\u27e6\u27e7]|\r(?!\n)"
)
_FRAME_TOKEN = secrets.token_hex(8)
_FRAME = re.compile(f"\x00{_FRAME_TOKEN}([^\x00]*)\x00")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with control characters, bidi controls and the frame brackets written as escapes."""
    return CONTROL.sub(_visible, text)


def name(text: object) -> str:
    """A file name or path for one line of text: newline and tab written as `\\n` and `\\t` too.
    (Other controls are left to `shown()`, which escapes the whole answer.)"""
    return str(text).replace("\n", "\\n").replace("\t", "\\t")


def frame(label: str) -> str:
    """A mark saying where untrusted text ends, that printed text cannot imitate. Shown as ⟦label⟧."""
    return f"\x00{_FRAME_TOKEN}{label}\x00"


def shown(text: str) -> str:
    """The text as a reader gets it: control characters escaped, frames made visible. Apply once."""
    parts = _FRAME.split(text)
    return "".join(escape(part) if index % 2 == 0 else f"\u27e6{escape(part)}\u27e7" for index, part in enumerate(parts))
