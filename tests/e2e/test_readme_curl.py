"""The README's "Agent API, with curl" recipe, run line for line with bash against the real server,
with a command queued by a real MCP client so that poll, start and result act on something real."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from typing import Any

import pytest

from tests.harness import ROOT, Server, base_env, wait_for
from tests.mcp_client import call_tool

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def readme_recipe() -> dict[str, str]:
    """The recipe's command lines, keyed by the first word of the comment above each."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Agent API, with curl", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's curl section has no ```sh block"
    lines, key, in_comment = {}, None, False
    for line in block[1].splitlines():
        if line.startswith("#"):
            if not in_comment:  # the first line of a comment names the step; the rest explain it
                key = line.lstrip("# ").split(":")[0].split()[0]
            in_comment = True
        elif line.strip():
            assert key and key not in lines, f"one command per comment expected, at: {line}"
            lines[key] = line
            in_comment = False
        else:
            in_comment = False
    return lines


def bash(line: str, env: dict[str, str], *, then: str = "") -> str:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", line + then], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{line}\n-> exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


def test_the_readme_curl_recipe_runs_as_written(live_server: Server):
    recipe = readme_recipe()
    assert set(recipe) - {"output"} == {"register", "poll", "start", "result", "the"}, recipe.keys()
    env = base_env(RELAY_URL=live_server.url, AUTH_TOKEN=live_server.token)

    env["TOKEN"] = bash(recipe["register"], env, then='; printf %s "$TOKEN"')
    assert env["TOKEN"].count(".") >= 2, "register should leave a signed agent token in $TOKEN"
    assert bash(recipe["poll"], env).startswith("HTTP/1.1 204")

    outcome: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: outcome.update(call_tool("sse", live_server.url + "/sse", live_server.token, "run_shell_command", {"command": "echo hi"}, overall_timeout=60)),
        daemon=True,
    )
    caller.start()
    polled = wait_for(lambda: (out := bash(recipe["poll"], env)).startswith("HTTP/1.1 200") and out, timeout=20, what="the poll line to return the command")
    # Headers, a blank line, the body (text mode has turned curl's CRLFs into LFs).
    (command,) = json.loads(polled.split("\n\n", 1)[1])["commands"]
    assert command["lease"] == 1 and command["arguments"] == {"command": "echo hi"}
    env["COMMAND_ID"] = command["id"]

    assert json.loads(bash(recipe["start"], env))["state"] == "running"
    if "output" in recipe:
        progress = json.loads(bash(recipe["output"], env))
        assert "error" not in progress, progress
    assert json.loads(bash(recipe["result"], env)) == {"id": command["id"], "state": "succeeded", "duplicate": False}
    assert json.loads(bash(recipe["result"], env))["duplicate"] is True

    caller.join(30)
    assert outcome and not outcome["is_error"] and outcome["text"].startswith("hi") and "[exit code 0]" in outcome["text"]
    rows = json.loads(bash(recipe["the"], env))["tool_calls"]
    (row,) = [r for r in rows if r["command_id"] == command["id"]]
    assert row["machine"] == "curl-box" and row["status"] == "succeeded" and row["exit_code"] == 0
