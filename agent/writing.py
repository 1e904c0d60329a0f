"""write_file: create, replace or append to a text file, atomically (agent/atomic.py)."""

from __future__ import annotations

import os
from typing import Any

from agent import atomic
from agent.errors import OperationError
from agent.files import PathPolicy, read_bytes, wants_directory


def write_file(policy: PathPolicy, path: str, content: str, *, max_bytes: int, mode: str = "rewrite", create_dirs: bool = False) -> dict[str, Any]:
    """Create or replace a text file (`mode="rewrite"`), or add to its end (`mode="append"`).

    Either way the file is replaced atomically (agent/atomic.py): a reader sees the old content or the
    new, never a partial file. A missing parent folder is an error unless `create_dirs`.
    """
    if mode not in ("rewrite", "append"):
        raise OperationError("invalid_arguments", f"mode must be 'rewrite' or 'append', got {mode!r}")
    data = content.encode("utf-8", "surrogateescape")
    if len(data) > max_bytes:
        raise OperationError("content_too_large", f"content is {len(data)} bytes, over the {max_bytes}-byte limit")
    if wants_directory(path):
        raise OperationError("not_a_file", f"{path} ends with '/', which names a folder; give a file's path")
    real = policy.resolve(path, write=True)
    parent = os.path.dirname(real)
    if not os.path.isdir(parent):
        if not create_dirs:
            raise OperationError(
                "parent_not_found", f"folder {parent} does not exist; pass create_dirs=true to create it"
            )
        make_parents(policy, parent)
    if os.path.lexists(real) and not os.path.isfile(real):
        raise OperationError("not_a_file", f"{real} exists and is not a regular file")
    chunks: list[bytes] = [data]
    previous = 0
    if mode == "append" and os.path.exists(real):
        old = read_bytes(policy, real, max_bytes=max_bytes)
        previous = len(old)
        chunks = [old, data]
    written = atomic.replace(real, chunks)
    result: dict[str, Any] = {"path": real, "bytes_written": len(data), "size": written, "mode": mode}
    if mode == "append":
        result["previous_size"] = previous
    return result


def make_parents(policy: PathPolicy, folder: str) -> list[str]:
    """Create `folder` and its missing parents (each checked against the roots); returns those made."""
    missing = []
    while not os.path.isdir(folder):
        if os.path.lexists(folder):
            raise OperationError("not_a_directory", f"{folder} exists and is not a folder")
        missing.append(folder)
        folder = os.path.dirname(folder)
    for made in reversed(missing):
        policy.check(made, made, write=True)
        os.mkdir(made)
    return list(reversed(missing))
