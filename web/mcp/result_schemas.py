"""The `outputSchema` of each tool: the shape of the `structuredContent` its results carry.

A client that declared interest validates a successful result against its tool's schema, and the
official Python client refuses a successful result with no `structuredContent` at all when the tool
declared one. So every successful result carries it (web/mcp/structured.py builds it), and so does
every error result about a command: a relayed tool's answer always names its `command_id` and
`state` (a read_file still queued on a slow machine, a write_file refused by the agent's policy), plus
the agent's result fields once it succeeded. Only a call refused before any command exists (bad
arguments, an unknown or offline machine) is an `isError` result with text alone, which clients do
not validate. The text content stays for clients that read only text.

Schemas are kept loose on purpose: few required fields and no `additionalProperties: false`, so an
older or newer agent adding a field never turns a good result into a client-side error.
"""

from __future__ import annotations

from typing import Any

from web.models import STATES

_NULLABLE_INT = {"type": ["integer", "null"]}
SIGNAL = {
    "type": ["object", "null"],
    "description": "The signal that ended the process, or null.",
    "properties": {
        "number": {"type": "integer"},
        "name": {"type": "string"},
        "from_exit_status": {
            "type": "boolean",
            "description": "Known only from the exit status 128+N (how a shell reports a command killed by signal N).",
        },
    },
}
# What run_shell_command, get_command_output and send_input all say about a command.
COMMAND = {
    "command_id": {"type": "string"},
    "machine": {"type": "string"},
    "state": {"type": "string", "enum": sorted(STATES)},
    "exit_code": _NULLABLE_INT,
    "signal": SIGNAL,
    "truncated": {"type": "boolean", "description": "Part of the output is not in this answer."},
    "next_offset": {"type": "integer", "description": "Byte offset to read on from with get_command_output."},
}
COMMAND_REQUIRED = ["command_id", "state", "exit_code", "signal", "truncated", "next_offset"]
# What every other relayed tool's answer says about its command, beside the agent's result fields.
RELAYED = {
    "command_id": COMMAND["command_id"],
    "machine": COMMAND["machine"],
    "state": COMMAND["state"],
    "message": {"type": "string", "description": "Why it failed or is not finished."},
    "omitted": {"type": "string", "description": "Set when a large result is in the text only."},
}
RELAYED_REQUIRED = ["command_id", "state"]


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


PROCESSES = {
    "type": "array",
    "items": {"type": "object", "properties": {"pid": {"type": "integer"}, "name": {"type": "string"}}, "required": ["pid", "name"]},
}
SHELL = _object(
    {
        **COMMAND,
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "message": {"type": "string"},
        "background": {**PROCESSES, "description": "Processes it started that were left running, as asked (keep_background)."},
        "background_ended": {**PROCESSES, "description": "Processes it started that outlived it and were ended."},
    },
    COMMAND_REQUIRED,
)
OUTPUT_PAGE = _object(
    {**COMMAND, "stream": {"type": "string"}, "offset": {"type": "integer"}, "stored_bytes": {"type": "integer"}, "output": {"type": "string"}},
    COMMAND_REQUIRED,
)
CANCEL = _object({"command_id": {"type": "string"}, "state": {"type": "string"}, "message": {"type": "string"}}, ["command_id", "state"])
COMMANDS = _object(
    {
        "commands": {
            "type": "array",
            "items": _object(
                {
                    "command_id": {"type": "string"},
                    "machine": {"type": "string"},
                    "tool": {"type": "string"},
                    "state": {"type": "string"},
                    "created_at": {"type": "string", "description": "UTC, ISO 8601."},
                    "summary": {"type": "string"},
                }
            ),
        }
    },
    ["commands"],
)
READ = _object(
    {
        **RELAYED,
        "path": {"type": "string"},
        "content": {"type": "string"},
        "size": {"type": "integer"},
        "offset": {"type": "integer", "description": "First line shown."},
        "next_offset": {"type": "integer", "description": "Line to read on from; absent at the end."},
        "total_lines": {"type": "integer"},
    },
    RELAYED_REQUIRED,
)
WRITE = _object(
    {
        **RELAYED,
        "path": {"type": "string"},
        "bytes_written": {"type": "integer"},
        "size": {"type": "integer", "description": "The file's size after the write."},
        "mode": {"type": "string", "enum": ["rewrite", "append"]},
        "checkpoint_id": {"type": "string", "description": "undo_change(checkpoint_id) reverts the write."},
    },
    RELAYED_REQUIRED,
)
LISTING = _object(
    {
        **RELAYED,
        "path": {"type": "string"},
        "entries": {
            "type": "array",
            "items": _object(
                {
                    "name": {"type": "string"},
                    "type": {"type": "string", "enum": ["file", "directory", "symlink", "other", "unknown"]},
                    "size": _NULLABLE_INT,
                },
                ["name", "type"],
            ),
        },
        "truncated": {"type": "integer", "description": "Entries left out."},
    },
    RELAYED_REQUIRED,
)
MACHINES = _object(
    {
        "machines": {
            "type": "array",
            "items": _object(
                {
                    "name": {"type": "string"},
                    "online": {"type": "boolean"},
                    "last_seen_seconds_ago": {"type": "number"},
                    "allowed_roots": {"type": "array", "items": {"type": "string"}},
                },
                ["name", "online"],
            ),
        }
    },
    ["machines"],
)
