"""What this agent agrees to do, decided on the user's machine: the server may be compromised, the
agent has the last word.

* per-tool switches (`DISABLED_TOOLS=run_shell_command,write_file`);
* read-only mode (`READ_ONLY=1`): only the tools that change nothing (READ_ONLY_TOOLS); the shell is
  off too, since a shell can write anything;
* `send_input` is a changing tool like any other: where it is refused, so is the `stdin: "pipe"`
  that would need it, and with an allow-list of commands too (input typed into an allowed program
  would get around the list);
* an optional allow-list of command prefixes (`ALLOWED_COMMANDS=git status,ls,cat`): a command must
  be one of them or start with one followed by a space, and may not chain, pipe, redirect or
  substitute (no `; & | < > $ \\` ( )` or newlines), or `git status; rm -rf ~` would pass;
* `PathPolicy`, the one gate of every file tool: the allowed roots; a deny-list on by default
  (agent/denylist.py: SSH and GnuPG keys, cloud and registry logins, browser profiles, password vaults,
  keychains, the agent's own `.env` and state folder; `DENY_PATHS` adds more); and no writes to the
  places programs start from (shell start-up files, authorized_keys, crontabs, LaunchAgents, systemd
  user units, autostart) unless `ALLOW_PERSISTENCE_WRITES=1`.

A file tool calls `policy.resolve(path, write=...)` for the real path, then `policy.open(real, flags,
write=...)` for a descriptor, and uses nothing else. Paths are checked on what was actually opened:
`open_verified` walks from `/` one component at a time with O_NOFOLLOW (as openat does), so a
directory swapped for a symlink between the check and the open makes the open fail instead of
escaping; every folder on the way and the file itself are compared by identity (device, inode) with
the denied ones, so a hard link to `~/.ssh/id_ed25519` under another name, or `~/.SSH` on a
case-insensitive disk, is refused as the key itself is.

None of this contains `run_shell_command` when it is enabled: the shell runs with the user's rights
and can read every file the user can. To contain the shell, run the sandboxed (container) agent.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import Any

from agent import denylist
from agent.errors import OperationError

ALL_TOOLS = (
    "run_shell_command", "read_file", "write_file", "list_directory", "edit_file", "move_file", "copy_file",
    "make_directory", "delete_path", "get_file_info", "read_multiple_files", "send_input", "search",
    "list_checkpoints", "undo_change",
)
# The tools that change nothing: the only ones READ_ONLY leaves on.
READ_ONLY_TOOLS = frozenset({"read_file", "list_directory", "get_file_info", "read_multiple_files", "search", "list_checkpoints"})
SHELL_METACHARACTERS = frozenset(";&|<>$`()\n\r\\")


def deny_paths(home: str, extra: tuple[str, ...] = (), env_file: str | None = None) -> tuple[str, ...]:
    """The real paths the file tools refuse: the defaults under `home`, `extra`, the agent's .env."""
    paths = [os.path.join(home, p) for p in denylist.SECRETS]
    paths += [os.path.expanduser(p) for p in extra if p]
    if env_file:
        paths.append(env_file)
    paths.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".env"))
    return tuple(dict.fromkeys(os.path.realpath(p) for p in paths))


def persistence_paths(home: str) -> tuple[str, ...]:
    """The real paths the file tools do not write to by default (programs start from them)."""
    return tuple(dict.fromkeys(os.path.realpath(os.path.join(home, p)) for p in denylist.PERSISTENCE))


def is_under(path: str, parent: str) -> bool:
    return path == parent or os.path.commonpath([path, parent]) == parent


def check_call(tool: str, arguments: dict[str, Any], *, disabled: frozenset[str], read_only: bool, command_prefixes: tuple[str, ...]) -> None:
    """Refuse a call this machine's owner has not allowed, with a message saying which setting."""
    if tool in disabled:
        raise OperationError("tool_disabled", f"{tool} is disabled on this machine (DISABLED_TOOLS)")
    if read_only and tool not in READ_ONLY_TOOLS:
        raise OperationError("read_only", f"{tool} is refused: this machine's agent runs in read-only mode (READ_ONLY)")
    if tool == "run_shell_command" and arguments.get("stdin") == "pipe":
        # Input to a running program is a changing tool of its own: refuse the pipe rather than
        # start a program nobody may answer.
        check_call("send_input", {}, disabled=disabled, read_only=read_only, command_prefixes=())
        if command_prefixes:
            raise OperationError(
                "command_not_allowed",
                "stdin='pipe' is refused here: this machine limits commands to ALLOWED_COMMANDS, and input "
                "typed into a running program would get around that list",
            )
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


