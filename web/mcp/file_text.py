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


def move_file(result: dict[str, Any]) -> str:
    return f"moved {result.get('type')} {result.get('source')} -> {result.get('destination')}" + _checkpoint(result)


def copy_file(result: dict[str, Any]) -> str:
    return (
        f"copied {result.get('type')} {result.get('source')} -> {result.get('destination')} ({result.get('bytes_copied')} bytes)"
        + _checkpoint(result)
    )


def make_directory(result: dict[str, Any]) -> str:
    made = result.get("created") or []
    return f"created {', '.join(made)}" if made else f"{result.get('path')} already exists"


def delete_path(result: dict[str, Any]) -> str:
    count = result.get("removed_entries", 1)
    inside = f" ({count - 1} entries inside)" if result.get("type") == "directory" and count > 1 else ""
    return f"deleted {result.get('type')} {result.get('path')}{inside}" + _checkpoint(result)


def get_file_info(result: dict[str, Any]) -> str:
    keys = ("type", "size", "mode", "permissions", "owner", "group", "modified_at", "accessed_at", "changed_at",
            "links", "line_count", "text", "entries", "symlink_target", "resolves_to")
    return f"{result.get('path')}:\n" + "\n".join(f"  {k}: {result[k]}" for k in keys if k in result and result[k] is not None)


def read_multiple_files(result: dict[str, Any]) -> str:
    parts = []
    for entry in result.get("files", []):
        if "error" in entry:
            parts.append(f"=== {entry.get('path')} [error] ===\n{entry['error'].get('message')}")
            continue
        text = entry.get("content", "")
        if entry.get("next_offset"):
            text += f"\n[… stopped at line {entry['next_offset'] - 1}; read on with read_file(path='{entry.get('path')}', offset={entry['next_offset']}) …]"
        parts.append(f"=== {entry.get('path')} ===\n{text}")
    return "\n".join(parts)


FORMATTERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "write_file": write_file,
    "edit_file": edit_file,
    "move_file": move_file,
    "copy_file": copy_file,
    "make_directory": make_directory,
    "delete_path": delete_path,
    "get_file_info": get_file_info,
    "read_multiple_files": read_multiple_files,
}
