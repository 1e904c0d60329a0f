"""Undo for the file tools: every change keeps a checkpoint of what it replaced, on this machine.

`write_file`, `edit_file` (not a dry run), `move_file`, `copy_file` and `delete_path` first copy
every path they are about to change (the file, folder or symlink there, or the fact that nothing
was) into a checkpoint under the state folder (`<state>/checkpoints/<id>/`, beside the outbox: the
deny-list keeps the file tools out of it). Once the change succeeded, the checkpoint also records
a fingerprint of what the change left at each path (type, SHA-256 and mode of a file, a symlink's
target, a folder's whole tree), and the result names it: `checkpoint_id`.

`undo_change(checkpoint_id)` puts back what each path held, but only if every path still holds
exactly what the change left: a file edited since, by anyone, is not overwritten (`changed_since`).
Undoing changes newest first therefore always works, and undoing an older one over a newer one is
refused. A checkpoint is used up by its undo.

Budget: a checkpoint is not kept when what it would copy exceeds CHECKPOINT_MAX_BYTES (the result
says so in `checkpoint_skipped`); the oldest are dropped past MAX_CHECKPOINTS, TOTAL_MAX_BYTES or
MAX_AGE_SECONDS. The paths are judged by the same PathPolicy as the tools, on undo too.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable
from typing import Any

from agent import atomic
from agent.errors import OperationError
from agent.policy import PathPolicy, is_under

TOOLS = ("write_file", "edit_file", "move_file", "copy_file", "delete_path")
CHECKPOINT_MAX_BYTES = 32 * 1024 * 1024
TOTAL_MAX_BYTES = 256 * 1024 * 1024
MAX_CHECKPOINTS = 500
MAX_AGE_SECONDS = 7 * 24 * 3600
_LOCK = threading.Lock()


class _Skip(Exception):
    """No checkpoint for this change (too big, an unusual file): the change itself goes ahead."""


def _affected(policy: PathPolicy, tool: str, arguments: dict[str, Any]) -> list[str]:
    """The real paths a call would change, as the tool itself resolves them."""
    if tool in ("write_file", "edit_file"):
        real = policy.resolve(arguments["path"], write=True)
        if tool == "write_file" and arguments.get("create_dirs"):
            # The folders it will create go too (after the file: an undo removes the file, then them).
            missing, folder = None, os.path.dirname(real)
            while folder != os.path.dirname(folder) and not os.path.lexists(folder):
                missing, folder = folder, os.path.dirname(folder)
            if missing is not None:
                return [real, policy.check(missing, missing, write=True)]
        return [real]
    if tool == "move_file":
        return [policy.resolve_entry(arguments["source"], write=True), policy.resolve_entry(arguments["destination"], write=True)]
    if tool == "copy_file":
        return [policy.resolve_entry(arguments["destination"], write=True)]
    return [policy.resolve_entry(arguments["path"], write=True)]


def _file_hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(real: str) -> dict[str, Any]:
    """What is at `real` now, compact enough to compare: absent, a symlink, a file or a folder's tree."""
    try:
        info = os.lstat(real)
    except FileNotFoundError:
        return {"type": "absent"}
    if stat.S_ISLNK(info.st_mode):
        return {"type": "symlink", "target": os.readlink(real)}
    if stat.S_ISREG(info.st_mode):
        return {"type": "file", "sha256": _file_hash(real), "mode": stat.S_IMODE(info.st_mode)}
    if stat.S_ISDIR(info.st_mode):
        digest = hashlib.sha256()
        for folder, dirs, files in os.walk(real):
            dirs.sort()
            for name in sorted(dirs + files):
                path = os.path.join(folder, name)
                inner = fingerprint(path) if name in files or os.path.islink(path) else {"type": "directory"}
                digest.update(json.dumps([os.path.relpath(path, real), inner], sort_keys=True).encode("utf-8", "surrogateescape"))
        return {"type": "directory", "tree": digest.hexdigest()}
    return {"type": "other"}


