"""The agent's own secrets never leave the machine in anything it sends.

A command runs with the user's rights, so it can always find what the agent knows: `env`, the agent's
`/proc/$PPID/environ`, `cat agent/.env`. Three defences, in the order they act:

* `scrub_environment` takes the credentials out of the agent's own environment once the configuration
  is read (and overwrites their bytes in the block `/proc/<pid>/environ` shows), so commands, which
  inherit it, never get them;
* the file tools refuse `agent/.env` and the state folder (agent/denylist.py);
* what is left is masked, as CI runners mask secrets in their logs: every exact occurrence of a
  secret in command output, file contents, listings and error messages is replaced by `***` before it
  is sent, and the result counts the occurrences (`masked`) so the model is told.

The secrets are the enrolment secret (`AUTH_TOKEN` / `AGENT_ENROLMENT_SECRET`), every agent token the
server has issued to this process, the proxy's password (as written and percent-decoded) and the
owner's `MASK_VALUES`. Output is masked as a stream (`StreamMasker`): bytes that could be the start of
a secret are held back until the next chunk shows whether they are, so a secret split across two reads
is still caught, and byte offsets downstream count the masked bytes consistently.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)
MARK = b"***"
# Values shorter than this would mask ordinary text everywhere; MASK_VALUES refuses them.
MIN_SECRET_CHARS = 4


class Secrets:
    """The values to mask, shared by every thread; new ones (a fresh agent token) may be added at any time."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[bytes] = set()
        self._pattern: re.Pattern[bytes] | None = None
        self.version = 0
        for value in values:
            self.add(value)

    def add(self, value: str | bytes | None) -> None:
        """Mask `value` from now on (empty values are ignored)."""
        if not value:
            return
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        with self._lock:
            if data in self._values:
                return
            self._values.add(data)
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile(b"|".join(re.escape(v) for v in ordered))
            self.version += 1

    def values(self) -> frozenset[bytes]:
        with self._lock:
            return frozenset(self._values)

    def pattern(self) -> re.Pattern[bytes] | None:
        with self._lock:
            return self._pattern

    def mask_bytes(self, data: bytes) -> tuple[bytes, int]:
        """`data` with every secret replaced by ***, and how many were."""
        pattern = self.pattern()
        if pattern is None or not data:
            return data, 0
        return pattern.subn(MARK, data)

    def mask_text(self, text: str) -> tuple[str, int]:
        masked, count = self.mask_bytes(text.encode("utf-8", "surrogateescape"))
        return (masked.decode("utf-8", "surrogateescape"), count) if count else (text, 0)

    def mask_object(self, value: Any) -> tuple[Any, int]:
        """Every string inside `value` (dicts, lists) masked, and the number of occurrences."""
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            total, out = 0, {}
            for key, item in value.items():
                out[key], count = self.mask_object(item)
                total += count
            return out, total
        if isinstance(value, list):
            total, items = 0, []
            for item in value:
                masked, count = self.mask_object(item)
                items.append(masked)
                total += count
            return items, total
        return value, 0

    def held_back(self, data: bytes) -> int:
        """How many trailing bytes of `data` could be the beginning of a secret (to wait for more)."""
        longest = 0
        for value in self.values():
            for size in range(min(len(value) - 1, len(data)), longest, -1):
                if data.endswith(value[:size]):
                    longest = size
                    break
        return longest


class StreamMasker:
    """Masks one output stream chunk by chunk; `finish()` releases what was held back at the end."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.pending = b""
        self.count = 0

    def feed(self, data: bytes) -> bytes:
        data = self.pending + data
        masked, count = self.secrets.mask_bytes(data)
        self.count += count
        keep = self.secrets.held_back(masked)
        self.pending = masked[len(masked) - keep :] if keep else b""
        return masked[: len(masked) - keep]

    def finish(self) -> bytes:
        rest, self.pending = self.pending, b""
        return rest


def scrub_environment(environ: MutableMapping[str, str], credentials: Iterable[str], names: Iterable[str]) -> list[str]:
    """Remove the agent's credentials from its own environment, which every command inherits.

    `names` are removed outright; proxy variables keep their URL without the password (commands still
    find the proxy; one that needs the password must be given its own); any other variable whose value
    contains one of `credentials` is removed. The owner's MASK_VALUES are not credentials of the agent:
    variables holding them stay (commands may need them) and only their output is masked. Returns the
    names removed or rewritten (for the log, never values)."""
    from agent.config import strip_password

    changed = []
    values = [v for v in credentials if v]
    for name in list(environ):
        value = environ[name]
        if name in names:
            new = None
        elif name.lower() in PROXY_VARIABLES:
            new = strip_password(value)
            new = None if any(v in new for v in values) else new
        elif any(v in value for v in values):
            new = None
        else:
            continue
        if new == value:
            continue
        if new is None:
            del environ[name]
        else:
            environ[name] = new
        changed.append(name)
    if environ is os.environ:
        overwrite_process_block(Secrets(values))
    return changed


PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "ftp_proxy"})


def overwrite_process_block(secrets: Secrets) -> int:
    """Overwrite every secret in the environment block the kernel shows as /proc/<pid>/environ.

    Removing a variable (unsetenv) only drops the C library's pointer to it: the bytes stay where the
    kernel put them at exec, and /proc/<pid>/environ reads them from there. Overwriting them in place
    is the only way for a process to take them back. Linux only and best effort (returns how many were
    overwritten); output masking still applies where it cannot be done."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        env_start, env_end = int(fields[50 - 3]), int(fields[51 - 3])
        with open("/proc/self/environ", "rb") as handle:
            block = handle.read()
    except (OSError, IndexError, ValueError):
        return 0
    if len(block) != env_end - env_start:
        return 0
    done = 0
    for value in secrets.values():
        for found in re.finditer(re.escape(value), block):
            ctypes.memset(env_start + found.start(), ord("*"), len(value))
            done += 1
    return done
