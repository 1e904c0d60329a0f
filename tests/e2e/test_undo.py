"""Undo through the real stack (gunicorn + gevent server, a real agent with a throwaway HOME, the
official client over /mcp and /sse): edit, then move, then undo both newest first gives the tree back
byte for byte; an undo over an outside change is refused and changes nothing; READ_ONLY lists the
checkpoints but refuses the undo."""

from __future__ import annotations

import os

import pytest

from tests.e2e.test_file_tools import TRANSPORTS, scenario
from tests.harness import Agent


def tree_bytes(root) -> dict[str, tuple]:
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            data = open(path, "rb").read() if os.path.isfile(path) and not os.path.islink(path) else None
            found[os.path.relpath(path, root)] = (data, info.st_mode)
    return found


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_edit_and_move_undone_in_reverse_order_restore_the_tree_byte_for_byte(server, box, transport):
    project = box.scratch / f"project-{transport}"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "mod.py").write_bytes(b"VALUE = 1\r\nOTHER = 2\r\n")
    os.chmod(project / "pkg" / "mod.py", 0o640)
    (project / "README").write_bytes(b"no final newline")
    before = tree_bytes(project)

    async def body(call):
        edited = await call("edit_file", "box", path=str(project / "pkg" / "mod.py"), edits=[{"old_text": "VALUE = 1", "new_text": "VALUE = 10"}])
        moved = await call("move_file", "box", source=str(project / "pkg"), destination=str(project / "lib"))
        assert not edited["is_error"] and not moved["is_error"], (edited["text"], moved["text"])
        first, second = edited["structured"]["checkpoint_id"], moved["structured"]["checkpoint_id"]
        assert f"undo_change(checkpoint_id='{second}')" in moved["text"]
        listed = await call("list_checkpoints", "box", path=str(project))
        assert [c["checkpoint_id"] for c in listed["structured"]["checkpoints"]] == [second, first]

        out_of_order = await call("undo_change", "box", checkpoint_id=first)
        assert out_of_order["is_error"] and "changed since" in out_of_order["text"] and "Undo newer changes" in out_of_order["text"]
        undone = await call("undo_change", "box", checkpoint_id=second)
        assert not undone["is_error"] and undone["structured"]["restored"] == [str(project / "pkg"), str(project / "lib")]
        undone = await call("undo_change", "box", checkpoint_id=first)
        assert not undone["is_error"], undone["text"]
        gone = await call("undo_change", "box", checkpoint_id=first)
        assert gone["is_error"] and "no checkpoint" in gone["text"]

    scenario(server, transport, body)
    assert tree_bytes(project) == before


def test_an_undo_after_an_outside_change_is_refused_and_read_only_only_lists(server, box, ro):
    notes = box.scratch / "notes.txt"
    notes.write_text("mine\n")
    (ro.home / "r.txt").write_text("r\n")

    async def body(call):
        written = await call("write_file", "box", path=str(notes), content="the tool's\n")
        checkpoint = written["structured"]["checkpoint_id"]
        notes.write_text("someone else's\n")
        refused = await call("undo_change", "box", checkpoint_id=checkpoint)
        assert refused["is_error"] and "changed since" in refused["text"] and str(notes) in refused["text"]
        deleted = await call("delete_path", "box", path=str(notes))
        restored = await call("undo_change", "box", checkpoint_id=deleted["structured"]["checkpoint_id"])
        assert not restored["is_error"], restored["text"]
        listed = await call("list_checkpoints", "ro")
        assert not listed["is_error"] and listed["structured"]["count"] == 0
        denied = await call("undo_change", "ro", checkpoint_id="abc123")
        assert denied["is_error"] and "read-only" in denied["text"]

    scenario(server, "sse", body)
    assert notes.read_text() == "someone else's\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_undo_is_refused_where_disabled_and_checkpoints_outside_the_roots_are_not_listed(server, box, tmp_path_factory, transport):
    locked = Agent(server, tmp_path_factory.mktemp("locked"), f"locked-{transport}", env={"DISABLED_TOOLS": "undo_change"}).start()
    try:
        (locked.scratch / "f.txt").write_text("one\n")

        async def body(call):
            written = await call("write_file", locked.name, path=str(locked.scratch / "f.txt"), content="two\n")
            disabled = await call("undo_change", locked.name, checkpoint_id=written["structured"]["checkpoint_id"])
            assert disabled["is_error"] and "DISABLED_TOOLS" in disabled["text"]
            outside = await call("list_checkpoints", "box", path="/etc")
            assert outside["is_error"] and "outside the allowed roots" in outside["text"]

        scenario(server, transport, body)
        assert (locked.scratch / "f.txt").read_text() == "two\n"
    finally:
        locked.stop()
