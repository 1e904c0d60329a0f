"""The file tools for coding work: edit, search, file operations and undo, as `tools/list` shows them.

Each has an output schema: its structuredContent is the agent's result for the call (agent/*.py)
beside its command's id and state (web/mcp/structured.py). Descriptions stay short: the whole tool
list is paid for in every conversation.
"""

from __future__ import annotations

from typing import Any

from web.mcp.result_schemas import RELAYED_REQUIRED
from web.mcp.spec import MACHINE_PROPERTY, ToolSpec

STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
# Paths are absolute or relative to the home folder, as read_file's schema says; not repeated here.
PATH = STRING


def result_schema(**properties: Any) -> dict[str, Any]:
    """The agent's result fields, beside the command's (web/mcp/result_schemas.RELAYED, without its
    descriptions: every byte here is in every conversation). Of the command's fields only the two
    always present are declared; `machine` and `message` come too (the schema allows more)."""
    command = {"command_id": STRING, "state": STRING}
    return {"type": "object", "properties": {**command, **properties}, "required": RELAYED_REQUIRED}
NULLABLE_INTEGER = {"type": ["integer", "null"]}

GLOBS = {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 50}
MATCH = {
    "type": "object",
    "properties": {
        "path": STRING, "line": INTEGER, "column": INTEGER, "text": STRING,
        "before": {"type": "array", "items": STRING}, "after": {"type": "array", "items": STRING},
    },
    "required": ["path", "line", "column"],
}

