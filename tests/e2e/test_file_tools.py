"""The coding file tools through the real stack: gunicorn + gevent server, real agents with throwaway
HOMEs and roots, driven by the official MCP client over /mcp and /sse, refusals included.

Three agents share the server: `box` (defaults), `ro` (READ_ONLY=1) and `locked` (DISABLED_TOOLS and
DENY_PATHS), so the owner's policy is seen as a client sees it.
"""

from __future__ import annotations

import json
import os
import threading

import anyio
import jsonschema
import pytest

from tests.harness import Agent, Server
from tests.mcp_client import open_session

TRANSPORTS = ("http", "sse")


@pytest.fixture(scope="module")
def locked(server, tmp_path_factory) -> Agent:
    workdir = tmp_path_factory.mktemp("locked")
    env = {"DISABLED_TOOLS": "edit_file,delete_path", "DENY_PATHS": str(workdir / "home-locked" / "private")}
    agent = Agent(server, workdir, "locked", env=env).start()
    yield agent
    agent.stop()


class Calls:
    """Tool calls through one official-client session, each answer checked against the tool's
    declared outputSchema when it succeeded (as the client itself does)."""

    def __init__(self, session, schemas):
        self.session, self.schemas = session, schemas

    async def __call__(self, tool: str, machine: str, **arguments):
        result = await self.session.call_tool(tool, arguments | {"machine": machine})
        schema = self.schemas.get(tool)
        if schema and not result["is_error"]:
            jsonschema.validate(result["structured"], schema)
        return result


def scenario(server: Server, transport: str, body) -> None:
    async def main():
        with anyio.fail_after(120):
            async with open_session(transport, server.url + ("/mcp" if transport == "http" else "/sse"), server.token) as s:
                schemas = {t["name"]: t.get("outputSchema") for t in await s.list_tools()}
                await body(Calls(s, schemas))

    anyio.run(main)


# --- edit_file and write_file ----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_edit_file_replaces_exactly_and_refuses_ambiguous_and_missing_matches(server, box, transport):
    target = box.scratch / f"edit-{transport}.py"
    target.write_bytes(b"def f():\r\n    return 1\r\n\r\ndef g():\r\n    return 1\r\n")
    os.chmod(target, 0o750)

    async def body(call):
        ambiguous = await call("edit_file", "box", path=str(target), edits=[{"old_text": "return 1", "new_text": "return 2"}])
        assert ambiguous["is_error"] and "found 2 times, expected 1" in ambiguous["text"] and "lines 2, 5" in ambiguous["text"]
        missing = await call("edit_file", "box", path=str(target), edits=[{"old_text": "def h():\n    return 1", "new_text": "x"}])
        assert missing["is_error"] and "found 0 times" in missing["text"] and "closest" in missing["text"]
        half = await call("edit_file", "box", path=str(target), edits=[
            {"old_text": "def f():\n    return 1", "new_text": "def f():\n    return 10"},
            {"old_text": "not there", "new_text": "x"},
        ])
        assert half["is_error"] and "edit 2 of 2" in half["text"]
        preview = await call("edit_file", "box", path=str(target), dry_run=True, edits=[{"old_text": "def g():\n    return 1", "new_text": "def g():\n    return 20"}])
        assert not preview["is_error"] and "-    return 1\n+    return 20" in preview["text"] and preview["structured"]["dry_run"] is True
        done = await call("edit_file", "box", path=str(target), edits=[
            {"old_text": "def f():\n    return 1", "new_text": "def f():\n    return 10"},
            {"old_text": "return 1\n", "new_text": "return 11\n"},
        ])
        assert not done["is_error"], done["text"]
        assert done["structured"]["replacements"] == 2 and "@@ -1,5 +1,5 @@" in done["structured"]["diff"]

    scenario(server, transport, body)
    assert target.read_bytes() == b"def f():\r\n    return 10\r\n\r\ndef g():\r\n    return 11\r\n"
    assert target.stat().st_mode & 0o777 == 0o750


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_write_file_appends_creates_folders_only_when_asked_and_keeps_the_mode(server, box, transport):
    log = box.scratch / f"log-{transport}.txt"
    log.write_text("first\n")
    os.chmod(log, 0o640)
    nested = box.scratch / f"new-{transport}" / "deep" / "f.txt"

    async def body(call):
        appended = await call("write_file", "box", path=str(log), content="second\n", mode="append")
        assert not appended["is_error"] and "appended 7 bytes" in appended["text"]
        refused = await call("write_file", "box", path=str(nested), content="x")
        assert refused["is_error"] and "does not exist" in refused["text"] and "create_dirs" in refused["text"]
        made = await call("write_file", "box", path=str(nested), content="x", create_dirs=True)
        assert not made["is_error"], made["text"]
        slash = await call("write_file", "box", path=str(log) + "/", content="x")
        assert slash["is_error"] and "names a folder" in slash["text"]
        bad_mode = await call("write_file", "box", path=str(log), content="x", mode="prepend")
        assert bad_mode["is_error"] and "must be one of rewrite, append" in bad_mode["text"]

    scenario(server, transport, body)
    assert log.read_text() == "first\nsecond\n" and log.stat().st_mode & 0o777 == 0o640
    assert nested.read_text() == "x"


