"""File operations: move, copy, make a folder, delete, describe.

Every path argument goes through the PathPolicy (roots and deny-list), both ends of a move or copy
included. A path that names the entry itself (what is moved, deleted or described) does not follow a
final symlink: deleting a link removes the link, not what it points to. A folder that holds a
deny-listed path is not moved, copied or deleted as a whole, and a root is never moved or deleted.

An existing destination is refused unless `overwrite`, and a folder is never overwritten. Renames go
through descriptors of both parent folders (opened by open_verified); across filesystems a move is a
copy then a delete, as mv does.
"""

from __future__ import annotations

import datetime
import errno
import grp
import os
import pwd
import shutil
import stat
from typing import Any

from agent import atomic
from agent.errors import OperationError
from agent.files import BINARY_SNIFF_BYTES, PathPolicy, wants_directory
from agent.policy import open_verified
from agent.writing import make_parents

COPY_CHUNK_BYTES = 1024 * 1024
LINE_COUNT_MAX_BYTES = 16 * 1024 * 1024


def _must_exist(real: str) -> os.stat_result:
    try:
        return os.lstat(real)
    except FileNotFoundError:
        raise OperationError("not_found", f"no such file or folder: {real}") from None


def _whole_folder_allowed(policy: PathPolicy, real: str, verb: str) -> None:
    if verb != "copied" and (policy.is_root(real) or any(_under(root, real) for root in policy.roots)):
        raise OperationError("root_refused", f"{real} is (or holds) an allowed root; it is never {verb}")
    denied = policy.denied_inside(real)
    if denied is not None:
        raise OperationError("path_denied", f"{real} holds {denied}, which is on the agent's deny-list; not {verb}")


def _under(path: str, parent: str) -> bool:
    return path == parent or os.path.commonpath([path, parent]) == parent


def _destination(policy: PathPolicy, destination: str, source_real: str, overwrite: bool) -> str:
    if wants_directory(destination):
        raise OperationError(
            "invalid_path", f"destination {destination} ends with '/': give the full new path (folder and name)"
        )
    target = policy.resolve_entry(destination, write=True)
    if target == source_real:
        raise OperationError("same_path", f"source and destination are the same path: {target}")
    if _under(target, source_real):
        raise OperationError("invalid_path", f"cannot put {source_real} inside itself ({target})")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise OperationError("parent_not_found", f"folder {parent} does not exist; create it with make_directory")
    if os.path.lexists(target):
        if os.path.isdir(target) and not os.path.islink(target):
            raise OperationError(
                "destination_exists", f"{target} is an existing folder; give the full new path, e.g. {target}/{os.path.basename(source_real)}"
            )
        if not overwrite:
            raise OperationError("destination_exists", f"{target} already exists; pass overwrite=true to replace it")
    return target


def move_file(policy: PathPolicy, source: str, destination: str, *, overwrite: bool = False) -> dict[str, Any]:
    real = policy.resolve_entry(source, write=True)
    info = _must_exist(real)
    if stat.S_ISDIR(info.st_mode):
        _whole_folder_allowed(policy, real, "moved")
    elif policy.is_root(real):
        raise OperationError("root_refused", f"{real} is an allowed root; it is never moved")
    target = _destination(policy, destination, real, overwrite)
    src_dir, _ = open_verified(os.path.dirname(real), os.O_RDONLY | os.O_DIRECTORY)
    try:
        dst_dir, _ = open_verified(os.path.dirname(target), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.rename(os.path.basename(real), os.path.basename(target), src_dir_fd=src_dir, dst_dir_fd=dst_dir)
            how = "renamed"
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            _copy_any(policy, real, target, info)
            _remove_any(real, info)
            how = "copied across filesystems, then deleted"
        finally:
            os.close(dst_dir)
    finally:
        os.close(src_dir)
    return {"source": real, "destination": target, "type": _kind(info), "how": how}


def copy_file(policy: PathPolicy, source: str, destination: str, *, overwrite: bool = False) -> dict[str, Any]:
    real = policy.resolve(source)
    info = _must_exist(real)
    if stat.S_ISDIR(info.st_mode):
        _whole_folder_allowed(policy, real, "copied")
    elif not stat.S_ISREG(info.st_mode):
        raise OperationError("not_a_file", f"{real} is not a regular file or folder")
    target = _destination(policy, destination, real, overwrite)
    size = _copy_any(policy, real, target, info)
    return {"source": real, "destination": target, "type": _kind(info), "bytes_copied": size}


def _copy_any(policy: PathPolicy, real: str, target: str, info: os.stat_result) -> int:
    if stat.S_ISDIR(info.st_mode):
        shutil.copytree(real, target, symlinks=True)
        return sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(target) for f in fs)
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(real), target)
        return 0
    fd = policy.open(real, os.O_RDONLY)  # judged by identity: a hard link to a key is not copied out
    with os.fdopen(fd, "rb") as handle:
        written = atomic.replace(target, iter(lambda: handle.read(COPY_CHUNK_BYTES), b""), mode=stat.S_IMODE(info.st_mode))
    return written