FILE_TOOLS = (
    ToolSpec(
        "search",
        "Search file contents (regex, or literal) or paths (kind='files') under a folder as ripgrep does: "
        ".gitignore respected, binary files skipped. Case-insensitive unless the pattern has a capital. "
        "Paged by continuation_token.",
        {
            "path": {"type": "string", "description": "Folder to search (default: home)."},
            "pattern": {"type": "string", "minLength": 1, "maxLength": 4096},
            "kind": {"type": "string", "enum": ["content", "files"]},
            "literal": BOOLEAN,
            "case_sensitive": BOOLEAN,
            "include": {**GLOBS, "description": "Only paths matching these globs, e.g. ['*.py']."},
            "exclude": GLOBS,
            "context_lines": {"type": "integer", "minimum": 0, "maximum": 10},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 1000},
            "continuation_token": STRING,
            "machine": MACHINE_PROPERTY,
        },
        ("pattern",),
        read_only=True,
        title="Search",
        output=result_schema(
            path=STRING, kind=STRING, engine=STRING, matches={"type": "array", "items": MATCH},
            files={"type": "array", "items": {"type": "object", "properties": {"path": STRING, "size": NULLABLE_INTEGER}}},
            count=INTEGER, complete=BOOLEAN, continuation_token=STRING, stopped=STRING,
            binary_files_skipped={"type": "array", "items": STRING},
        ),
    ),
    ToolSpec(
        "edit_file",
        "Replace exact text in a file: each edit's old_text must occur expected_replacements times (default 1). "
        "All edits apply or none; a mismatch lists the matching lines or the closest near-miss. Keeps "
        "encoding, line endings and mode; answers a unified diff. dry_run previews.",
        {
            "path": PATH,
            "edits": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {
                    "type": "object",
                    "properties": {
                        "old_text": {"type": "string", "minLength": 1},
                        "new_text": {"type": "string"},
                        "expected_replacements": {"type": "integer", "minimum": 1},
                    },
                    "required": ["old_text", "new_text"],
                    "additionalProperties": False,
                },
            },
            "dry_run": {"type": "boolean", "description": "Show the diff without writing."},
            "machine": MACHINE_PROPERTY,
        },
        ("path", "edits"),
        title="Edit file",
        destructive=True,
        output=result_schema(path=STRING, replacements=INTEGER, dry_run=BOOLEAN, diff=STRING, checkpoint_id=STRING),
    ),
    ToolSpec(
        "move_file",
        "Move or rename a file, folder or symlink. An existing destination is refused unless overwrite "
        "(a folder is never overwritten). Undo with undo_change.",
        {"source": PATH, "destination": PATH, "overwrite": BOOLEAN, "machine": MACHINE_PROPERTY},
        ("source", "destination"),
        title="Move file",
        destructive=True,
        output=result_schema(source=STRING, destination=STRING, type=STRING, checkpoint_id=STRING),
    ),
    ToolSpec(
        "copy_file",
        "Copy a file or a folder (recursively). An existing destination is refused unless overwrite. "
        "Undo with undo_change.",
        {"source": PATH, "destination": PATH, "overwrite": BOOLEAN, "machine": MACHINE_PROPERTY},
        ("source", "destination"),
        title="Copy file",
        destructive=True,
        output=result_schema(source=STRING, destination=STRING, type=STRING, bytes_copied=INTEGER, checkpoint_id=STRING),
    ),
    ToolSpec(
        "make_directory",
        "Create a folder and any missing parents (an existing folder is fine).",
        {"path": PATH, "machine": MACHINE_PROPERTY},
        ("path",),
        title="Make directory",
        idempotent=True,
        output=result_schema(path=STRING, created={"type": "array", "items": STRING}),
    ),
    ToolSpec(
        "delete_path",
        "Delete a file, a symlink (not its target) or an empty folder; a folder with content only with "
        "recursive. Never an allowed root. Undo with undo_change.",
        {"path": PATH, "recursive": BOOLEAN, "machine": MACHINE_PROPERTY},
        ("path",),
        title="Delete path",
        destructive=True,
        output=result_schema(path=STRING, type=STRING, removed_entries=INTEGER, checkpoint_id=STRING),
    ),
    ToolSpec(
        "list_checkpoints",
        "Checkpoints of the changes made by write_file, edit_file, move_file, copy_file and delete_path, "
        "newest first; path filters.",
        {"path": PATH, "machine": MACHINE_PROPERTY},
        (),
        read_only=True,
        title="List checkpoints",
        output=result_schema(
            checkpoints={
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "checkpoint_id": STRING, "tool": STRING, "created_at": STRING,
                        "paths": {"type": "array", "items": STRING}, "bytes": INTEGER,
                    },
                    "required": ["checkpoint_id", "tool", "paths"],
                },
            },
            count=INTEGER,
        ),
    ),
    ToolSpec(
        "undo_change",
        "Undo one change by its checkpoint_id: put back what it replaced. Refused if a path changed since "
        "(undo newer changes first).",
        {"checkpoint_id": {"type": "string", "minLength": 1, "maxLength": 64}, "machine": MACHINE_PROPERTY},
        ("checkpoint_id",),
        title="Undo change",
        destructive=True,
        output=result_schema(checkpoint_id=STRING, tool=STRING, restored={"type": "array", "items": STRING}),
    ),
    ToolSpec(
        "get_file_info",
        "Describe a path: type, size, mode, owner, times, line count of a text file, symlink target.",
        {"path": PATH, "machine": MACHINE_PROPERTY},
        ("path",),
        read_only=True,
        title="File info",
        output=result_schema(
            path=STRING, type=STRING, size=INTEGER, mode=STRING, owner=STRING, group=STRING, modified_at=STRING,
            line_count=INTEGER, symlink_target=STRING,
        ),
    ),
    ToolSpec(
        "read_multiple_files",
        "Read several text files at once (up to 50); each answer is its content or its own error.",
        {
            "paths": {"type": "array", "items": PATH, "minItems": 1, "maxItems": 50},
            "machine": MACHINE_PROPERTY,
        },
        ("paths",),
        read_only=True,
        title="Read files",
        output=result_schema(
            files={
                "type": "array",
                "items": {"type": "object", "properties": {"path": STRING, "content": STRING, "error": {"type": "object"}}},
            }
        ),
    ),
)
