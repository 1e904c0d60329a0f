"""The `structuredContent` of tool results: the typed twin of the text a model reads.

Shapes are declared in web/mcp/result_schemas.py. A shell command's answer (run_shell_command,
get_command_output, send_input) gives its id, state, exit code, the signal that ended it, whether
output was left out and the byte offset to read on from; another relayed tool's answer gives its
command's id and state plus the agent's result fields once it succeeded.
"""

from __future__ import annotations

import datetime
import json
import signal as signals
from typing import Any

from web.models import SUCCEEDED, Command
from web.relay import output

# The structured twin of a big answer (a 512 KiB file read) would double it, and the official client
# drops an SSE session on a message over 1 MiB: past this size, the structured content keeps the
# small fields only and says the rest is in the text.
MAX_STRUCTURED_BYTES = 256 * 1024
SMALL_STRING_CHARS = 1024


def signal_of(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The signal that ended the command as {"number", "name"}, or None.

    Agents report it as {"number": 11, "name": "SIGSEGV"}; older ones sent the name alone. A name or
    number this host does not know is passed on as far as it is known."""
    reported = (result or {}).get("signal")
    number: Any = None
    name: Any = None
    if isinstance(reported, dict):
        number, name = reported.get("number"), reported.get("name")
    elif isinstance(reported, str):
        name = reported
    elif isinstance(reported, int) and not isinstance(reported, bool):
        number = reported
    if not isinstance(number, int) or isinstance(number, bool):
        number = None
    if not isinstance(name, str) or not name:
        name = None
    if number is None and name is not None:
        number = getattr(getattr(signals, "Signals", None), name, None)
        number = int(number) if number is not None else None
    if name is None and number is not None:
        try:
            name = signals.Signals(number).name
        except ValueError:
            name = None
    if number is None and name is None:
        return None
    found: dict[str, Any] = {}
    if number is not None:
        found["number"] = number
    if name is not None:
        found["name"] = name[:32]
    if isinstance(reported, dict) and reported.get("from_exit_status") is True:
        found["from_exit_status"] = True
    return found


def signal_words(result: dict[str, Any] | None) -> str:
    """'killed by SIGSEGV (signal 11)', with how it is known; "" when no signal ended the command."""
    found = signal_of(result)
    if found is None:
        return ""
    what = found.get("name") or "a signal"
    number = f" (signal {found['number']})" if "number" in found else ""
    if found.get("from_exit_status"):
        return f"killed by {what}{number}, as the shell reports it (exit status 128+N)"
    return f"killed by {what}{number}"


def _command_fields(command: Command) -> dict[str, Any]:
    fields: dict[str, Any] = {"command_id": command.id, "machine": command.machine, "state": command.state}
    if command.error_message:
        fields["message"] = command.error_message
    return fields


def shell(relay, command: Command) -> dict[str, Any]:
    """run_shell_command's (and send_input's) structured answer, its output within the same budget
    as the text."""
    result = command.result or {}
    budget = relay.config.tool_output_budget_bytes
    fields = _command_fields(command) | {
        "exit_code": command.exit_code if command.exit_code is not None else result.get("exit_code"),
        "signal": signal_of(result),
        "next_offset": output.stored(command, "stdout"),
    }
    if "stdout" in result or "stderr" in result:  # an agent that does not stream sends output inline
        texts = {s: result.get(s) or "" for s in output.STREAMS}
        truncated = False
    else:
        texts = output.render_streams(relay.output, command, budget)
        truncated = output.cut(command, budget)
    truncated = truncated or any(result.get(f"{s}_dropped") for s in output.STREAMS)
    fields["truncated"] = bool(truncated)
    fields["stdout"] = texts.get("stdout", "")
    fields["stderr"] = texts.get("stderr", "")
    for key in ("background", "background_ended"):
        listed = processes(result.get(key))
        if listed:
            fields[key] = listed
    return fields


def processes(listed: Any) -> list[dict[str, Any]]:
    """Processes an agent listed as [{"pid", "name"}], keeping only well-formed entries."""
    if not isinstance(listed, list):
        return []
    return [
        {"pid": p["pid"], "name": str(p.get("name", "?"))[:64]}
        for p in listed[:50]
        if isinstance(p, dict) and isinstance(p.get("pid"), int) and not isinstance(p.get("pid"), bool)
    ]


def relayed(relay, command: Command) -> dict[str, Any]:
    """Any relayed tool's structured answer."""
    if command.tool == "run_shell_command":
        return shell(relay, command)
    fields = dict(command.result or {}) if command.state == SUCCEEDED else {}
    fields.pop("image", None)  # an image rides as image content (web/mcp/tools.py), not twice
    if fields and len(json.dumps(fields, ensure_ascii=False)) > MAX_STRUCTURED_BYTES:
        fields = {
            k: v for k, v in fields.items()
            if isinstance(v, (int, float, bool)) or v is None or (isinstance(v, str) and len(v) <= SMALL_STRING_CHARS)
        }
        fields["omitted"] = f"the result is over {MAX_STRUCTURED_BYTES // 1024} KiB: its content is in the text only"
    return fields | _command_fields(command)


def page(relay, command: Command, stream: str, offset: int, text: str, next_offset: int) -> dict[str, Any]:
    """get_command_output's structured answer for one page of `stream`."""
    size = output.stored(command, stream)
    result = command.result or {}
    return _command_fields(command) | {
        "exit_code": command.exit_code if command.exit_code is not None else result.get("exit_code"),
        "signal": signal_of(result),
        "stream": stream,
        "offset": offset,
        "next_offset": next_offset,
        "stored_bytes": size,
        "truncated": next_offset < size or output.received(command, stream) > size or bool(result.get(f"{stream}_dropped")),
        "output": text,
    }


def commands(found: list[Command], summary) -> dict[str, Any]:
    """list_commands' structured answer; `summary(command)` is the line the text shows."""
    return {
        "commands": [
            {
                "command_id": c.id,
                "machine": c.machine,
                "tool": c.tool,
                "state": c.state,
                "created_at": datetime.datetime.fromtimestamp(c.created_at, datetime.timezone.utc).isoformat(),
                "summary": summary(c),
            }
            for c in found
        ]
    }
