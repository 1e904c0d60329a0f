"""What the model reads about a command: its outcome, or its state and output so far.

A command the call stopped waiting for is not an error: the text gives its id and state and says how
to follow it, so the model neither mistakes it for a success nor runs it again. A `lost` command says
its outcome is unknown.

Output and file contents may imitate this text: where Code Remote's words follow them, a frame
(web/controls.py) marks where they end, and the real exit code and state are in the structured content.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from web.controls import frame, name
from web.models import CANCELLED, EXPIRED, LEASED, LOST, QUEUED, RUNNING, SUCCEEDED, TIMED_OUT, Command
from web.mcp import file_text, interactive, structured
from web.relay import output, stdin

MAX_PROGRESS_CHARS = 4000


def describe(relay, command: Command, *, waited: float) -> tuple[str, bool]:
    """The text for a tool call's answer, and whether it is an error result."""
    if command.state in (QUEUED, LEASED, RUNNING):
        return _pending(relay, command, waited), False
    text, is_error = _describe_finished(relay, command)
    if command.tool == "run_shell_command":
        text += background_note(command.result or {})
    masked = (command.result or {}).get("masked")
    if isinstance(masked, int) and masked > 0:
        text += (
            f"\n[{masked} occurrence{'s' if masked != 1 else ''} of a secret (the agent's credentials or the owner's "
            "MASK_VALUES) masked by the agent as ***]"
        )
    return text, is_error


def _describe_finished(relay, command: Command) -> tuple[str, bool]:
    result = command.result or {}
    if command.state == SUCCEEDED:
        return _format_success(relay, command, result), False
    if command.state == TIMED_OUT:
        text = _format_success(relay, command, result)
        return f"command timed out after {command.timeout_seconds:g} s and was killed with its process group\n{text}".rstrip(), True
    if command.state == CANCELLED:
        text = _shell_text(relay, command, result) if command.tool == "run_shell_command" else ""
        return (f"command {command.id} was cancelled: " + (command.error_message or "its process group was ended") + "\n" + text).rstrip(), True
    if command.state == EXPIRED:
        return (
            f"machine {command.machine!r} did not pick up the command in time; it was not run "
            "(is the agent stuck or its network down?)",
            True,
        )
    if command.state == LOST:
        text = command.error_message or "outcome unknown"
        return f"command {command.id} on {command.machine!r} is lost: {text}", True
    return command.error_message or f"command ended {command.state}", True


def background_note(result: dict[str, Any]) -> str:
    """What became of the processes a shell command left running (agent/escapes.py), or ""."""
    notes = []
    for key, verb in (("background_ended", "ended"), ("background", "left running, as asked")):
        listed = result.get(key)
        if not isinstance(listed, list) or not listed:
            continue
        names = ", ".join(
            f"pid {p.get('pid')} ({name(str(p.get('name', '?')))[:64]})" for p in listed[:10] if isinstance(p, dict)
        )
        count = result.get("background_count") if isinstance(result.get("background_count"), int) else len(listed)
        more = f" and {count - 10} more" if count > 10 else ""
        notes.append(f"\n[{count} process{'es' if count != 1 else ''} the command started outlived it and {'were' if count != 1 else 'was'} {verb}: {names}{more}]")
    return "".join(notes)


def _pending(relay, command: Command, waited: float) -> str:
    follow = (
        f"Follow it with get_command_output(command_id='{command.id}'); stop it with "
        f"cancel_command(command_id='{command.id}'). Do not run it again."
    )
    if command.state == RUNNING and stdin.idle_mark(command) is not None:
        head = interactive.status_line(command, waited, quiet=True)
        so_far = output.render(relay.output, command, relay.config.tool_output_budget_bytes)
        return (so_far + "\n" if so_far else "[no output so far]\n") + head
    if command.state == RUNNING:
        head = (
            f"[command {command.id} is still running on {command.machine!r} after {waited:g} s: its outcome is "
            f"unknown so far, and it may still be running. {follow}]"
        )
        so_far = output.render(relay.output, command, relay.config.tool_output_budget_bytes, mark=frame)
        return head + ("\n[output so far]\n" + so_far + "\n" + frame("end of the output so far") if so_far else "\n[no output so far]")
    return (
        f"[command {command.id} is {command.state} on {command.machine!r}: the agent has not started it "
        f"after {waited:g} s. It will run once the agent picks it up, or end 'expired' if not started in time. {follow}]"
    )


def _shell_text(relay, command: Command, result: dict[str, Any]) -> str:
    """A shell command's output ended by the frame `⟦end of output⟧` (or `⟦no output⟧`): every word of
    Code Remote's inside it (the stderr header, an omission) is a frame too, so none can be forged."""
    if "stdout" in result or "stderr" in result:  # an agent that does not stream sends output inline
        text = "\n".join(
            p for p in ((result.get("stdout") or "").rstrip("\n"), (frame("stderr") + "\n" + result["stderr"].rstrip("\n")) if result.get("stderr") else "") if p
        )
    else:
        text = output.render(relay.output, command, relay.config.tool_output_budget_bytes, mark=frame)
    text = text.lstrip("\n") + "\n" + frame("end of output") if text.strip("\n") else frame("no output")
    for stream in output.STREAMS:
        dropped = result.get(f"{stream}_dropped")
        if dropped:
            text += f"\n[… {dropped} more bytes of {stream} were dropped on the machine: over the agent's output cap …]"
    return text


