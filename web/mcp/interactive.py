"""send_input: text to an interactive command's stdin, answered with the output it produced.

The input is stored and handed to the agent by web/relay/stdin.py. The call then waits (at most
TOOL_WAIT_SECONDS) until the agent reports the process quiet after taking it, or the command ends,
and shows the output that arrived since the call began: the output "the input produced", as far as
a process that may also print on its own allows.
"""

from __future__ import annotations

from typing import Any

from web import errors
from web.mcp import structured
from web.models import TERMINAL_STATES, Command
from web.relay import output, stdin
from web.relay.output import STREAMS


def send_input(relay, command: Command, text: str, close: bool) -> tuple[str, dict[str, Any]]:
    if not stdin.interactive(command):
        raise errors.ToolError(
            f"command {command.id} was not started with stdin='pipe', so its input is closed; start it with "
            "run_shell_command(command=..., stdin='pipe') to send it input",
            code="not_interactive",
        )
    if command.state in TERMINAL_STATES:
        raise errors.ToolError(f"command {command.id} already ended {command.state}; the input was not sent", code="command_ended")
    data = text.encode("utf-8", "surrogatepass")
    if not data and not close:
        raise errors.ToolError("send_input needs text to write, or close=true to end the input", code="invalid_arguments")
    since = {s: output.received(command, s) for s in STREAMS}
    written = relay.stdin.send(command, data, close)
    waited = relay.config.tool_wait_seconds
    command = relay.wait(command.id, waited, until=lambda c: stdin.quiet_after(c, written, close))
    return reply(relay, command, since, waited, quiet=stdin.quiet_after(command, written, close))


def reply(relay, command: Command, since: dict[str, int], waited: float, *, quiet: bool) -> tuple[str, dict[str, Any]]:
    """The output since `since` (per-stream byte offsets), and what the command is doing now."""
    budget = relay.config.tool_output_budget_bytes
    new_stderr = max(output.stored(command, "stderr") - since["stderr"], 0)
    shares = {"stderr": min(new_stderr, budget // 4)}
    shares["stdout"] = budget - shares["stderr"]
    texts, ends, truncated = {}, {}, False
    for stream in STREAMS:
        texts[stream], ends[stream] = output.page(relay.output, command, stream, since[stream], max(shares[stream], 1))
        truncated = truncated or ends[stream] < output.stored(command, stream)
    typed = structured.shell(relay, command) | {
        "stdout": texts["stdout"],
        "stderr": texts["stderr"],
        "next_offset": ends["stdout"],
        "truncated": truncated,
    }
    parts = [texts["stdout"].rstrip("\n")] if texts["stdout"] else []
    if texts["stderr"]:
        parts.append("[stderr]\n" + texts["stderr"].rstrip("\n"))
    for stream in STREAMS:
        if ends[stream] < output.stored(command, stream):
            parts.append(
                f"[… more {stream}: get_command_output(command_id='{command.id}', stream='{stream}', offset={ends[stream]}) …]"
            )
    parts.append(status_line(command, waited, quiet=quiet))
    return "\n".join(parts), typed


def status_line(command: Command, waited: float, *, quiet: bool) -> str:
    """What an interactive command is doing, and what the model can do next."""
    if command.state in TERMINAL_STATES:
        code = f", exit code {command.exit_code}" if command.exit_code is not None else ""
        why = f": {command.error_message}" if command.error_message else ""
        return f"[command {command.id} ended {command.state}{code}{why}]"
    if quiet:
        return (
            f"[command {command.id} is running on {command.machine!r} and quiet, waiting for input: send_input(command_id='{command.id}', "
            "text=...) with the newline a prompt needs; close=true ends its input; cancel_command stops it]"
        )
    return (
        f"[command {command.id} is {command.state} and not quiet after {waited:g} s; follow it with "
        f"get_command_output(command_id='{command.id}'), or send_input again]"
    )
