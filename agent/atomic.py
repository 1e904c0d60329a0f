"""Atomic file replacement: a reader sees the old content or the new, never a partial file.

The new bytes go to a temporary file in the same folder (same filesystem, so the rename cannot turn
into a copy), are flushed to disk, given the old file's mode (and owner, where allowed), and renamed
over the target in one `rename(2)`. Writing in place instead let a reader polling the file see it
empty or half written. Both the temporary file and the rename go through a descriptor of the parent
folder opened by `open_verified`, so a folder swapped for a symlink meanwhile cannot redirect them.

A rename gives the path a new inode: other hard links to the old file keep the old content, as with
most editors' "write to a new file, then rename" save.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable

from agent.errors import OperationError
from agent.policy import open_verified

TEMP_PREFIX = ".code-remote-"


def replace(real: str, chunks: Iterable[bytes], *, mode: int | None = None) -> int:
    """Write `chunks` to the resolved path `real` atomically; returns the bytes written.

    An existing file keeps its permission bits (and owner when this user may set it); a new file gets
    `mode` if given, else the usual 0o666 less the umask.
    """
    parent, name = os.path.split(real)
    if not name:
        raise OperationError("invalid_path", f"{real} names a folder, not a file")
    dir_fd, _ = open_verified(parent or "/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            old = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None and not stat.S_ISREG(old.st_mode):
            raise OperationError("not_a_file", f"{real} exists and is not a regular file")
        temp = f"{TEMP_PREFIX}{name[:100]}.{secrets.token_hex(6)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
        written = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    written += len(chunk)
                handle.flush()
                if old is not None:
                    _keep_owner(handle.fileno(), old)
                    os.fchmod(handle.fileno(), stat.S_IMODE(old.st_mode))
                elif mode is not None:
                    os.fchmod(handle.fileno(), mode)
                os.fsync(handle.fileno())
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
        return written
    finally:
        os.close(dir_fd)


def _keep_owner(fd: int, old: os.stat_result) -> None:
    if (old.st_uid, old.st_gid) == (os.geteuid(), os.getegid()):
        return
    try:
        os.fchown(fd, old.st_uid, old.st_gid)
    except PermissionError:
        pass  # an ordinary user cannot give a file away; the file becomes theirs, as any editor's save