def _remove_any(real: str, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(real)
    else:
        os.unlink(real)


def make_directory(policy: PathPolicy, path: str) -> dict[str, Any]:
    """A folder and its missing parents, like `mkdir -p`; an existing folder is not an error."""
    real = policy.resolve(path, write=True)
    if os.path.isdir(real):
        return {"path": real, "created": []}
    if os.path.lexists(real):
        raise OperationError("not_a_directory", f"{real} exists and is not a folder")
    return {"path": real, "created": make_parents(policy, real)}


def delete_path(policy: PathPolicy, path: str, *, recursive: bool = False) -> dict[str, Any]:
    """A file, a symlink (not what it points to), an empty folder, or with `recursive` a whole folder."""
    real = policy.resolve_entry(path, write=True)
    info = _must_exist(real)
    if policy.is_root(real):
        raise OperationError("root_refused", f"{real} is an allowed root; it is never deleted")
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(real)
        return {"path": real, "type": _kind(info), "removed_entries": 1}
    _whole_folder_allowed(policy, real, "deleted")
    entries = sum(len(ds) + len(fs) for _, ds, fs in os.walk(real))
    if entries and not recursive:
        raise OperationError(
            "directory_not_empty", f"folder {real} is not empty ({entries} entries inside); pass recursive=true to delete it all"
        )
    shutil.rmtree(real) if entries else os.rmdir(real)
    return {"path": real, "type": "directory", "removed_entries": entries + 1}


def get_file_info(policy: PathPolicy, path: str) -> dict[str, Any]:
    real = policy.resolve_entry(path)
    info = _must_exist(real)
    result: dict[str, Any] = {
        "path": real,
        "type": _kind(info),
        "size": info.st_size,
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
        "permissions": stat.filemode(info.st_mode),
        "owner": _name(pwd.getpwuid, info.st_uid),
        "group": _name(grp.getgrgid, info.st_gid),
        "modified_at": _iso(info.st_mtime),
        "accessed_at": _iso(info.st_atime),
        "changed_at": _iso(info.st_ctime),
        "links": info.st_nlink,
    }
    if stat.S_ISLNK(info.st_mode):
        result["symlink_target"] = os.readlink(real)
        result["resolves_to"] = os.path.realpath(real)
    elif stat.S_ISREG(info.st_mode):
        result.update(_text_facts(policy, real, info))
    elif stat.S_ISDIR(info.st_mode):
        try:
            result["entries"] = len(os.listdir(real))
        except PermissionError:
            pass
    return result


def _text_facts(policy: PathPolicy, real: str, info: os.stat_result) -> dict[str, Any]:
    if info.st_size > LINE_COUNT_MAX_BYTES:
        return {"text": None}
    try:
        fd = policy.open(real, os.O_RDONLY)
    except OperationError as error:
        if error.code == "permission_denied":
            return {}
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(LINE_COUNT_MAX_BYTES + 1)
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        return {"text": False}
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return {"text": True, "line_count": lines}


def _kind(info: os.stat_result) -> str:
    if stat.S_ISLNK(info.st_mode):
        return "symlink"
    if stat.S_ISDIR(info.st_mode):
        return "directory"
    return "file" if stat.S_ISREG(info.st_mode) else "other"


def _name(lookup, number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")