def test_a_trailing_slash_on_a_file_fails_as_not_a_directory(server, box):
    target = box.scratch / "plain.txt"
    target.write_text("plain\n")

    async def body(call):
        for path in (f"{target}/", f"{target}/.", f"{target}/../plain.txt"):
            for tool, extra in (("read_file", {}), ("list_directory", {}), ("edit_file", {"edits": [{"old_text": "plain", "new_text": "x"}]})):
                answer = await call(tool, "box", path=path, **extra)
                assert answer["is_error"] and "not a directory" in answer["text"].lower(), (tool, path, answer["text"])

    scenario(server, "http", body)
    assert target.read_text() == "plain\n"


def test_paths_the_kernel_would_refuse_are_refused_by_every_file_tool(server, box):
    target = box.scratch / "plain2.txt"
    target.write_text("plain\n")
    (box.scratch / "link2").symlink_to("plain2.txt")
    cases = [(p, "not a directory") for p in (f"{target}/", f"{target}//", f"{box.scratch}/link2/", f"{target}/inner")]
    cases += [(f"{box.scratch}/missing/../plain2.txt", "no such file or directory")]

    async def body(call):
        for path, words in cases:
            for tool, arguments in (
                ("get_file_info", {"path": path}),
                ("delete_path", {"path": path}),
                ("copy_file", {"source": path, "destination": str(box.scratch / "copy2.txt")}),
                ("move_file", {"source": path, "destination": str(box.scratch / "moved2.txt")}),
                ("read_file", {"path": path}),
            ):
                answer = await call(tool, "box", **arguments)
                assert answer["is_error"] and words in answer["text"].lower(), (tool, path, answer["text"])
        answer = await call("write_file", "box", path=f"{box.scratch}/missing/../new2.txt", content="x")
        assert answer["is_error"] and "no such file or directory" in answer["text"].lower(), answer["text"]

    scenario(server, "http", body)
    assert target.read_text() == "plain\n" and not (box.scratch / "copy2.txt").exists() and not (box.scratch / "moved2.txt").exists()
    assert not (box.scratch / "new2.txt").exists()


def test_a_reader_never_sees_a_partial_file_during_200_rewrites(server, box):
    target = box.scratch / "hot.txt"
    versions = [(f"version {i:03d} " * 4000).encode() for i in range(200)]
    target.write_bytes(versions[0])
    stop, seen, bad = threading.Event(), [0], []

    def reader():
        while not stop.is_set():
            data = target.read_bytes()
            seen[0] += 1
            if data not in versions_set:
                bad.append(len(data))

    versions_set = set(versions)
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()

    async def body(call):
        for version in versions[1:] + versions[:1]:
            answer = await call("write_file", "box", path=str(target), content=version.decode())
            assert not answer["is_error"], answer["text"]

    try:
        scenario(server, "http", body)
    finally:
        stop.set()
        thread.join(10)
    assert seen[0] > 200 and not bad, f"{len(bad)} partial reads of {seen[0]} (sizes {bad[:5]})"
    assert not [p for p in os.listdir(box.scratch) if p.startswith(".code-remote-")]


# --- the owner's policy ----------------------------------------------------------------------


def test_read_only_disabled_denied_and_outside_roots_are_refused_for_edit_file(server, box, ro, locked):
    for agent in (ro, locked, box):
        (agent.home / "f.txt").write_text("a\n")
    (locked.home / "private").mkdir()
    (locked.home / "private" / "key.txt").write_text("a\n")

    async def body(call):
        edits = [{"old_text": "a", "new_text": "b"}]
        answer = await call("edit_file", "ro", path="~/f.txt", edits=edits)
        assert answer["is_error"] and "read-only mode (READ_ONLY)" in answer["text"]
        answer = await call("write_file", "ro", path="~/f.txt", content="b", mode="append")
        assert answer["is_error"] and "READ_ONLY" in answer["text"]
        answer = await call("edit_file", "locked", path="~/f.txt", edits=edits)
        assert answer["is_error"] and "disabled on this machine (DISABLED_TOOLS)" in answer["text"]
        answer = await call("write_file", "locked", path="~/private/key.txt", content="b")
        assert answer["is_error"] and "deny-list" in answer["text"]
        answer = await call("edit_file", "box", path="/etc/hostname", edits=edits)
        assert answer["is_error"] and "outside the allowed roots" in answer["text"]
        answer = await call("edit_file", "box", path="~/.ssh/id_rsa", edits=edits)
        assert answer["is_error"] and ("deny-list" in answer["text"] or "no such file" in answer["text"])

    scenario(server, "http", body)
    assert all((a.home / "f.txt").read_text() == "a\n" for a in (ro, locked, box))
    assert (locked.home / "private" / "key.txt").read_text() == "a\n"


