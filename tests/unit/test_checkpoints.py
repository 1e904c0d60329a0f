"""Undo (agent/checkpoints.py) through operations.outcome, as the agent runs the tools: every change
keeps a checkpoint, undone newest first gives back the tree byte for byte, an undo over a later change
is refused, and the budget holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import checkpoints, operations
from agent.config import AgentConfig
from agent.files import PathPolicy


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    home = tmp_path / "home"
    home.mkdir()
    return AgentConfig.from_env({
        "RELAY_URL": "http://127.0.0.1:9", "AUTH_TOKEN": "t" * 20, "HOME": str(home), "ALLOWED_ROOTS": str(home),
        "CODE_REMOTE_ENV_FILE": str(tmp_path / "none.env"), "MACHINE_NAME": "unit", "CODE_REMOTE_STATE_DIR": str(home / ".state"),
    })


@pytest.fixture
def home(config) -> Path:
    return Path(config.home)


def call(config, tool: str, **arguments) -> dict:
    body = operations.outcome(tool, arguments, 5.0, config, PathPolicy.for_config(config))
    return body


def ok(config, tool: str, **arguments) -> dict:
    body = call(config, tool, **arguments)
    assert body["status"] == "succeeded", body
    return body["result"]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` but the state folder: type, bytes or link target, mode."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".state"]
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            data = os.readlink(path) if kind == "link" else path.read_bytes() if kind == "file" else None
            found[str(path.relative_to(root))] = (kind, data, info.st_mode & 0o7777)
    return found


def test_edit_then_move_undone_in_reverse_order_gives_the_tree_back_byte_for_byte(config, home):
    (home / "src").mkdir()
    (home / "src" / "app.py").write_bytes(b"def f():\r\n    return 1\r\n")
    os.chmod(home / "src" / "app.py", 0o750)
    (home / "src" / "link").symlink_to("app.py")
    before = snapshot(home)
    edited = ok(config, "edit_file", path="src/app.py", edits=[{"old_text": "return 1", "new_text": "return 2"}])
    moved = ok(config, "move_file", source="src/app.py", destination="src/main.py")
    assert edited["checkpoint_id"] and moved["checkpoint_id"]
    listed = ok(config, "list_checkpoints")["checkpoints"]
    assert [c["checkpoint_id"] for c in listed] == [moved["checkpoint_id"], edited["checkpoint_id"]]  # newest first
    assert ok(config, "list_checkpoints", path="src/main.py")["count"] == 1

    early = call(config, "undo_change", checkpoint_id=edited["checkpoint_id"])  # the file it edited has moved on
    assert early["status"] == "failed" and early["error"]["code"] == "changed_since" and "Undo newer" in early["error"]["message"]
    ok(config, "undo_change", checkpoint_id=moved["checkpoint_id"])
    ok(config, "undo_change", checkpoint_id=edited["checkpoint_id"])
    assert snapshot(home) == before
    again = call(config, "undo_change", checkpoint_id=edited["checkpoint_id"])
    assert again["error"]["code"] == "checkpoint_not_found"
    assert ok(config, "list_checkpoints")["count"] == 0


def test_an_undo_after_an_outside_change_is_refused_and_changes_nothing(config, home):
    (home / "notes.txt").write_text("one\n")
    written = ok(config, "write_file", path="notes.txt", content="two\n")
    (home / "notes.txt").write_text("three\n")  # someone else's change
    refused = call(config, "undo_change", checkpoint_id=written["checkpoint_id"])
    assert refused["error"]["code"] == "changed_since" and str(home / "notes.txt") in refused["error"]["message"]
    assert (home / "notes.txt").read_text() == "three\n"


def test_delete_copy_and_new_files_come_back_as_they_were(config, home):
    (home / "tree" / "deep").mkdir(parents=True)
    (home / "tree" / "deep" / "a.bin").write_bytes(bytes(range(256)))
    (home / "tree" / "b.txt").write_text("b\n")
    (home / "old.txt").write_text("old\n")
    (home / "src.txt").write_text("src\n")
    before = snapshot(home)
    steps = [
        ok(config, "delete_path", path="tree", recursive=True),
        ok(config, "copy_file", source="src.txt", destination="old.txt", overwrite=True),
        ok(config, "write_file", path="fresh.txt", content="new\n"),
        ok(config, "write_file", path="src.txt", content="more\n", mode="append"),
    ]
    assert not (home / "tree").exists() and (home / "old.txt").read_text() == "src\n"
    for step in reversed(steps):
        ok(config, "undo_change", checkpoint_id=step["checkpoint_id"])
    assert snapshot(home) == before


def test_what_keeps_no_checkpoint_says_so_and_the_budget_drops_the_oldest(config, home, monkeypatch):
    (home / "x.txt").write_text("a")
    preview = ok(config, "edit_file", path="x.txt", edits=[{"old_text": "a", "new_text": "b"}], dry_run=True)
    assert "checkpoint_id" not in preview  # a dry run changes nothing
    failed = call(config, "edit_file", path="x.txt", edits=[{"old_text": "zzz", "new_text": "b"}])
    assert failed["status"] == "failed" and ok(config, "list_checkpoints")["count"] == 0
    (home / "x.txt").write_text("0123456789abcdef")
    monkeypatch.setattr(checkpoints, "CHECKPOINT_MAX_BYTES", 10)
    big = ok(config, "write_file", path="x.txt", content="small")
    assert "checkpoint_id" not in big and "over the" in big["checkpoint_skipped"]
    monkeypatch.setattr(checkpoints, "CHECKPOINT_MAX_BYTES", 1 << 20)
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINTS", 3)
    ids = [ok(config, "write_file", path="x.txt", content=str(n))["checkpoint_id"] for n in range(5)]
    assert [c["checkpoint_id"] for c in ok(config, "list_checkpoints")["checkpoints"]] == ids[::-1][:3]
    assert not [n for n in os.listdir(home / ".state" / "checkpoints") if n.startswith(".")]  # no staging left


def test_read_only_lists_but_does_not_undo_and_roots_and_deny_list_still_apply(config, home, tmp_path):
    (home / "a.txt").write_text("a\n")
    written = ok(config, "write_file", path="a.txt", content="b\n")
    read_only = AgentConfig.from_env({
        "RELAY_URL": "http://127.0.0.1:9", "AUTH_TOKEN": "t" * 20, "HOME": str(home), "ALLOWED_ROOTS": str(home),
        "CODE_REMOTE_ENV_FILE": str(tmp_path / "none.env"), "MACHINE_NAME": "unit", "CODE_REMOTE_STATE_DIR": str(home / ".state"),
        "READ_ONLY": "1",
    })
    assert ok(read_only, "list_checkpoints")["count"] == 1
    assert call(read_only, "undo_change", checkpoint_id=written["checkpoint_id"])["error"]["code"] == "read_only"
    assert call(config, "list_checkpoints", path="/etc")["error"]["code"] == "path_outside_roots"
    assert call(config, "undo_change", checkpoint_id="../../etc")["error"]["code"] == "invalid_arguments"
    assert call(config, "read_file", path=".state/checkpoints")["error"]["code"] == "path_denied"


def test_undoing_a_write_that_created_folders_removes_them_too(config, home):
    (home / "keep").mkdir()
    before = snapshot(home)
    written = ok(config, "write_file", path="keep/new/deeper/f.txt", content="x\n", create_dirs=True)
    ok(config, "undo_change", checkpoint_id=written["checkpoint_id"])
    assert snapshot(home) == before
