"""This agent's machine key: the proof that a machine name belongs to it.

At its first registration the agent generates a random key and keeps it in its state folder
(`machine.key`, mode 600). The server binds the machine name to the key's SHA-256, and refuses a
later registration of that name without the key, so someone else holding the enrolment secret
cannot take the machine over and answer its commands. Keep the state folder when reinstalling;
if it is lost, the owner hands the name to the new key (`POST /api/machines/<name>/approve`).
"""

from __future__ import annotations

import logging
import os
import secrets

log = logging.getLogger(__name__)
KEY_FILE = "machine.key"


def load_or_create(state_dir: str) -> str:
    """The key kept in `state_dir`, created (mode 600) on first use. Two processes starting together
    (the agent and `doctor`) end with the same key: the file is published with a hard link, which
    fails when it already exists."""
    path = os.path.join(state_dir, KEY_FILE)
    key = _read(path)
    if key:
        return key
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
            log.info("created this agent's machine key in %s", path)
        except FileExistsError:
            pass  # another process got there first: use its key
    finally:
        os.unlink(temporary)
    key = _read(path)
    if not key:
        raise RuntimeError(f"{path} is empty or unreadable: delete it so the agent makes a new one")
    return key


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            key = handle.read().strip()
    except FileNotFoundError:
        return ""
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)  # a copy restored with looser rights: only this user may read it
        log.warning("%s was readable by others; made it private (mode 600)", path)
    return key