def open_verified(real: str, flags: int, mode: int = 0o644, *, visit: Callable[[int, str], None] | None = None) -> tuple[int, str]:
    """Open the already-resolved absolute path `real` without following any symlink on the way.

    `visit(fd, path)` is called with each folder's descriptor on the way (from `/`), to refuse one.
    Returns the descriptor and the path the kernel says it refers to. Raises OperationError.
    """
    parts = [p for p in real.split("/") if p]
    if not real.startswith("/") or any(p in (".", "..") for p in parts):
        raise OperationError("invalid_path", f"{real} is not a resolved absolute path")
    directory = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, part in enumerate(parts[:-1]):
            if visit is not None and index:
                visit(directory, "/" + "/".join(parts[:index]))
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
            except OSError as error:
                raise _open_error(real, error) from None
            os.close(directory)
            directory = child
        if visit is not None and len(parts) > 1:
            visit(directory, "/" + "/".join(parts[:-1]))
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


class PathPolicy:
    """The checks every file tool goes through: roots, the deny-list, persistence locations.

    `resolve(path, write=)` judges the path (after resolving every symlink); `open(real, flags, write=)`
    opens it without following symlinks and judges what was opened by identity. A tool that reads
    uses write=False; one that creates, changes, moves, copies into or deletes uses write=True."""

    def __init__(
        self, roots: tuple[str, ...], home: str, deny: tuple[str, ...] = (), *,
        persistence: tuple[str, ...] = (), allow_persistence_writes: bool = False, deny_names: tuple[str, ...] = (),
    ) -> None:
        self.home = home
        self.roots = tuple(os.path.realpath(r) for r in roots)
        self.secrets = denylist.Locations(deny, deny_names)
        self.persistence = denylist.Locations(() if allow_persistence_writes else persistence)

    @classmethod
    def for_config(cls, config) -> PathPolicy:
        """The policy an agent runs with: its roots, the default deny-list and its own files."""
        return cls(
            config.roots, config.home,
            deny_paths(config.home, config.deny_paths + ((config.state_dir,) if config.state_dir else ()), config.env_file),
            persistence=persistence_paths(config.home), allow_persistence_writes=config.allow_persistence_writes,
            deny_names=denylist.SECRET_NAMES,
        )

    @property
    def deny(self) -> tuple[str, ...]:
        return self.secrets.paths

    def expand(self, path: str) -> str:
        """`path` made absolute (`~` and relative paths from home), symlinks not yet followed."""
        if not isinstance(path, str) or not path:
            raise OperationError("invalid_path", "path must be a non-empty string")
        if "\x00" in path:
            raise OperationError("invalid_path", "path contains a NUL byte")
        if path == "~":
            expanded = self.home
        elif path.startswith("~/"):
            expanded = os.path.join(self.home, path[2:])
        else:
            expanded = path
        if not os.path.isabs(expanded):
            expanded = os.path.join(self.home, expanded)
        return expanded

    def resolve(self, path: str, *, write: bool = False) -> str:
        """The real absolute path for `path`, or OperationError if a check refuses it.

        Every symlink is followed. As in POSIX, a component that is not a folder cannot be followed by
        more: `notes.txt/`, `notes.txt/.` and `notes.txt/../x` fail with "not a directory". With
        `write`, the existing folder it would be written in is also judged by identity.
        """
        expanded = self.expand(path)
        real = self.check(os.path.realpath(expanded), path, write=write)
        _check_components(expanded, path)
        return real

    def resolve_entry(self, path: str, *, write: bool = False) -> str:
        """Like resolve, but a final symlink is not followed: the path of the entry itself (to delete,
        move or describe a link rather than what it points to). A trailing slash follows it, as in POSIX."""
        expanded = self.expand(path)
        parent, name = os.path.split(expanded)
        if not name or name in (".", "..") or wants_directory(path):
            return self.resolve(path, write=write)
        real = self.check(os.path.join(os.path.realpath(parent), name), path, write=write)
        _check_components(expanded, path)
        return real

    def check(self, real: str, path: str, *, write: bool = False) -> str:
        """`real` if it lies inside a root, outside the deny-list and (for a write) outside the
        persistence locations, else OperationError. A write's existing folder is judged by identity."""
        if not self.allows(real):
            raise OperationError(
                "path_outside_roots",
                f"{path} resolves to {real}, which is outside the allowed roots ({', '.join(self.roots)})",
            )
        self._judge(real, self.secrets.containing(real), self.persistence.containing(real) if write else None)
        if write:
            self._judge_for_write(real)
        return real

    def _judge_for_write(self, real: str) -> None:
        """A write's target (if it exists) and its nearest existing folder, judged by identity: a hard
        link to a key or to .bashrc is not overwritten under its other name either."""
        listed = (self.secrets.listed(), self.persistence.listed())
        folder = real
        while True:
            try:
                info = os.lstat(folder) if folder == real else os.stat(folder)
            except OSError:
                info = None
            if info is not None and (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                secret, persistence = self.secrets.match(info, listed[0]), self.persistence.match(info, listed[1])
                self._judge(folder, secret, persistence, same=True)
            if folder != real and info is not None:
                return
            parent = os.path.dirname(folder)
            if parent == folder or not self.allows(parent):
                return
            folder = parent

    def allows(self, real: str) -> bool:
        return any(real == root or os.path.commonpath([real, root]) == root for root in self.roots)

    def is_root(self, real: str) -> bool:
        return real in self.roots

    def denied_inside(self, real: str) -> str | None:
        """A deny-listed path inside the folder `real`, or a hard link to a denied file anywhere in it,
        if any (a recursive copy, move or delete of `real` would carry it along)."""
        named = next((d for d in self.deny if d != real and is_under(d, real)), None)
        if named is not None:
            return named
        inside = None
        for folder, _, names in os.walk(real):
            for name in names:
                try:
                    info = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                    inside = inside if inside is not None else self.secrets.inside()
                    hit = self.secrets.listed().get(denylist.identity(info)) or inside.get(denylist.identity(info))
                    if hit is not None:
                        return f"{os.path.join(folder, name)} (the same file as {hit})"
        return None

    def open(self, real: str, flags: int, mode: int = 0o644, *, write: bool = False) -> int:
        """Open a path `resolve` returned, judging every folder on the way and the file by identity.

        O_TRUNC is applied only once the file is judged, so a refused file is never emptied."""
        truncate = bool(flags & os.O_TRUNC)
        listed = (self.secrets.listed(), self.persistence.listed() if write else {})

        def visit(fd: int, path: str) -> None:
            self.check_opened(fd, path, write=write, listed=listed)

        fd, _ = open_verified(real, (flags & ~os.O_TRUNC) | os.O_NONBLOCK, mode, visit=visit)
        try:
            self.check_opened(fd, real, write=write, listed=listed)
            if truncate:
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def check_opened(self, fd: int, real: str, *, write: bool = False, listed=None) -> os.stat_result:
        """Refuse an opened descriptor that is a denied file or folder under another name. `listed`:
        the identities of the listed paths, when the caller already has them."""
        info = os.fstat(fd)
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            return info
        secrets, persistence = listed or (None, None)
        secret = self.secrets.match(info, secrets)
        self._judge(real, secret, self.persistence.match(info, persistence) if write else None, same=True)
        return info

    def _judge(self, real: str, secret: str | None, persistence: str | None, *, same: bool = False) -> None:
        how = f" (the same file as {{}}, reached by another name or link)" if same else ""
        if secret is not None:
            raise OperationError(
                "path_denied",
                f"{real} is refused{how.format(secret)}: {secret} holds credentials (the agent's deny-list; "
                "DENY_PATHS adds more)",
            )
        if persistence is not None:
            raise OperationError(
                "persistence_denied",
                f"{real} is not written{how.format(persistence)}: programs start from {persistence} by themselves, "
                "so the file tools do not write there; the machine's owner can allow it with ALLOW_PERSISTENCE_WRITES=1",
            )


def wants_directory(path: str) -> bool:
    """True when `path` can only name a folder: it ends with `/`, `/.` or `/..` (or is `.`/`..`)."""
    return path.endswith(("/", "/.", "/..")) or path in (".", "..")


def _check_components(expanded: str, path: str) -> None:
    """Refuse a path that goes on past a non-folder (ENOTDIR), as the kernel would for open(2).

    os.path.realpath handles `..` and a trailing slash by itself and so accepts `file/` and
    `file/../x`; the kernel's own lookup of the unresolved path says whether every component but
    the last is a folder (and, with a trailing slash, the last one too).
    """
    try:
        os.stat(expanded)
    except NotADirectoryError:
        raise OperationError(
            "not_a_directory", f"{path}: not a directory (a part of the path that is a file is followed by more)"
        ) from None
    except (OSError, ValueError):
        pass  # missing, a loop, too long: reported by the operation with its own words
    # `missing/../x`: realpath drops the pair, but the kernel must look `missing` up first, and fails.
    parts = expanded.split("/")
    for i, part in enumerate(parts):
        if part != ".." or i < 2:
            continue
        try:
            os.stat("/".join(parts[:i]))
        except FileNotFoundError:
            raise OperationError(
                "not_found", f"{path}: no such file or directory ({'/'.join(parts[:i])} does not exist, so '..' after it cannot be followed)"
            ) from None
        except (OSError, ValueError):
            pass
