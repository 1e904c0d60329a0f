"""The tool table: what the model sees in `tools/list`, and how each call becomes a relayed command.

A command's non-zero exit code is a normal result. Whatever keeps a call from being carried out (bad
arguments, an unknown or offline machine, a refused path, a timeout) becomes an `isError` result with
a precise message, so the model can read it and correct itself. Every call is audited.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import mcp_types

from web import errors
from web.audit import AuditEntry
from web.models import EXPIRED, RUNNING, SUCCEEDED, TIMED_OUT, Command
from web.relay import Relay

log = logging.getLogger(__name__)

MACHINE_PROPERTY = {
    "type": "string",
    "description": "Name of the machine to act on. Optional when exactly one machine is online.",
    "maxLength": 64,
}


@dataclasses.dataclass(frozen=True)
class CallContext:
    session_id: str = ""
    transport: str = ""
    # progress(progress, total, message) sends notifications/progress to the caller when it asked for
    # them (a progressToken) and its transport can carry them; None otherwise.
    progress: Callable[[float, float | None, str | None], None] | None = None


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
        "A non-zero exit code is reported, not treated as a failure of the tool.",
        {
            "command": {"type": "string", "description": "The command line, as typed in a shell.", "minLength": 1, "maxLength": 65536},
            "working_dir": {"type": "string", "description": "Directory to run in (default: the agent's home)."},
            "timeout": {
                "type": "number",
                "description": "Seconds before the command is killed (default 30).",
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
        "(see check_agent_status); binary and oversized files are refused.",
        {"path": {"type": "string", "description": "Absolute path, or relative to the home folder."}, "machine": MACHINE_PROPERTY},
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
)
TOOLS_BY_NAME = {spec.name: spec for spec in TOOLS}
_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
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
    return arguments


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


class ToolBox:
    """Runs tool calls: validates, picks the machine, relays, waits, formats and audits."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.config = relay.config

    def definitions(self) -> list[mcp_types.Tool]:
        return [spec.definition() for spec in TOOLS]

    def call(self, name: str, arguments: Any, context: CallContext) -> mcp_types.CallToolResult:
        spec = TOOLS_BY_NAME.get(name)
        if spec is None:
            raise errors.InvalidParams(f"Unknown tool: {name!r}. Available: {', '.join(TOOLS_BY_NAME)}")
        audit = AuditEntry(session_id=context.session_id, transport=context.transport, tool=name, arguments=arguments)
        machine = ""
        try:
            arguments = validate_arguments(spec, arguments)
            if not spec.relayed:
                text = json.dumps({"machines": self.relay.status()}, indent=2)
                audit.finish(status="ok", is_error=False, output_bytes=len(text))
                return _text_result(text)
            machine = self._pick_machine(arguments.get("machine"))
            return self._relay(spec, machine, arguments, context, audit)
        except errors.ToolError as error:
            audit.finish(status="refused", is_error=True, message=error.message, machine=machine, error_code=error.code)
            return _text_result(error.message, is_error=True)
        except Exception:
            log.exception("tool %s failed", name)
            audit.finish(status="error", is_error=True, message="internal error", machine=machine, error_code="internal_error")
            raise

    def _relay(self, spec: ToolSpec, machine: str, arguments: dict, context: CallContext, audit: AuditEntry) -> mcp_types.CallToolResult:
        payload = {k: v for k, v in arguments.items() if k != "machine"}
        timeout = float(payload.pop("timeout", self.config.default_command_timeout_seconds))
        command = self.relay.submit(machine, spec.name, payload, timeout_seconds=timeout, session_id=context.session_id)
        command = self.relay.wait(command.id, timeout + self.config.result_grace_seconds)
        text, is_error = format_outcome(command)
        output_bytes = len(text.encode("utf-8", "surrogatepass"))
        audit.finish(
            status=command.state,
            is_error=is_error,
            machine=machine,
            message=text if is_error else "",
            error_code=command.error_code,
            exit_code=command.exit_code,
            output_bytes=output_bytes,
            command_id=command.id,
        )
        return _text_result(text, is_error=is_error)

    def _pick_machine(self, requested: str | None) -> str:
        machines = self.relay.machines()
        online = [m for m in machines if self.relay.is_online(m)]
        if requested is not None:
            match = next((m for m in machines if m.name == requested), None)
            if match is None:
                raise errors.ToolError(
                    f"unknown machine {requested!r}; known machines: {self._describe(machines)}", code="unknown_machine"
                )
            if match not in online:
                ago = time.time() - self.relay.last_seen_at(match)
                raise errors.ToolError(
                    f"machine {requested!r} is offline: its agent has not polled for {ago:.0f} s", code="agent_offline"
                )
            return match.name
        if len(online) == 1:
            return online[0].name
        if not online:
            raise errors.ToolError(
                f"no machine is online (known machines: {self._describe(machines)}); start the agent with "
                "'python -m agent'",
                code="agent_offline",
            )
        raise errors.ToolError(
            f"{len(online)} machines are online ({', '.join(m.name for m in online)}): "
            "pass 'machine' to choose one",
            code="machine_required",
        )

    def _describe(self, machines: list) -> str:
        if not machines:
            return "none"
        return ", ".join(f"{m.name} ({'online' if self.relay.is_online(m) else 'offline'})" for m in machines)


def format_outcome(command: Command) -> tuple[str, bool]:
    """The text the model reads for a finished (or abandoned) command, and whether it is an error."""
    result = command.result or {}
    if command.state == SUCCEEDED:
        return _format_success(command.tool, result), False
    if command.state == TIMED_OUT:
        text = _format_success(command.tool, result) if result else ""
        return (f"command timed out after {command.timeout_seconds:g} s and was killed with its process group\n" + text).rstrip(), True
    if command.state == EXPIRED:
        return (
            f"machine {command.machine!r} did not pick up the command in time; it was not run "
            "(is the agent stuck or its network down?)",
            True,
        )
    if command.state == RUNNING:
        return (
            f"no result from machine {command.machine!r} yet: command {command.id} is still running "
            "or its agent lost contact; its outcome is unknown",
            True,
        )
    message = command.error_message or f"command ended {command.state}"
    return message, True


def _format_success(tool: str, result: dict[str, Any]) -> str:
    if tool == "run_shell_command":
        parts = []
        if result.get("stdout"):
            parts.append(result["stdout"].rstrip("\n"))
        if result.get("stderr"):
            parts.append("[stderr]\n" + result["stderr"].rstrip("\n"))
        parts.append(f"[exit code {result.get('exit_code')}]")
        return "\n".join(parts)
    if tool == "read_file":
        return result.get("content", "")
    if tool == "write_file":
        return f"wrote {result.get('bytes_written')} bytes to {result.get('path')}"
    if tool == "list_directory":
        lines = [f"{result.get('path')}:"]
        for entry in result.get("entries", []):
            size = f"  {entry['size']} bytes" if entry.get("type") == "file" else ""
            suffix = "/" if entry.get("type") == "directory" else ""
            lines.append(f"{entry['name']}{suffix}  [{entry.get('type')}]{size}")
        if result.get("truncated"):
            lines.append(f"[… {result['truncated']} more entries not shown]")
        if len(lines) == 1:
            lines.append("(empty)")
        return "\n".join(lines)
    return json.dumps(result)


def _text_result(text: str, *, is_error: bool = False) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=text)], is_error=is_error)
