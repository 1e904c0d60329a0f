"""search through the real stack: gunicorn + gevent server, real agents with throwaway HOMEs, the
official MCP client over /mcp and /sse. `box` has `rg` on its PATH, `norg` has no `rg` (an empty
PATH): both search a real source tree (pip, in the test venv) and must give the same matches. `ro`
runs READ_ONLY=1 (search changes nothing, so it stays on) and `locked` has DISABLED_TOOLS=search."""

from __future__ import annotations

import os
import shutil
import time

import anyio

import pytest

from tests.e2e.test_file_tools import TRANSPORTS, scenario
from tests.harness import Agent, Server
from tests.unit.test_search import TREE

needs_rg = pytest.mark.skipif(shutil.which("rg") is None, reason="needs ripgrep (Debian: apt-get install ripgrep)")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    server = Server(tmp_path_factory.mktemp("server")).start()
    yield server
    server.stop()


def _agent(server, tmp_path_factory, name: str, **env: str) -> Agent:
    workdir = tmp_path_factory.mktemp(name)
    roots = os.pathsep.join([str(workdir / f"home-{name}"), str(workdir / f"scratch-{name}"), TREE])
    return Agent(server, workdir, name, env={"ALLOWED_ROOTS": roots, **env}).start()


@pytest.fixture(scope="module")
def agents(server, tmp_path_factory):
    empty = tmp_path_factory.mktemp("no-rg")  # a PATH with no rg on it
    started = {
        "box": _agent(server, tmp_path_factory, "box"),
        "norg": _agent(server, tmp_path_factory, "norg", PATH=str(empty)),
        "ro": _agent(server, tmp_path_factory, "ro", READ_ONLY="1"),
        "locked": _agent(server, tmp_path_factory, "locked", DISABLED_TOOLS="search"),
    }
    yield started
    for agent in started.values():
        agent.stop()


async def _all_pages(call, machine: str, **arguments) -> tuple[list[dict], dict, int]:
    found, token, pages = [], None, 0
    while True:
        answer = await call("search", machine, **arguments, **({"continuation_token": token} if token else {}))
        assert not answer["is_error"], answer["text"]
        pages += 1
        typed = answer["structured"]
        found += typed.get("matches", typed.get("files", []))
        token = typed.get("continuation_token")
        if not token:
            return found, answer, pages


@needs_rg
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_with_and_without_rg_the_same_matches_on_a_real_source_tree(server, agents, transport):
    async def body(call):
        for query in ({"pattern": r"raise \w+Error\("}, {"pattern": "import", "literal": True, "include": ["*.py"], "context_lines": 1}):
            with_rg, last_rg, pages = await _all_pages(call, "box", path=TREE, max_results=400, **query)
            without, last_py, _ = await _all_pages(call, "norg", path=TREE, max_results=400, **query)
            assert last_rg["structured"]["engine"] == "rg" and last_py["structured"]["engine"] == "python"
            assert len(with_rg) > 100 and with_rg == without, query
            assert pages > 1  # paged with the continuation token
            first = with_rg[0]
            assert {"path", "line", "column", "text"} <= set(first) and first["path"].startswith(TREE + "/")
        found = await call("search", "box", path=TREE, pattern="exceptions", kind="files")
        assert found["structured"]["files"][0]["path"] == os.path.join(TREE, "_internal", "exceptions.py"), found["text"]

    scenario(server, transport, body)


def test_binary_files_are_named_gitignore_respected_and_the_text_says_where_each_match_is(server, agents):
    box = agents["box"]
    (box.scratch / ".gitignore").write_text("generated/\n")
    (box.scratch / "generated").mkdir()
    (box.scratch / "generated" / "out.py").write_text("needle = 1\n")
    (box.scratch / "src.py").write_text("x = 0\ny = 'needle'\n")
    (box.scratch / "blob.bin").write_bytes(b"needle\x00\xff")

    async def body(call):
        answer = await call("search", "box", path=str(box.scratch), pattern="needle")
        assert not answer["is_error"], answer["text"]
        typed = answer["structured"]
        assert [(m["path"], m["line"], m["column"]) for m in typed["matches"]] == [(str(box.scratch / "src.py"), 2, 6)]
        assert typed["binary_files_skipped"] == [str(box.scratch / "blob.bin")] and typed["complete"] is True
        assert f"{box.scratch / 'src.py'}:2:6: y = 'needle'" in answer["text"]
        assert "1 binary file(s) matched and are not shown" in answer["text"]
        bad = await call("search", "box", path=str(box.scratch), pattern="(unclosed")
        assert bad["is_error"] and "literal=true" in bad["text"]

    scenario(server, "http", body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refusals_outside_the_roots_denied_paths_disabled_and_read_only(server, agents, transport):
    box, ro = agents["box"], agents["ro"]
    (box.home / ".ssh").mkdir(exist_ok=True)
    (box.home / ".ssh" / "id_ed25519").write_text("needle PRIVATE KEY\n")
    if not (box.home / "notes.txt").exists():
        os.link(box.home / ".ssh" / "id_ed25519", box.home / "notes.txt")  # the key under an innocent name
    (box.home / "todo.txt").write_text("needle\n")
    (ro.home / "readme.txt").write_text("needle\n")

    async def body(call):
        outside = await call("search", "box", path="/etc", pattern="root")
        assert outside["is_error"] and "outside the allowed roots" in outside["text"]
        denied = await call("search", "box", path=str(box.home / ".ssh"), pattern="needle")
        assert denied["is_error"] and "deny-list" in denied["text"]
        home = await call("search", "box", path="~", pattern="needle")
        assert [m["path"] for m in home["structured"]["matches"]] == [str(box.home / "todo.txt")], home["text"]
        assert "PRIVATE" not in home["text"] and "not searched (the agent's deny-list)" in home["text"]
        read_only = await call("search", "ro", pattern="needle")
        assert not read_only["is_error"] and read_only["structured"]["count"] == 1
        disabled = await call("search", "locked", pattern="needle")
        assert disabled["is_error"] and "DISABLED_TOOLS" in disabled["text"]

    scenario(server, transport, body)
    refused = [r for r in server.audit(limit=200) if r["tool"] == "search" and r["status"] != "succeeded"]
    assert {r.get("error_code") for r in refused} >= {"path_outside_roots", "path_denied", "tool_disabled"}


def test_cancel_command_stops_a_running_search(server, agents):
    """A search that would run to its 20 s limit (a pattern Python's re backtracks on without end, on the
    agent without rg) is stopped by cancel_command: its heartbeat brings the cancel, the walk's child
    process is killed, and the call answers `cancelled` well before the limit."""
    norg = agents["norg"]
    (norg.scratch / "slow.txt").write_text("a" * 64 + "!\n")

    async def body(call):
        answers = {}

        async def search() -> None:
            answers["search"] = await call("search", "norg", path=str(norg.scratch), pattern="(a|aa)+$")

        async with anyio.create_task_group() as group:
            group.start_soon(search)
            with anyio.fail_after(15):
                while True:  # wait until the search runs on the agent
                    listed = await call("list_commands", "norg", state="running")
                    running = [c for c in listed["structured"]["commands"] if c["tool"] == "search"]
                    if running:
                        break
                    await anyio.sleep(0.1)
            started = time.monotonic()
            cancelled = await call.session.call_tool("cancel_command", {"command_id": running[0]["command_id"]})
            assert not cancelled["is_error"], cancelled["text"]
        assert time.monotonic() - started < 10
        assert answers["search"]["is_error"] and answers["search"]["structured"]["state"] == "cancelled", answers["search"]["text"]

    scenario(server, "http", body)
