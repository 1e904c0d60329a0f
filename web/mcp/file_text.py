"""What the model reads for a file tool's success: short text made from the agent's result.

The same result is also the call's structuredContent (web/mcp/outcome.py), for clients that read it.
Paths are written by `name` (a newline in a name cannot start a forged line), and a file's own text
(a diff, a file among several) is ended by a frame that it cannot imitate (web/controls.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from web.controls import frame, name


def _checkpoint(result: dict[str, Any]) -> str:
    if result.get("checkpoint_id"):
        return f"\n[checkpoint {result['checkpoint_id']}: undo_change(checkpoint_id='{result['checkpoint_id']}') reverts this]"
    if result.get("checkpoint_skipped"):
        return f"\n[no checkpoint kept: {result['checkpoint_skipped']}]"
    return ""


def write_file(result: dict[str, Any]) -> str:
    if result.get("mode") == "append":
        text = f"appended {result.get('bytes_written')} bytes to {name(result.get('path'))} (now {result.get('size')} bytes)"
    else:
        text = f"wrote {result.get('bytes_written')} bytes to {name(result.get('path'))}"
    return text + _checkpoint(result)


def edit_file(result: dict[str, Any]) -> str:
    count = result.get("replacements", 0)
    if result.get("dry_run"):
        head = f"dry run: {count} replacement(s) in {name(result.get('path'))} would give this diff (nothing written)"
    else:
        head = f"edited {name(result.get('path'))}: {count} replacement(s)"
    diff = result.get("diff")
    diff = diff.rstrip("\n") + "\n" + frame("end of diff") if diff else "(no change: the new text equals the old)"
    return f"{head}\n{diff}" + _checkpoint(result)


def move_file(result: dict[str, Any]) -> str:
    return f"moved {result.get('type')} {name(result.get('source'))} -> {name(result.get('destination'))}" + _checkpoint(result)


def copy_file(result: dict[str, Any]) -> str:
    return (
        f"copied {result.get('type')} {name(result.get('source'))} -> {name(result.get('destination'))} ({result.get('bytes_copied')} bytes)"
        + _checkpoint(result)
    )


def make_directory(result: dict[str, Any]) -> str:
    made = result.get("created") or []
    return f"created {', '.join(name(m) for m in made)}" if made else f"{name(result.get('path'))} already exists"


def delete_path(result: dict[str, Any]) -> str:
    count = result.get("removed_entries", 1)
    inside = f" ({count - 1} entries inside)" if result.get("type") == "directory" and count > 1 else ""
    return f"deleted {result.get('type')} {name(result.get('path'))}{inside}" + _checkpoint(result)


def get_file_info(result: dict[str, Any]) -> str:
    keys = ("type", "size", "mode", "permissions", "owner", "group", "modified_at", "accessed_at", "changed_at",
            "links", "line_count", "text", "entries", "symlink_target", "resolves_to")
    return f"{name(result.get('path'))}:\n" + "\n".join(f"  {k}: {name(result[k])}" for k in keys if k in result and result[k] is not None)


def read_multiple_files(result: dict[str, Any]) -> str:
    parts = []
    for entry in result.get("files", []):
        if "error" in entry:
            parts.append(f"=== {name(entry.get('path'))} [error] ===\n{name(entry['error'].get('message'))}")
            continue
        text = entry.get("content", "").rstrip("\n") + "\n" + frame(f"end of {name(entry.get('path'))}")
        if entry.get("next_offset"):
            text += f"\n[… stopped at line {entry['next_offset'] - 1}; read on with read_file(path='{name(entry.get('path'))}', offset={entry['next_offset']}) …]"
        parts.append(f"=== {name(entry.get('path'))} ===\n{text}")
    return "\n".join(parts)


def search(result: dict[str, Any]) -> str:
    """`path:line:column: text` per match (context lines as `path-line- text`), or a path per file; then
    what was skipped and how to read on. The matched lines are the files' own text: each is one line
    (a path by `name`, a line split at newlines), and a frame ends them."""
    lines = []
    for match in result.get("matches") or []:
        where = name(match.get("path"))
        for offset, text in enumerate(match.get("before") or [], start=-len(match.get("before") or [])):
            lines.append(f"{where}-{match.get('line', 0) + offset}- {name(text)}")
        lines.append(f"{where}:{match.get('line')}:{match.get('column')}: {name(match.get('text', ''))}")
        for offset, text in enumerate(match.get("after") or [], start=1):
            lines.append(f"{where}-{match.get('line', 0) + offset}- {name(text)}")
    for found in result.get("files") or []:
        lines.append(name(found.get("path")))
    count = result.get("count", 0)
    what = ("match" if count == 1 else "matches") if result.get("kind", "content") == "content" else ("file" if count == 1 else "files")
    head = f"{count} {what} under {name(result.get('path'))} ({result.get('engine')})"
    text = head + ("\n" + "\n".join(lines) + "\n" + frame("end of results") if lines else "\n(none)")
    skipped = result.get("binary_files_skipped") or []
    if skipped:
        text += f"\n[{len(skipped)} binary file(s) matched and are not shown: {', '.join(name(p) for p in skipped[:10])}{' …' if len(skipped) > 10 else ''}]"
    denied = result.get("denied_paths_skipped") or []
    if denied:
        text += f"\n[not searched (the agent's deny-list): {', '.join(name(p) for p in denied[:10])}]"
    if result.get("stopped"):
        text += f"\n[search stopped: {result['stopped']}]"
    if result.get("continuation_token"):
        text += f"\n[more results: repeat the call with continuation_token='{result['continuation_token']}']"
    return text


def list_checkpoints(result: dict[str, Any]) -> str:
    lines = [
        f"{c.get('checkpoint_id')}  {c.get('created_at')}  {c.get('tool')}  {', '.join(name(p) for p in c.get('paths') or [])}"
        for c in result.get("checkpoints") or []
    ]
    if not lines:
        return "no checkpoints"
    return "\n".join(lines) + "\n[newest first; undo_change(checkpoint_id=...) puts back what one change replaced]"


def undo_change(result: dict[str, Any]) -> str:
    return f"undid {result.get('tool')} (checkpoint {result.get('checkpoint_id')}): restored {', '.join(name(p) for p in result.get('restored') or [])}"


FORMATTERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "write_file": write_file,
    "edit_file": edit_file,
    "move_file": move_file,
    "copy_file": copy_file,
    "make_directory": make_directory,
    "delete_path": delete_path,
    "get_file_info": get_file_info,
    "read_multiple_files": read_multiple_files,
    "search": search,
    "list_checkpoints": list_checkpoints,
    "undo_change": undo_change,
}
