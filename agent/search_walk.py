"""The two engines of agent/search.py, each yielding results in the same order (a depth-first walk,
siblings by name, as `rg --sort path` does): ripgrep's JSON output, or a pure-Python walk.

A content result is {path, line, column, text[, before, after]} (line and column from 1, the column
in characters); a file result is {path, type, size}. Binary files (a NUL byte anywhere) are dropped
and their paths appended to `binary` when they matched. Paths under the agent's deny-list are never
shown (and the Python walk does not read them).
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from typing import Any

from agent import ignore
from agent.errors import OperationError

MAX_LINE_CHARS = 300


def _clip(line: str) -> str:
    line = line.rstrip("\n").rstrip("\r")
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + "…"


def _denied(query: dict[str, Any], path: str) -> bool:
    """Whether the agent's deny-list covers `path`: by path or name (agent/denylist.py), or, for a
    file with several hard links, by identity (a link to `~/.ssh/id_ed25519` under another name)."""
    policy = query["policy"]
    if policy.secrets.containing(path) is not None:
        return True
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_nlink > 1 and policy.secrets.match(info) is not None


# --- ripgrep -----------------------------------------------------------------------------------


def _rg_argv(query: dict[str, Any], rg: str) -> list[str]:
    argv = [rg, "--no-config", "--no-require-git", "--no-ignore-global", "--hidden", "--sort", "path", "--no-messages"]
    for glob in query["include"]:
        argv += ["-g", glob]
    for glob in query["exclude"]:
        argv += ["-g", "!" + glob]
    argv += ["-g", "!.git"]
    # Never read what the deny-list covers (its results would be dropped anyway): anchored to the root
    # (rg runs in it), last so that no include can win over them.
    policy, root = query["policy"], query["root"]
    for denied in policy.secrets.paths:
        if denied != root and denied.startswith(root.rstrip("/") + "/"):
            argv += ["-g", "!/" + re.sub(r"([*?\[\]{}\\!])", r"\\\1", os.path.relpath(denied, root))]
    for name in policy.secrets.names:
        argv += ["-g", "!" + name]
    if query["kind"] == "files":
        return argv + ["--files", "--", query["root"]]
    argv += ["--json", "--binary", "-s" if query["case_sensitive"] else "-i"]
    if query["literal"]:
        argv.append("-F")
    if query["context"]:
        argv += ["-C", str(query["context"])]
    return argv + ["-e", query["pattern"], "--", query["root"]]


def rg_matches(query: dict[str, Any], stop, binary: list[str], rg: str) -> Iterator[dict[str, Any]]:
    process = subprocess.Popen(
        _rg_argv(query, rg), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=query["root"]
    )
    stop.process = process
    try:
        assert process.stdout is not None
        if query["kind"] == "files":
            for raw in process.stdout:
                path = os.fsdecode(raw.rstrip(b"\n"))
                if not _denied(query, path) and query["regex"].search(os.path.relpath(path, query["root"])):
                    yield _file_item(path)
        else:
            yield from _rg_json(query, process.stdout, binary)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode == 2 and not stop.why:
        message = process.stderr.read().decode("utf-8", "replace").strip() if process.stderr else ""
        if "regex" in message.lower() or "parse" in message.lower():
            raise OperationError("invalid_pattern", f"rg refused the pattern: {message[:500]}")


def _text(field: dict[str, Any]) -> str:
    if "text" in field:
        return field["text"]
    return base64.b64decode(field.get("bytes", "")).decode("utf-8", "surrogateescape")


def _rg_json(query: dict[str, Any], stream, binary: list[str]) -> Iterator[dict[str, Any]]:
    lines: dict[int, str] = {}
    matches: list[dict[str, Any]] = []
    for raw in stream:
        message = json.loads(raw)
        kind, data = message.get("type"), message.get("data", {})
        if kind == "begin":
            lines, matches = {}, []
        elif kind in ("match", "context"):
            text = _text(data["lines"])
            lines[data["line_number"]] = text
            if kind == "match":
                start = data["submatches"][0]["start"] if data["submatches"] else 0
                column = len(text.encode("utf-8", "surrogateescape")[:start].decode("utf-8", "surrogateescape")) + 1
                matches.append({"path": _text(data["path"]), "line": data["line_number"], "column": column, "text": _clip(text)})
        elif kind == "end":
            path = _text(data["path"])
            if _denied(query, path):
                continue
            if data.get("binary_offset") is not None:
                binary.append(path)
            else:
                for match in matches:
                    yield _with_context(match, lines, query["context"])


def _with_context(match: dict[str, Any], lines: dict[int, str], context: int) -> dict[str, Any]:
    if context:
        number = match["line"]
        match["before"] = [_clip(lines[n]) for n in range(number - context, number) if n in lines]
        match["after"] = [_clip(lines[n]) for n in range(number + 1, number + context + 1) if n in lines]
    return match


def _file_item(path: str) -> dict[str, Any]:
    try:
        size = os.lstat(path).st_size
    except OSError:
        size = None
    return {"path": path, "type": "file", "size": size}


# --- pure Python -------------------------------------------------------------------------------


def walk(query: dict[str, Any], stop) -> Iterator[str]:
    """The files ripgrep would search under the root, in its order."""
    root = query["root"]
    overrides = ignore.Overrides(root, query["include"], query["exclude"])
    yield from _walk_folder(root, ignore.load(root) + ignore.ancestors(root), overrides, query, stop)


def _walk_folder(folder: str, rules: list[ignore.RuleSet], overrides: ignore.Overrides, query: dict[str, Any], stop) -> Iterator[str]:
    if stop.check():
        return
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError:
        return  # unreadable: ripgrep skips it quietly too (--no-messages)
    for entry in entries:
        if entry.name == ".git" or entry.is_symlink():
            continue
        path = entry.path
        is_dir = entry.is_dir(follow_symlinks=False)
        if _denied(query, path):
            continue  # never read, whatever it holds
        decision = overrides.decide(path, is_dir)
        if decision is False or (decision is None and ignore.ignored(rules, path, is_dir)):
            continue
        if is_dir:
            yield from _walk_folder(path, ignore.load(path) + rules, overrides, query, stop)
        elif entry.is_file(follow_symlinks=False):
            yield path


def python_matches(query: dict[str, Any], stop, binary: list[str], _rg: str) -> Iterator[dict[str, Any]]:
    for path in walk(query, stop):
        if query["kind"] == "files":
            if query["regex"].search(os.path.relpath(path, query["root"])):
                yield _file_item(path)
            continue
        yield from _search_file(query, path, binary)


def _search_file(query: dict[str, Any], path: str, binary: list[str]) -> Iterator[dict[str, Any]]:
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return
            data = handle.read()
    except OSError:
        return
    regex, context = query["regex"], query["context"]
    if b"\x00" in data:
        text = data.replace(b"\x00", b"\n").decode("utf-8", "surrogateescape")
        if any(regex.search(line) for line in text.split("\n")):
            binary.append(path)
        return
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for index, line in enumerate(lines):
        found = regex.search(line)
        if found:
            item: dict[str, Any] = {"path": path, "line": index + 1, "column": found.start() + 1, "text": _clip(line)}
            if context:
                item["before"] = [_clip(x) for x in lines[max(0, index - context) : index]]
                item["after"] = [_clip(x) for x in lines[index + 1 : index + 1 + context]]
            yield item
