"""What the model reads for a file tool's success: short text made from the agent's result.

The same result is also the call's structuredContent (web/mcp/outcome.py), for clients that read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _checkpoint(result: dict[str, Any]) -> str:
    if result.get("checkpoint_id"):
        return f"\n[checkpoint {result['checkpoint_id']}: undo_change(checkpoint_id='{result['checkpoint_id']}') reverts this]"
    if result.get("checkpoint_skipped"):
        return f"\n[no checkpoint kept: {result['checkpoint_skipped']}]"
    return ""


def write_file(result: dict[str, Any]) -> str:
    if result.get("mode") == "append":
        text = f"appended {result.get('bytes_written')} bytes to {result.get('path')} (now {result.get('size')} bytes)"
    else:
        text = f"wrote {result.get('bytes_written')} bytes to {result.get('path')}"
    return text + _checkpoint(result)


def edit_file(result: dict[str, Any]) -> str:
    count = result.get("replacements", 0)
    if result.get("dry_run"):
        head = f"dry run: {count} replacement(s) in {result.get('path')} would give this diff (nothing written)"
    else:
        head = f"edited {result.get('path')}: {count} replacement(s)"
    diff = result.get("diff") or "(no change: the new text equals the old)\n"
    return f"{head}\n{diff}".rstrip("\n") + _checkpoint(result)


FORMATTERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "write_file": write_file,
    "edit_file": edit_file,
}
