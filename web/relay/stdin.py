"""Input for interactive commands (`run_shell_command` with `stdin: "pipe"`), from `send_input`
through the database to the agent.

Everything lives in the database, so any server process may take the `send_input` call and any
other may hold the agent's request for input:

- `send_input` appends its text to the command's stdin as `command_output` rows with stream
  `stdin`, at byte offsets, insert only; closing adds an empty row at the end (end of file). Two
  calls racing for the same offset collide on the table's unique index, and the loser is told to
  send again: input is never reordered or lost silently.
- The agent asks for input with a held `GET /api/agent/commands/<id>/input?offset=N`, N being the
  bytes it has already written to the process (which acknowledges them). The request is woken at
  once by a `send_input` in any server process (web/bus.py), and re-reads the database every second
  besides.
- When the process has been quiet for a moment since its latest input, the agent says so on its
  next output post (`idle`, web/relay/relay.py: progress), after all the output before it. The
  waiting `send_input` (or the first answer of the `run_shell_command` that started it) answers
  then, with the output so far.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import peewee

from web import errors
from web.models import TERMINAL_STATES, Command, CommandOutput, atomic_write, db
from web.relay.output import STREAMS
from web.relay.wakeup import RECHECK_SECONDS, Wakeups

STDIN = "stdin"
# At most this much input goes to the agent in one answer; it asks again for the rest.
MAX_TAKE_BYTES = 256 * 1024


def interactive(command: Command) -> bool:
    """Whether the command was started with its stdin kept open for send_input."""
    return command.tool == "run_shell_command" and (command.arguments or {}).get("stdin") == "pipe"


def with_idle(meta: dict | None, idle: dict) -> dict:
    """The command's output metadata with the agent's latest quiet mark: the stdin bytes written and
    whether it was closed when the process went quiet, and how much output had arrived by then."""
    meta = dict(meta or {})
    meta["idle"] = {
        "stdin": int(idle.get("stdin", 0)),
        "closed": bool(idle.get("closed", False)),
        "output": {s: (meta.get(s) or {}).get("received", 0) for s in STREAMS},
    }
    return meta


def idle_mark(command: Command) -> dict | None:
    return (command.output or {}).get("idle")


def quiet_after(command: Command, written: int, closed: bool = False) -> bool:
    """Whether the process went quiet after taking `written` bytes of input (and the end of file)."""
    mark = idle_mark(command)
    return mark is not None and mark["stdin"] >= written and (mark["closed"] or not closed)


def _wake_key(command_id: str) -> str:
    return "stdin:" + command_id


class StdinQueue:
    """Queues input for interactive commands and hands it to their agent."""

    def __init__(self, wakeups: Wakeups) -> None:
        self.wakeups = wakeups

    @staticmethod
    def _rows(command_id: str, after: int = 0) -> list[CommandOutput]:
        return list(
            CommandOutput.select()
            .where(
                (CommandOutput.command_id == command_id)
                & (CommandOutput.stream == STDIN)
                & ((CommandOutput.offset + CommandOutput.length > after) | (CommandOutput.length == 0))
            )
            .order_by(CommandOutput.offset, CommandOutput.length.desc())
        )

    def queued(self, command_id: str) -> tuple[int, bool]:
        """Bytes of input queued so far, and whether the end of file was sent."""
        with db.connection_context():
            rows = self._rows(command_id)
        end = max((r.offset + r.length for r in rows), default=0)
        return end, any(r.length == 0 for r in rows)

    def send(self, command: Command, data: bytes, close: bool) -> int:
        """Queue `data` (and the end of file when `close`); returns the stdin offset after it."""
        try:
            with db.connection_context(), atomic_write():
                rows = self._rows(command.id)
                if any(r.length == 0 for r in rows):
                    raise errors.ToolError(
                        f"the input of command {command.id} is already closed; nothing more can be sent", code="input_closed"
                    )
                end = max((r.offset + r.length for r in rows), default=0)
                if data:
                    CommandOutput.create(command_id=command.id, stream=STDIN, offset=end, length=len(data), data=data)
                    end += len(data)
                if close:
                    CommandOutput.create(command_id=command.id, stream=STDIN, offset=end, length=0, data=b"")
        except peewee.IntegrityError:
            raise errors.ToolError(
                f"another send_input to command {command.id} was stored at the same moment; send this input again",
                code="input_conflict",
            ) from None
        self.wakeups.signal(_wake_key(command.id))
        return end

    def take(self, machine: str, command_id: str, offset: int, wait_seconds: float) -> dict[str, Any] | None:
        """Input for the agent past `offset`, held up to `wait_seconds` until there is some; None
        when there is none. A command that ended answers its state and no input."""
        deadline = time.monotonic() + wait_seconds
        changed = self.wakeups.changed(_wake_key(command_id))
        while True:
            changed.clear()
            with db.connection_context():
                command = Command.get_or_none(Command.id == command_id)
                if command is None or command.machine != machine:
                    raise errors.NotFound(f"no command {command_id} for machine {machine!r}", code="unknown_command")
                if command.state in TERMINAL_STATES or not interactive(command):
                    return {"state": command.state, "offset": offset, "data": "", "close": False}
                rows = self._rows(command_id, offset)
            data, close = _from(rows, offset)
            if data or close:
                return {"state": command.state, "offset": offset, "data": base64.b64encode(data).decode("ascii"), "close": close}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            changed.wait(min(remaining, RECHECK_SECONDS))


def _from(rows: list[CommandOutput], offset: int) -> tuple[bytes, bool]:
    """The queued bytes from `offset` (at most MAX_TAKE_BYTES), and whether the end of file follows them."""
    parts, at = [], offset
    for row in rows:
        if row.length == 0:
            return b"".join(parts), row.offset == at
        if row.offset > at:
            break  # a gap cannot happen (offsets are contiguous); stop rather than skip
        piece = bytes(row.data)[at - row.offset : at - row.offset + MAX_TAKE_BYTES - (at - offset)]
        parts.append(piece)
        at += len(piece)
        if at - offset >= MAX_TAKE_BYTES:
            break
    return b"".join(parts), False