def _format_success(relay, command: Command, result: dict[str, Any]) -> str:
    tool = command.tool
    if tool == "run_shell_command":
        died = structured.signal_words(result)
        return _shell_text(relay, command, result) + f"\n[exit code {result.get('exit_code')}{': ' + died if died else ''}]"
    if tool == "read_file" and "image" in result:
        return f"{name(result.get('path'))}: {result.get('mime_type')} image, {result.get('size')} bytes (shown as image content)"
    if tool == "read_file":
        text = result.get("content", "")
        if (command.arguments or {}).get("line_numbers") is True and text:
            first = result.get("offset") or 1
            lines = text.split("\n")
            numbered = [f"{n:>6}\t{line}" for n, line in enumerate(lines[:-1] if lines[-1] == "" else lines, start=first)]
            text = "\n".join(numbered) + ("\n" if lines[-1] == "" else "")
        tail = (command.arguments or {}).get("tail")
        if tail is not None:
            text = text.rstrip("\n") + "\n" + frame("end of the file") + (
                f"\n[the last {result.get('lines')} of {result.get('total_lines')} lines, from line {result.get('offset')}"
                + (f"; {result['stopped']}" if result.get("stopped") else "") + "]"
            )
            return text
        if result.get("next_offset") or result.get("masked"):
            # Code Remote's words follow the file's: say where the file's end.
            text = text.rstrip("\n") + "\n" + frame("end of this part of the file" if result.get("next_offset") else "end of the file")
        if result.get("next_offset"):
            text += (
                f"\n[… stopped at line {result['next_offset'] - 1}"
                + (f" of {result['total_lines']}" if result.get("total_lines") else "")
                + f" ({result.get('stopped', 'limit reached')}); read on with read_file(path='{result.get('path')}', "
                f"offset={result['next_offset']}) …]"
            )
        return text
    if tool in file_text.FORMATTERS:
        return file_text.FORMATTERS[tool](result)
    if tool == "list_directory":
        lines = [f"{name(result.get('path'))}:"]
        for entry in result.get("entries", []):
            size = f"  {entry['size']} bytes" if entry.get("type") == "file" else ""
            suffix = "/" if entry.get("type") == "directory" else ""
            # A name may hold a newline: written visibly, one entry stays one line.
            lines.append(f"{name(entry['name'])}{suffix}  [{entry.get('type')}]{size}")
        if result.get("truncated"):
            lines.append(f"[… {result['truncated']} more entries not shown]")
        if len(lines) == 1:
            lines.append("(empty)")
        return "\n".join(lines)
    return json.dumps(result)


def new_output(relay, command: Command, sent: dict[str, int]) -> str:
    """Output that arrived since `sent` (bytes already reported per stream, updated in place)."""
    parts = []
    for stream in output.STREAMS:
        have = output.stored(command, stream)
        if have > sent[stream]:
            text, _ = output.page(relay.output, command, stream, sent[stream], MAX_PROGRESS_CHARS)
            sent[stream] = have
            parts.append(text if stream == "stdout" else frame("stderr") + " " + text)
    return "".join(parts)


def page_text(relay, command: Command, stream: str, offset: int, budget: int) -> tuple[str, dict[str, Any]]:
    """get_command_output's answer, as text and structured: the state, and one page of a stream from
    `offset`."""
    size, received = output.stored(command, stream), output.received(command, stream)
    lines = [f"command {command.id} on {command.machine!r}: {command.state}"]
    if command.exit_code is not None:
        lines[0] += f", exit code {command.exit_code}"
        died = structured.signal_words(command.result)
        if died:
            lines[0] += f" ({died})"
    if command.state == LOST or command.error_message:
        lines.append(command.error_message or "")
    if command.tool != "run_shell_command":
        text, _ = describe(relay, command, waited=0)
        return "\n".join(lines + [text]), structured.page(relay, command, stream, 0, text, 0)
    text, next_offset = output.page(relay.output, command, stream, offset, budget)
    typed = structured.page(relay, command, stream, offset, text, next_offset)
    lines.append(f"[{stream} bytes {offset}-{next_offset} of {size}{'' if command.state in (QUEUED, LEASED, RUNNING) else ' (final)'}]")
    lines.append(text.rstrip("\n"))
    lines.append(frame(f"end of {stream} bytes {offset}-{next_offset}"))
    if next_offset < size:
        lines.append(f"[… more: get_command_output(command_id='{command.id}', stream='{stream}', offset={next_offset}) …]")
    elif command.state in (QUEUED, LEASED, RUNNING):
        lines.append(f"[end of the output so far; the command is still {command.state}]")
    else:
        lines.append(f"[end of {stream}]")
    if received > size:
        lines.append(f"[{received - size} more bytes of {stream} were not kept: over the server's output cap]")
    other = "stderr" if stream == "stdout" else "stdout"
    if output.stored(command, other):
        lines.append(f"[{other} has {output.stored(command, other)} bytes: pass stream='{other}']")
    note = background_note(command.result or {})
    if note:
        lines.append(note.lstrip("\n"))
    return "\n".join(line for line in lines if line is not None), typed


def summary_line(command: Command) -> str:
    when = datetime.datetime.fromtimestamp(command.created_at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    what = (command.arguments or {}).get("command") or (command.arguments or {}).get("path") or ""
    if len(what) > 80:
        what = what[:77] + "..."
    return f"{command.id}  {command.machine}  {command.tool}  {command.state}  {when}  {name(what)}"