def _size(real: str, info: os.stat_result) -> int:
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    total = 0
    for folder, _, files in os.walk(real):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
            if total > CHECKPOINT_MAX_BYTES:
                return total
    return total


def _copy_out(policy: PathPolicy, real: str, into: str) -> dict[str, Any]:
    """Copy what is at `real` to `into`; returns its entry (path, type, size)."""
    try:
        info = os.lstat(real)
    except FileNotFoundError:
        return {"path": real, "type": "absent", "size": 0}
    size = _size(real, info)
    if size > CHECKPOINT_MAX_BYTES:
        raise _Skip(f"{real} holds {size} bytes, over the {CHECKPOINT_MAX_BYTES // (1024 * 1024)} MiB a checkpoint keeps")
    if stat.S_ISLNK(info.st_mode):
        return {"path": real, "type": "symlink", "target": os.readlink(real), "size": 0}
    if stat.S_ISREG(info.st_mode):
        fd = policy.open(real, os.O_RDONLY)  # judged by identity, as the tool will be
        with os.fdopen(fd, "rb") as source, open(into, "xb") as copy:
            shutil.copyfileobj(source, copy)
        return {"path": real, "type": "file", "mode": stat.S_IMODE(info.st_mode), "size": size}
    if stat.S_ISDIR(info.st_mode):
        if policy.denied_inside(real) is not None:
            raise _Skip(f"{real} holds a deny-listed path")  # the tool refuses it anyway
        shutil.copytree(real, into, symlinks=True)
        return {"path": real, "type": "directory", "size": size}
    raise _Skip(f"{real} is not a file, folder or symlink")


