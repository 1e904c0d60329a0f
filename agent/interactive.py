"""Interactive commands (`run_shell_command` with `stdin: "pipe"`): their input, and when they go quiet.

A pipe, not a pseudo-terminal: the output stays byte for byte what the program wrote (no echo of the
input, no CR LF, no terminal escapes), stdout and stderr stay apart, and closing the pipe is a plain
end of file. The price: a program that insists on a terminal (getpass, curses, `ssh` asking for a
password) will not prompt, and one that buffers its output when it is not a terminal must be told
not to (`python3 -u`, `stdbuf -oL`); `python3 -i`, shells and most prompting programs need nothing.

An `InputPump` thread asks the server for input with a held request, quoting the bytes already
written (which acknowledges them, so a lost answer means the same bytes come again and are written
once), and writes what comes to the process. The command's `Interaction` notes every write and every
output read; once nothing has happened for `QUIET_SECONDS` after some output (a prompt printed), or
for `SILENT_SECONDS` with no output at all since the start or the latest input (a slow start, a
long computation, or `cat`, which prints nothing until fed), the output streamer reports the command
quiet (`idle`), which answers the waiting tool call.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from typing import IO, Any

import requests

from agent.client import RelayClient, RelayError

log = logging.getLogger(__name__)
# How long a command must stay silent after its latest input or output to count as waiting for input.
QUIET_SECONDS = 0.4
# ... and with no output at all since the start or the latest input: a busy machine may take longer
# than QUIET_SECONDS just to start python, which would answer before its prompt.
SILENT_SECONDS = 3.0
RETRY_SECONDS = 1.0


class Interaction:
    """The stdin of one interactive command and its quiet periods; shared by the command's thread
    (which reads its output), the input pump and the output streamer."""

    def __init__(self, quiet_seconds: float = QUIET_SECONDS, silent_seconds: float = SILENT_SECONDS) -> None:
        self.quiet_seconds, self.silent_seconds = quiet_seconds, silent_seconds
        self._spoke = False  # output came since the start or the latest input
        self._lock = threading.Lock()
        self._pipe: IO[bytes] | None = None
        self.written = 0
        self.closed = False
        self._active_at = time.monotonic()
        self._reported = False  # this quiet period was reported already
        self.attached = threading.Event()
        self.ended = threading.Event()

    def attach(self, pipe: IO[bytes]) -> None:
        """The process's stdin, once it is started."""
        with self._lock:
            self._pipe = pipe
            self._active_at = time.monotonic()
        self.attached.set()

    def touch(self) -> None:
        """Output was read: the quiet period starts again."""
        with self._lock:
            self._active_at = time.monotonic()
            self._reported = False
            self._spoke = True

    def write(self, data: bytes, close: bool) -> None:
        """Write input (and the end of file); a process that stopped reading loses it, said in the log."""
        self.attached.wait(30)
        with self._lock:
            pipe = self._pipe
        if pipe is None or self.closed:
            return
        try:
            if data:
                pipe.write(data)  # blocks while the process does not read: only this pump waits
                pipe.flush()
            if close:
                pipe.close()
        except (BrokenPipeError, ValueError, OSError):
            log.info("the process closed its input; %d bytes of input were not taken", len(data))
            close = True
        with self._lock:
            self.written += len(data)
            self.closed = self.closed or close
            self._active_at = time.monotonic()
            self._reported = False
            self._spoke = False

    def quiet(self) -> dict[str, Any] | None:
        """The mark to report once per quiet period ({"stdin": bytes written, "closed": bool}), else None."""
        with self._lock:
            wait = self.quiet_seconds if self._spoke else self.silent_seconds
            if self._reported or self._pipe is None or time.monotonic() - self._active_at < wait:
                return None
            self._reported = True
            return {"stdin": self.written, "closed": self.closed}

    def unreport(self) -> None:
        """The quiet mark could not be sent: report it again."""
        with self._lock:
            self._reported = False

    def end(self) -> None:
        """The process is gone: close its stdin and stop the pump."""
        self.ended.set()
        with self._lock:
            pipe, self._pipe = self._pipe, None
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


class InputPump:
    """Fetches a command's input from the server and writes it to the process, until it ends."""

    def __init__(self, client: RelayClient, command_id: str, interaction: Interaction) -> None:
        self.client, self.command_id, self.interaction = client, command_id, interaction
        self._thread = threading.Thread(target=self.run, name=f"input-{command_id[:8]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run(self) -> None:
        interaction = self.interaction
        while not interaction.ended.is_set() and not interaction.closed:
            try:
                taken = self.client.take_input(self.command_id, interaction.written)
            except (requests.RequestException, RelayError) as error:
                log.debug("input of %s not fetched: %s", self.command_id[:8], error)
                interaction.ended.wait(RETRY_SECONDS)
                continue
            if taken is None:
                continue
            if taken.get("state") != "running" and not taken.get("data") and not taken.get("close"):
                if taken.get("state") in ("queued", "leased"):
                    interaction.ended.wait(RETRY_SECONDS)
                    continue
                return  # the command ended (or was never interactive): nothing more will come
            if int(taken.get("offset", -1)) != interaction.written:
                continue  # an answer to an older question: ask again
            data = base64.b64decode(taken.get("data") or "")
            interaction.write(data, bool(taken.get("close")))