def test_the_new_tools_are_listed_with_true_annotations_and_output_schemas(server, box):
    async def body(call):
        tools = {t["name"]: t for t in await call.session.list_tools()}
        edit_tool = tools["edit_file"]
        assert edit_tool["annotations"]["readOnlyHint"] is False and edit_tool["annotations"]["destructiveHint"] is True
        assert edit_tool["outputSchema"]["type"] == "object" and "machine" in edit_tool["inputSchema"]["properties"]
        assert len(json.dumps(list(tools.values()))) < 24 * 1024

    scenario(server, "http", body)


# --- file operations -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_file_operations_move_copy_make_delete_describe_and_read_many(server, box, transport):
    base = box.scratch / f"ops-{transport}"
    base.mkdir()
    (base / "a.txt").write_text("alpha\nbeta\n")
    (base / "b.txt").write_text("bee\n")

    async def body(call):
        onto = await call("move_file", "box", source=str(base / "a.txt"), destination=str(base / "b.txt"))
        assert onto["is_error"] and "already exists" in onto["text"] and "overwrite=true" in onto["text"]
        made = await call("make_directory", "box", path=str(base / "sub" / "deeper"))
        assert not made["is_error"] and len(made["structured"]["created"]) == 2
        moved = await call("move_file", "box", source=str(base / "a.txt"), destination=str(base / "sub" / "a.txt"))
        assert not moved["is_error"] and moved["structured"]["destination"] == str(base / "sub" / "a.txt")
        copied = await call("copy_file", "box", source=str(base / "sub"), destination=str(base / "sub2"))
        assert not copied["is_error"] and copied["structured"]["type"] == "directory"
        info = await call("get_file_info", "box", path=str(base / "sub2" / "a.txt"))
        assert info["structured"]["type"] == "file" and info["structured"]["line_count"] == 2 and info["structured"]["size"] == 11
        many = await call("read_multiple_files", "box", paths=[str(base / "b.txt"), str(base / "nope"), str(base / "sub2" / "a.txt")])
        assert [f.get("content") for f in many["structured"]["files"]] == ["bee\n", None, "alpha\nbeta\n"]
        assert "=== " + str(base / "nope") + " [error] ===" in many["text"]
        full = await call("delete_path", "box", path=str(base / "sub2"))
        assert full["is_error"] and "recursive=true" in full["text"]
        gone = await call("delete_path", "box", path=str(base / "sub2"), recursive=True)
        assert not gone["is_error"] and gone["structured"]["removed_entries"] == 3
        root = await call("delete_path", "box", path=str(box.scratch), recursive=True)
        assert root["is_error"] and "allowed root" in root["text"]

    scenario(server, transport, body)
    assert (base / "sub" / "a.txt").read_text() == "alpha\nbeta\n" and not (base / "sub2").exists()
    assert box.scratch.is_dir() and (base / "b.txt").read_text() == "bee\n"


def test_file_operations_are_refused_by_policy_at_both_ends(server, box, ro, locked):
    for agent in (box, ro, locked):
        (agent.home / "ops.txt").write_text("o\n")
    (locked.home / "private").mkdir(exist_ok=True)
    (locked.home / "private" / "key.txt").write_text("k\n")

    async def body(call):
        for tool, arguments in (
            ("move_file", {"source": "~/ops.txt", "destination": "~/ops2.txt"}),
            ("copy_file", {"source": "~/ops.txt", "destination": "~/ops2.txt"}),
            ("make_directory", {"path": "~/newdir"}),
            ("delete_path", {"path": "~/ops.txt"}),
        ):
            answer = await call(tool, "ro", **arguments)
            assert answer["is_error"] and "READ_ONLY" in answer["text"], tool
        info = await call("get_file_info", "ro", path="~/ops.txt")
        assert not info["is_error"] and info["structured"]["size"] == 2
        for arguments in ({"source": "~/private/key.txt", "destination": "~/stolen.txt"}, {"source": "~/ops.txt", "destination": "~/private/planted.txt"}):
            for tool in ("move_file", "copy_file"):
                answer = await call(tool, "locked", **arguments)
                assert answer["is_error"] and "deny-list" in answer["text"], (tool, arguments)
        answer = await call("copy_file", "locked", source="~/ops.txt", destination="/tmp/code-remote-ops-copy")
        assert answer["is_error"] and "outside the allowed roots" in answer["text"]
        for tool, arguments in (("copy_file", {"source": "/etc/hostname", "destination": "~/h"}), ("move_file", {"source": "~/ops.txt", "destination": "/etc/ops"})):
            answer = await call(tool, "box", **arguments)
            assert answer["is_error"] and "outside the allowed roots" in answer["text"], tool
        answer = await call("delete_path", "locked", path="~/ops.txt")
        assert answer["is_error"] and "DISABLED_TOOLS" in answer["text"]
        answer = await call("read_multiple_files", "locked", paths=["~/private/key.txt"])
        assert "deny-list" in answer["structured"]["files"][0]["error"]["message"]

    scenario(server, "sse", body)
    assert (locked.home / "private" / "key.txt").read_text() == "k\n" and not (locked.home / "stolen.txt").exists()
    assert not (locked.home / "private" / "planted.txt").exists() and (ro.home / "ops.txt").exists()
