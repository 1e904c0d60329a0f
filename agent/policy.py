"""What this agent agrees to do, decided on the user's machine: the server may be compromised, the
agent has the last word.

* per-tool switches (`DISABLED_TOOLS=run_shell_command,write_file`);
* read-only mode (`READ_ONLY=1`): only the tools that change nothing (READ_ONLY_TOOLS); the shell is
  off too, since a shell can write anything;
* an optional allow-list of command prefixes (`ALLOWED_COMMANDS=git status,ls,cat`): a command must
  be one of them or start with one followed by a space, and may not chain, pipe, redirect or
  substitute (no `; & | < > $ \\` ( )` or newlines), or `git status; rm -rf ~` would pass;
* a deny-list for the file tools, on by default: SSH, cloud and package-registry credentials, GnuPG,
  the agent's own `.env` (`DENY_PATHS` adds more).

Paths are checked on what was actually opened: `open_verified` walks from `/` one component at a time
with O_NOFOLLOW (as openat does), so a directory swapped for a symlink between the check and the open
makes the open fail instead of escaping, and then reads the opened descriptor's own path back from
/proc/self/fd and checks that against the roots and the deny-list.

None of this contains `run_shell_command` when it is enabled: the shell runs with the user's rights
and can read every file the user can. To contain the shell, run the sandboxed (container) agent.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from agent.errors import OperationError

ALL_TOOLS = (
    "run_shell_command", "read_file", "write_file", "list_directory", "edit_file", "move_file", "copy_file",
    "make_directory", "delete_path", "get_file_info", "read_multiple_files",
)
# The tools that change nothing: the only ones READ_ONLY leaves on.
READ_ONLY_TOOLS = frozenset({"read_file", "list_directory", "get_file_info", "read_multiple_files"})
# Relative to the home folder. Credentials that would let a caller become the user elsewhere.
DEFAULT_DENY = (
    ".ssh",
    ".aws",
    ".gnupg",
    ".config/gcloud",
    ".azure",
    ".kube",
    ".docker/config.json",
    ".netrc",
    ".git-credentials",
    ".config/gh",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".config/code-remote",
)
SHELL_METACHARACTERS = frozenset(";&|<>$`()\n\r\\")


def deny_paths(home: str, extra: tuple[str, ...] = (), env_file: str | None = None) -> tuple[str, ...]:
    """The real paths the file tools refuse: the defaults under `home`, `extra`, the agent's .env."""
    paths = [os.path.join(home, p) for p in DEFAULT_DENY]
    paths += [os.path.expanduser(p) for p in extra if p]
    if env_file:
        paths.append(env_file)
    paths.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".env"))
    return tuple(dict.fromkeys(os.path.realpath(p) for p in paths))


def is_under(path: str, parent: str) -> bool:
    return path == parent or os.path.commonpath([path, parent]) == parent


def check_call(tool: str, arguments: dict[str, Any], *, disabled: frozenset[str], read_only: bool, command_prefixes: tuple[str, ...]) -> None:
    """Refuse a call this machine's owner has not allowed, with a message saying which setting."""
    if tool in disabled:
        raise OperationError("tool_disabled", f"{tool} is disabled on this machine (DISABLED_TOOLS)")
    if read_only and tool not in READ_ONLY_TOOLS:
        raise OperationError("read_only", f"{tool} is refused: this machine's agent runs in read-only mode (READ_ONLY)")
    if tool == "run_shell_command" and command_prefixes:
        check_command(arguments.get("command"), command_prefixes)


def check_command(command: Any, prefixes: tuple[str, ...]) -> None:
    if not isinstance(command, str):
        raise OperationError("invalid_arguments", "command must be a string")
    stripped = command.strip()
    bad = sorted(SHELL_METACHARACTERS.intersection(stripped))
    if bad:
        raise OperationError(
            "command_not_allowed",
            f"commands are limited to ALLOWED_COMMANDS here and may not contain {' '.join(repr(c) for c in bad)}",
        )
    if not any(stripped == p or stripped.startswith(p + " ") for p in prefixes):
        raise OperationError(
            "command_not_allowed", f"command is not in this machine's ALLOWED_COMMANDS ({', '.join(prefixes)})"
        )


def open_verified(real: str, flags: int, mode: int = 0o644) -> tuple[int, str]:
    """Open the already-resolved absolute path `real` without following any symlink on the way.

    Returns the descriptor and the path the kernel says it refers to. Raises OperationError.
    """
    parts = [p for p in real.split("/") if p]
    if not real.startswith("/") or any(p in (".", "..") for p in parts):
        raise OperationError("invalid_path", f"{real} is not a resolved absolute path")
    directory = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
            except OSError as error:
                raise _open_error(real, error) from None
            os.close(directory)
            directory = child
        if not parts:
            fd, directory = directory, -1
        else:
            try:
                fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=directory)
            except OSError as error:
                raise _open_error(real, error) from None
    finally:
        if directory >= 0:
            os.close(directory)
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        opened = real  # no /proc (macOS): the O_NOFOLLOW walk alone guarantees the path
    if opened != real:
        os.close(fd)
        raise OperationError("path_changed", f"{real} changed while it was being opened (now {opened}); refused")
    return fd, opened


def _open_error(real: str, error: OSError) -> OperationError:
    if error.errno == errno.ENOENT:
        return OperationError("not_found", f"no such file or directory: {real}")
    if error.errno in (errno.ELOOP, errno.ENOTDIR):
        return OperationError("path_changed", f"{real}: a part of the path is not a directory or became a symlink; refused")
    if error.errno == errno.EISDIR:
        return OperationError("not_a_file", f"{real} is a directory, not a file")
    if error.errno in (errno.EACCES, errno.EPERM):
        return OperationError("permission_denied", f"permission denied: {real}")
    if error.errno == errno.ENAMETOOLONG:
        return OperationError("invalid_path", f"path is too long ({len(real)} characters)")
    return OperationError("io_error", f"cannot open {real}: {error.strerror}")
