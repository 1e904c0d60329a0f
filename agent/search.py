"""search: file contents or file names under a folder, as ripgrep finds them, one page at a time.

With `rg` on PATH the search runs it (`--json`, sorted by path); without it, a pure-Python walk
(agent/ignore.py), run in a child process (agent/search_child.py), gives the same matches: the same ignore files, hidden files searched but `.git`
skipped, symlinks not followed, the same include/exclude globs. The pattern is a regular expression
(the common syntax of Python's `re` and Rust's `regex`) or, with `literal`, plain text. Case: as
given by `case_sensitive`, else "smart": insensitive unless the pattern has an upper-case letter.

A binary file (one holding a NUL byte) is never shown; one that matched is named in
`binary_files_skipped`. `kind="files"` matches the pattern against each file's path relative to
`path` instead.

Pages: results come in a fixed order (by path, then line), `max_results` at a time and within an
answer budget; `continuation_token` from one answer gives the next page (the search runs again and
skips what was shown). The search stops at the command's timeout, or when the command is cancelled,
and says so with what it found until then.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from agent import search_child, search_walk
from agent.errors import OperationError
from agent.files import PathPolicy
from agent.policy import is_under

DEFAULT_RESULTS = 100
MAX_RESULTS = 1000
MAX_CONTEXT_LINES = 10
ANSWER_BUDGET_BYTES = 96 * 1024
# A search answers within this, whatever the command's timeout, so the answer comes back within the
# tool call's own wait (TOOL_WAIT_SECONDS, 25 s by default) rather than as a command to follow up.
MAX_SECONDS = 20.0


def search(
    policy: PathPolicy, arguments: dict[str, Any], *, timeout_seconds: float, cancel: threading.Event | None = None,
    on_tick: Callable[[], None] | None = None, use_rg: bool | None = None,
) -> dict[str, Any]:
    query = _query(policy, arguments)
    token = arguments.get("continuation_token")
    skip = _skip_from(token, query) if token else 0
    rg = shutil.which("rg") if use_rg is None or use_rg else None
    if use_rg and rg is None:
        raise OperationError("rg_missing", "rg is not on PATH")
    deadline = time.monotonic() + max(1.0, min(timeout_seconds - 1.0, MAX_SECONDS))
    stop = _Stop(deadline, cancel, on_tick)
    finder = search_walk.rg_matches if rg else search_child.python_matches
    results: list[dict[str, Any]] = []
    binary: list[str] = []
    seen, used, more = 0, 0, False
    for item in finder(query, stop, binary, rg or ""):
        if stop.check():
            break
        if seen < skip:
            seen += 1
            continue
        size = len(json.dumps(item))
        if len(results) >= query["max_results"] or (results and used + size > ANSWER_BUDGET_BYTES):
            more = True
            break
        results.append(item)
        used += size
        seen += 1
    stop.close()
    answer: dict[str, Any] = {
        "path": query["root"],
        "kind": query["kind"],
        "engine": "rg" if rg else "python",
        ("matches" if query["kind"] == "content" else "files"): results,
        "count": len(results),
        "binary_files_skipped": sorted(set(binary)),
        "denied_paths_skipped": [d for d in policy.deny if d != query["root"] and is_under(d, query["root"]) and os.path.lexists(d)],
    }
    if more:
        answer["continuation_token"] = _token(seen, query)
    if stop.why:
        answer["stopped"] = stop.why
        answer["complete"] = False
        answer["cancelled"] = stop.why == "cancelled"  # the command then ends `cancelled`, with what was found
    else:
        answer["complete"] = not more
    return answer


class _Stop:
    """When to stop: the deadline passed or the command was cancelled. Kills a running rg at once."""

    def __init__(self, deadline: float, cancel: threading.Event | None, on_tick: Callable[[], None] | None) -> None:
        self.deadline, self.cancel, self.on_tick = deadline, cancel, on_tick
        self.why = ""
        self.process: subprocess.Popen | None = None
        self._done = threading.Event()
        self._watch = threading.Thread(target=self._watch_loop, name="search-watch", daemon=True)
        self._watch.start()

    def _watch_loop(self) -> None:
        while not self._done.wait(0.1):
            if self.on_tick is not None:
                self.on_tick()
            if self.check() and self.process is not None and self.process.poll() is None:
                self.process.kill()

    def check(self) -> bool:
        if not self.why:
            if self.cancel is not None and self.cancel.is_set():
                self.why = "cancelled"
            elif time.monotonic() > self.deadline:
                self.why = "timed out: results so far"
        return bool(self.why)

    def close(self) -> None:
        self._done.set()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _query(policy: PathPolicy, arguments: dict[str, Any]) -> dict[str, Any]:
    pattern = arguments.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise OperationError("invalid_arguments", "pattern must be a non-empty string")
    kind = arguments.get("kind", "content")
    if kind not in ("content", "files"):
        raise OperationError("invalid_arguments", f"kind must be 'content' or 'files', got {kind!r}")
    root = policy.resolve(arguments.get("path") or "~")
    try:
        info = os.stat(root)
    except FileNotFoundError:
        raise OperationError("not_found", f"no such folder: {root}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise OperationError("not_a_directory", f"{root} is not a folder; search takes a folder (read_file reads one file)")
    literal = bool(arguments.get("literal", False))
    case_sensitive = arguments.get("case_sensitive")
    if case_sensitive is None:
        case_sensitive = any(c.isupper() for c in (pattern if literal else re.sub(r"\\.", "", pattern)))
    source = re.escape(pattern) if literal else pattern
    try:
        regex = re.compile(source, 0 if case_sensitive else re.IGNORECASE)
    except re.error as error:
        raise OperationError("invalid_pattern", f"pattern is not a valid regular expression: {error}; pass literal=true for plain text") from None
    globs = {name: _globs(arguments.get(name), name) for name in ("include", "exclude")}
    max_results = arguments.get("max_results", DEFAULT_RESULTS)
    context = arguments.get("context_lines", 0)
    if not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS:
        raise OperationError("invalid_arguments", f"max_results must be between 1 and {MAX_RESULTS}")
    if not isinstance(context, int) or not 0 <= context <= MAX_CONTEXT_LINES:
        raise OperationError("invalid_arguments", f"context_lines must be between 0 and {MAX_CONTEXT_LINES}")
    return {
        "root": root, "pattern": pattern, "kind": kind, "literal": literal, "case_sensitive": case_sensitive,
        "regex": regex, "include": globs["include"], "exclude": globs["exclude"], "max_results": max_results,
        "context": context if kind == "content" else 0, "policy": policy,
    }


def _globs(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) and g for g in value):
        raise OperationError("invalid_arguments", f"{name} must be a list of glob patterns")
    return value


def _fingerprint(query: dict[str, Any]) -> str:
    keys = ("root", "pattern", "kind", "literal", "case_sensitive", "include", "exclude", "context")
    return hashlib.sha256(json.dumps([query[k] for k in keys]).encode()).hexdigest()[:16]


def _token(shown: int, query: dict[str, Any]) -> str:
    raw = json.dumps({"after": shown, "query": _fingerprint(query)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _skip_from(token: Any, query: dict[str, Any]) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token) + "=" * (-len(str(token)) % 4)))
        after, fingerprint = int(data["after"]), data["query"]
    except (ValueError, KeyError, TypeError):
        raise OperationError("invalid_arguments", "continuation_token is not one this search gave; start without it") from None
    if fingerprint != _fingerprint(query):
        raise OperationError(
            "invalid_arguments", "continuation_token belongs to a different search; repeat the same arguments with it"
        )
    return max(0, after)