class Store:
    """The checkpoints of one agent, in `folder` (created on first use, private to the user)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def guarded(self, policy: PathPolicy, tool: str, arguments: dict[str, Any], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run a changing tool, keeping a checkpoint of what it replaces; the result gets its id."""
        if tool not in TOOLS or (tool == "edit_file" and arguments.get("dry_run")):
            return run()
        try:
            paths = _affected(policy, tool, arguments)
        except (OperationError, KeyError, TypeError, OSError, ValueError):
            return run()  # the tool refuses the same call in its own words
        checkpoint_id = f"{time.time_ns():x}{secrets.token_hex(3)}"
        staging = os.path.join(self.folder, f".{checkpoint_id}.tmp")
        entries: list[dict[str, Any]] | None = None
        skipped = ""
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)  # copies of the user's files: the user's alone
            os.mkdir(staging, mode=0o700)
            entries = [_copy_out(policy, path, os.path.join(staging, str(n))) for n, path in enumerate(paths)]
        except _Skip as why:
            skipped = str(why)
        except (OperationError, OSError, shutil.Error):
            skipped = "what it replaces could not be copied"
        try:
            result = run()
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if entries is None:
            shutil.rmtree(staging, ignore_errors=True)
            result["checkpoint_skipped"] = skipped
            return result
        for entry in entries:
            entry["after"] = fingerprint(entry["path"])
        meta = {
            "checkpoint_id": checkpoint_id, "tool": tool, "created_at": time.time(), "entries": entries,
            "bytes": sum(e["size"] for e in entries),
        }
        with open(os.path.join(staging, "meta.json"), "w", encoding="utf-8", errors="surrogateescape") as handle:
            json.dump(meta, handle)
        with _LOCK:
            os.rename(staging, os.path.join(self.folder, checkpoint_id))
            self._prune(keep=checkpoint_id)
        result["checkpoint_id"] = checkpoint_id
        return result

    def _all(self) -> list[dict[str, Any]]:
        found = []
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith("."):
                continue
            try:
                with open(os.path.join(self.folder, name, "meta.json"), encoding="utf-8", errors="surrogateescape") as handle:
                    found.append(json.load(handle))
            except (OSError, ValueError):
                continue
        return sorted(found, key=lambda m: m["created_at"], reverse=True)

    def _prune(self, keep: str) -> None:
        total, now = 0, time.time()
        for count, meta in enumerate(self._all(), start=1):
            total += meta.get("bytes", 0)
            too_many = count > MAX_CHECKPOINTS or total > TOTAL_MAX_BYTES or now - meta["created_at"] > MAX_AGE_SECONDS
            if too_many and meta["checkpoint_id"] != keep:
                shutil.rmtree(os.path.join(self.folder, meta["checkpoint_id"]), ignore_errors=True)

    def list(self, policy: PathPolicy, path: str | None = None) -> dict[str, Any]:
        """Checkpoints newest first; with `path`, those that changed it or something under it."""
        real = policy.resolve_entry(path) if path else None
        shown = []
        for meta in self._all():
            paths = [e["path"] for e in meta["entries"]]
            if real is not None and not any(is_under(p, real) for p in paths):
                continue
            shown.append({
                "checkpoint_id": meta["checkpoint_id"], "tool": meta["tool"],
                "created_at": datetime.datetime.fromtimestamp(meta["created_at"], datetime.timezone.utc).isoformat(timespec="seconds"),
                "paths": paths, "bytes": meta.get("bytes", 0),
            })
        return {"checkpoints": shown, "count": len(shown)}

    def undo(self, policy: PathPolicy, checkpoint_id: str) -> dict[str, Any]:
        """Put back what the checkpoint's change replaced, if nothing changed since."""
        if not isinstance(checkpoint_id, str) or not checkpoint_id.isalnum():
            raise OperationError("invalid_arguments", "checkpoint_id must be an id list_checkpoints gave")
        with _LOCK:
            where = os.path.join(self.folder, checkpoint_id)
            try:
                with open(os.path.join(where, "meta.json"), encoding="utf-8", errors="surrogateescape") as handle:
                    meta = json.load(handle)
            except FileNotFoundError:
                raise OperationError(
                    "checkpoint_not_found", f"no checkpoint {checkpoint_id} on this machine (undone already, or dropped by age or size); see list_checkpoints"
                ) from None
            for entry in meta["entries"]:
                policy.check(entry["path"], entry["path"], write=True)
                now = fingerprint(entry["path"])
                if now != entry["after"]:
                    raise OperationError(
                        "changed_since",
                        f"{entry['path']} changed since {meta['tool']} made checkpoint {checkpoint_id} (it is now "
                        f"{_describe(now)}, the change left {_describe(entry['after'])}); nothing was undone. Undo newer "
                        "changes to it first (list_checkpoints), or edit it by hand",
                    )
            for number, entry in enumerate(meta["entries"]):
                _restore(entry, os.path.join(where, str(number)))
            shutil.rmtree(where, ignore_errors=True)
        return {"checkpoint_id": checkpoint_id, "tool": meta["tool"], "restored": [e["path"] for e in meta["entries"]]}


def _describe(found: dict[str, Any]) -> str:
    if found["type"] == "file":
        return f"a file with SHA-256 {found['sha256'][:12]}…"
    return {"absent": "absent", "symlink": "a symlink", "directory": "a folder", "other": "a special file"}.get(found["type"], found["type"])


def _restore(entry: dict[str, Any], saved: str) -> None:
    real, kind = entry["path"], entry["type"]
    current = entry["after"]["type"]
    if kind == "file" and current == "file":
        with open(saved, "rb") as handle:
            atomic.replace(real, iter(lambda: handle.read(1024 * 1024), b""))
        os.chmod(real, entry["mode"], follow_symlinks=False)
        return
    if current == "directory":
        shutil.rmtree(real)
    elif current != "absent":
        os.unlink(real)
    if kind == "file":
        with open(saved, "rb") as handle:
            atomic.replace(real, iter(lambda: handle.read(1024 * 1024), b""), mode=entry["mode"])
    elif kind == "symlink":
        os.symlink(entry["target"], real)
    elif kind == "directory":
        shutil.copytree(saved, real, symlinks=True)
