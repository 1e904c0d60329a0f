"""The pure-Python search in a child process, so that its timeout and cancellation always hold.

Python's `re` cannot be interrupted: a pattern that backtracks without end (`(a+)+$` on a long line of
`a`) would hold the agent's thread for hours, past any deadline. ripgrep's engine has no such patterns,
and runs as a process that agent/search.py kills at the deadline or on cancel; the Python walk
(agent/search_walk.py) now runs the same way: `python -m agent.search_child` reads the query as JSON on
stdin and writes one JSON line per result (`{"item": ...}`) and per binary file that matched
(`{"binary": path}`). The child rebuilds the same deny-list (paths and names), so it skips what the
agent's policy covers exactly as the agent would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import agent
from agent import search_walk
from agent.policy import PathPolicy

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(agent.__file__)))
_QUERY_KEYS = ("root", "pattern", "kind", "literal", "case_sensitive", "include", "exclude", "context")


def python_matches(query: dict[str, Any], stop, binary: list[str], _rg: str) -> Iterator[dict[str, Any]]:
    """The results of the pure-Python walk, computed in a child process that `stop` may kill."""
    policy = query["policy"]
    request = {key: query[key] for key in _QUERY_KEYS} | {
        "regex": query["regex"].pattern, "flags": query["regex"].flags, "roots": list(policy.roots), "home": policy.home,
        "deny": list(policy.secrets.paths), "deny_names": list(policy.secrets.names),
    }
    env = dict(os.environ, PYTHONPATH=_PACKAGE_PARENT, PYTHONDONTWRITEBYTECODE="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.search_child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, cwd=_PACKAGE_PARENT, env=env,
    )
    stop.process = process
    try:
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(json.dumps(request).encode())
            process.stdin.close()
        except BrokenPipeError:
            return
        for raw in process.stdout:
            message = json.loads(raw)
            if "binary" in message:
                binary.append(message["binary"])
            else:
                yield message["item"]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


class _Never:
    """The child's own stop: never (its parent kills it)."""

    why = ""

    @staticmethod
    def check() -> bool:
        return False


def main() -> None:
    request = json.loads(sys.stdin.read())
    policy = PathPolicy(tuple(request["roots"]), request["home"], tuple(request["deny"]), deny_names=tuple(request["deny_names"]))
    query = {key: request[key] for key in _QUERY_KEYS} | {"regex": re.compile(request["regex"], request["flags"]), "policy": policy}

    class Binary(list):
        def append(self, path: str) -> None:
            print(json.dumps({"binary": path}), flush=True)

    for item in search_walk.python_matches(query, _Never(), Binary(), ""):
        sys.stdout.write(json.dumps({"item": item}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
