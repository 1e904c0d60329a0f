"""The tool table: each tool's name, description and JSON schema as `tools/list` shows them, and the
check of a call's arguments against that schema (ToolError naming the first problem).

web/mcp/tools.py runs the calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import mcp_types

from web import errors
from web.models import STATES

MACHINE_PROPERTY = {
    "type": "string",
    "description": "Name of the machine to act on. Optional when exactly one machine is online.",
    "maxLength": 64,
}


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    properties: dict[str, Any]
    required: tuple[str, ...] = ()
    relayed: bool = True
    read_only: bool = False

    def definition(self) -> mcp_types.Tool:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": self.properties,
            "additionalProperties": False,
        }
        if self.required:
            schema["required"] = list(self.required)
        return mcp_types.Tool(
            name=self.name,
            description=self.description,
            input_schema=schema,
            annotations=mcp_types.ToolAnnotations(read_only_hint=self.read_only, open_world_hint=False),
        )


TOOLS = (
    ToolSpec(
        "run_shell_command",
        "Run a shell command on a machine and return its stdout, stderr and exit code. The command runs "
        "in the user's shell with stdin closed; it is killed with its whole process group at the timeout. "
        "A non-zero exit code is reported, not treated as a failure of the tool. If the command is still "
        "running when this call has waited its bounded time (under a minute), the answer gives the command "
        "id, its state and the output so far: follow it with get_command_output, stop it with "
        "cancel_command. Never re-run a command just because its outcome is not known yet. Long output "
        "shows its head and tail, with the omitted part paged by get_command_output.",
        {
            "command": {"type": "string", "description": "The command line, as typed in a shell.", "minLength": 1, "maxLength": 65536},
            "working_dir": {"type": "string", "description": "Directory to run in (default: the agent's home)."},
            "timeout": {
                "type": "number",
                "description": "Seconds before the command is killed (default 30); may exceed the wait of this call.",
                "exclusiveMinimum": 0,
                "maximum": 3600,
            },
            "machine": MACHINE_PROPERTY,
        },
        ("command",),
    ),
    ToolSpec(
        "read_file",
        "Read a UTF-8 text file on a machine. Paths must lie inside the machine's allowed roots "
        "(see check_agent_status); binary files are refused with their size and type. Large files are "
        "read in pages of lines: pass offset (first line, from 1) and limit (number of lines); the answer "
        "says where it stopped and how to read on.",
        {
            "path": {"type": "string", "description": "Absolute path, or relative to the home folder."},
            "offset": {"type": "integer", "description": "First line to read, counting from 1 (default 1).", "minimum": 1},
            "limit": {"type": "integer", "description": "Most lines to return (default: as many as fit).", "minimum": 1},
            "machine": MACHINE_PROPERTY,
        },
        ("path",),
        read_only=True,
    ),
    ToolSpec(
        "write_file",
        "Write (create or replace) a text file on a machine, inside its allowed roots. "
        "The parent folder must exist.",
        {
            "path": {"type": "string", "description": "Absolute path, or relative to the home folder."},
            "content": {"type": "string", "description": "The file's new content, as UTF-8 text."},
            "machine": MACHINE_PROPERTY,
        },
        ("path", "content"),
    ),
    ToolSpec(
        "list_directory",
        "List a directory on a machine: each entry's name, type and size. Paths must lie inside the "
        "machine's allowed roots.",
        {"path": {"type": "string", "description": "Absolute path, or relative to the home folder."}, "machine": MACHINE_PROPERTY},
        ("path",),
        read_only=True,
    ),
    ToolSpec(
        "check_agent_status",
        "List every machine known to Code Remote: whether its agent is online, when it was last seen, "
        "its host and OS, agent version and the folders its file tools may use.",
        {},
        relayed=False,
        read_only=True,
    ),
    ToolSpec(
        "get_command_output",
        "The state of a command started by run_shell_command (queued, running, succeeded, failed, "
        "timed_out, cancelled, expired, or lost when its outcome is unknown), its exit code once "
        "finished, and a page of its output from a byte offset. Use it to follow a long command and to "
        "read output that a result left out.",
        {
            "command_id": {"type": "string", "description": "The id run_shell_command returned.", "minLength": 1, "maxLength": 64},
            "offset": {"type": "integer", "description": "Byte offset to read from (default 0).", "minimum": 0},
            "stream": {"type": "string", "description": "'stdout' (default) or 'stderr'.", "enum": ["stdout", "stderr"]},
        },
        ("command_id",),
        relayed=False,
        read_only=True,
    ),
    ToolSpec(
        "cancel_command",
        "Cancel a command: one not yet started never runs; a running one has its whole process group "
        "ended (SIGTERM, then SIGKILL after a grace period) within seconds and ends 'cancelled'.",
        {"command_id": {"type": "string", "description": "The id run_shell_command returned.", "minLength": 1, "maxLength": 64}},
        ("command_id",),
        relayed=False,
    ),
    ToolSpec(
        "list_commands",
        "List recent commands, newest first: id, machine, tool, state and when each was created. "
        "Filter by machine and by state (e.g. 'running').",
        {
            "machine": {"type": "string", "description": "Only this machine's commands.", "maxLength": 64},
            "state": {"type": "string", "description": "Only commands in this state.", "enum": sorted(STATES)},
        },
        relayed=False,
        read_only=True,
    ),
)
TOOLS_BY_NAME = {spec.name: spec for spec in TOOLS}
_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
}


def validate_arguments(spec: ToolSpec, arguments: Any) -> dict[str, Any]:
    """Check arguments against the tool's schema; raise ToolError naming the first problem."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise errors.ToolError(f"{spec.name}: arguments must be an object", code="invalid_arguments")
    for name in spec.required:
        if name not in arguments:
            raise errors.ToolError(f"{spec.name}: missing required argument '{name}'", code="invalid_arguments")
    for name, value in arguments.items():
        schema = spec.properties.get(name)
        if schema is None:
            raise errors.ToolError(
                f"{spec.name}: unknown argument '{name}' (accepted: {', '.join(spec.properties) or 'none'})",
                code="invalid_arguments",
            )
        if not _JSON_TYPES[schema["type"]](value):
            raise errors.ToolError(
                f"{spec.name}: argument '{name}' must be a {schema['type']}, got {_json_type(value)}",
                code="invalid_arguments",
            )
        if isinstance(value, str) and len(value) < schema.get("minLength", 0):
            raise errors.ToolError(f"{spec.name}: argument '{name}' must not be empty", code="invalid_arguments")
        if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
            raise errors.ToolError(f"{spec.name}: argument '{name}' is too long", code="invalid_arguments")
        if schema["type"] == "number" and not (0 < value <= schema.get("maximum", float("inf"))):
            raise errors.ToolError(
                f"{spec.name}: argument '{name}' must be above 0 and at most {schema.get('maximum')}",
                code="invalid_arguments",
            )
        if schema["type"] == "integer" and value < schema.get("minimum", 0):
            raise errors.ToolError(
                f"{spec.name}: argument '{name}' must be at least {schema.get('minimum', 0)}", code="invalid_arguments"
            )
        if "enum" in schema and value not in schema["enum"]:
            raise errors.ToolError(
                f"{spec.name}: argument '{name}' must be one of {', '.join(schema['enum'])}", code="invalid_arguments"
            )
    return arguments


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )
