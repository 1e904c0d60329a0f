"""The tool table: each tool's name, title, description, input and output schemas and annotations as
`tools/list` shows them,.

Annotations are hints a client may show or act on, so they must be true: a read-only tool changes
nothing; a destructive one may delete or overwrite; an idempotent one called twice with the same
arguments has no further effect; an open-world one may reach beyond the machine (a shell command can
use the network). The whole `tools/list` answer is kept under 24 KB of JSON (a test holds it there):
it is sent with every conversation, so descriptions stay short.

web/mcp/tools.py runs the calls; web/mcp/result_schemas.py holds the output schemas; the file tools
beyond read/write/list are in web/mcp/file_specs.py; web/mcp/arguments.py checks a call's arguments.
"""

from __future__ import annotations

import dataclasses

from web.mcp import result_schemas as out
from web.mcp.file_specs import FILE_TOOLS
from web.mcp.spec import MACHINE_PROPERTY, ToolSpec
from web.models import STATES

__all__ = ["TOOLS", "TOOLS_BY_NAME", "ToolSpec"]

CORE_TOOLS = (
    ToolSpec(
        "run_shell_command",
        "Run a shell command on a machine; returns stdout, stderr and exit code (non-zero is not a tool "
        "failure). Stdin is closed; stdin='pipe' keeps it open for send_input and answers once the command is "
        "quiet (at a prompt). Processes it started end with it (see keep_background). Still running when this "
        "call stops waiting: the answer gives its command_id and output so far; follow it with "
        "get_command_output, stop it with cancel_command, never re-run it. Long output shows head and tail.",
        {
            "command": {"type": "string", "description": "The command line, as typed in a shell.", "minLength": 1, "maxLength": 65536},
            "working_dir": {"type": "string", "description": "Directory to run in (default: the agent's home)."},
            "keep_background": {
                "type": "boolean",
                "description": "Leave processes it starts in the background (daemons, nohup) running; they are listed.",
            },
            "timeout": {
                "type": "number",
                # Default and maximum come from the server's settings: see `configured`.
                "description": "Seconds before the command is killed; may exceed the wait of this call.",
                "exclusiveMinimum": 0,
            },
            "stdin": {"type": "string", "description": "'pipe' keeps it open for send_input.", "enum": ["closed", "pipe"]},
            "machine": MACHINE_PROPERTY,
        },
        ("command",),
        title="Run shell command",
        output=out.SHELL,
        destructive=True,
        open_world=True,
    ),
    ToolSpec(
        "read_file",
        "Read a UTF-8 text file inside the machine's allowed roots (see check_agent_status), or an image "
        "(PNG, JPEG, GIF, WebP); other binary files are refused. Large files come in pages of lines (offset "
        "from 1, limit; or the last tail lines); the answer says how to read on.",
        {
            "path": {"type": "string", "description": "Absolute path, or relative to the home folder."},
            "offset": {"type": "integer", "description": "First line to read, counting from 1 (default 1).", "minimum": 1},
            "limit": {"type": "integer", "description": "Most lines to return (default: as many as fit).", "minimum": 1},
            "tail": {"type": "integer", "description": "Only the last N lines.", "minimum": 1},
            "line_numbers": {"type": "boolean", "description": "Number each line."},
            "machine": MACHINE_PROPERTY,
        },
        ("path",),
        read_only=True,
        title="Read file",
        output=out.READ,
    ),
    ToolSpec(
        "write_file",
        "Write a UTF-8 text file on a machine, inside its allowed roots: create or replace it, or append "
        "to it. Atomic (readers never see it half written); keeps the file's mode. The parent folder must "
        "exist unless create_dirs. Undo with undo_change.",
        {
            "path": {"type": "string"},
            "content": {"type": "string", "description": "The text to write."},
            "mode": {"type": "string", "enum": ["rewrite", "append"]},
            "create_dirs": {"type": "boolean", "description": "Create missing parent folders (default false)."},
            "machine": MACHINE_PROPERTY,
        },
        ("path", "content"),
        title="Write file",
        output=out.WRITE,
        destructive=True,
    ),
    ToolSpec(
        "list_directory",
        "List a directory on a machine: each entry's name, type and size. Paths must lie inside the "
        "machine's allowed roots.",
        {"path": {"type": "string"}, "machine": MACHINE_PROPERTY},
        ("path",),
        read_only=True,
        title="List directory",
        output=out.LISTING,
    ),
    ToolSpec(
        "check_agent_status",
        "Machines known to Code Remote: online or not, last seen, host, OS, agent version, and the folders "
        "its file tools may use.",
        {},
        relayed=False,
        read_only=True,
        title="Check agent status",
        output=out.MACHINES,
    ),
    ToolSpec(
        "get_command_output",
        "A command's state (queued, running, succeeded, failed, timed_out, cancelled, expired, or lost: "
        "outcome unknown), its exit code once finished, and a page of its output from a byte offset: "
        "follow a long command, read what a result left out.",
        {
            "command_id": {"type": "string", "description": "The id run_shell_command returned.", "minLength": 1, "maxLength": 64},
            "offset": {"type": "integer", "description": "Byte offset to read from (default 0).", "minimum": 0},
            "stream": {"type": "string", "enum": ["stdout", "stderr"]},
        },
        ("command_id",),
        relayed=False,
        read_only=True,
        title="Get command output",
        output=out.OUTPUT_PAGE,
    ),
    ToolSpec(
        "cancel_command",
        "Cancel a command: not started, it never runs; running, its process group gets SIGTERM then "
        "SIGKILL and it ends 'cancelled'.",
        {"command_id": {"type": "string", "minLength": 1, "maxLength": 64}},
        ("command_id",),
        relayed=False,
        title="Cancel command",
        output=out.CANCEL,
        destructive=True,
        idempotent=True,
    ),
    ToolSpec(
        "send_input",
        "Write text to the stdin of a command run with stdin='pipe' (REPL, prompt, cat); answers with the "
        "output it produced once quiet again or ended. close=true then sends end of file. Include the "
        "newline a prompt waits for.",
        {
            "command_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "text": {"type": "string", "description": "Text to write, e.g. 'print(6*7)\\n'.", "maxLength": 65536},
            "close": {"type": "boolean", "description": "Close stdin after the text (default false)."},
        },
        ("command_id",),
        relayed=False,
        title="Send input to a command",
        output=out.SHELL,
        destructive=True,
        open_world=True,
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
        title="List commands",
        output=out.COMMANDS,
    ),
)
TOOLS = CORE_TOOLS + FILE_TOOLS
TOOLS_BY_NAME = {spec.name: spec for spec in TOOLS}


def configured(*, default_timeout_seconds: float, max_timeout_seconds: float) -> tuple[ToolSpec, ...]:
    """The tool table as this server shows and checks it: `run_shell_command`'s timeout gets its
    default (COMMAND_TIMEOUT_SECONDS) and maximum (MAX_COMMAND_TIMEOUT_SECONDS) from the settings."""
    specs = []
    for spec in TOOLS:
        if spec.name == "run_shell_command":
            timeout = dict(spec.properties["timeout"])
            timeout["description"] = (
                f"Seconds before the command is killed (default {default_timeout_seconds:g}, at most "
                f"{max_timeout_seconds:g}); may exceed the wait of this call."
            )
            timeout["maximum"] = max_timeout_seconds
            spec = dataclasses.replace(spec, properties={**spec.properties, "timeout": timeout})
        specs.append(spec)
    return tuple(specs)
