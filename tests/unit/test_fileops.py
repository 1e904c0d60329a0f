"""Move, copy, make_directory, delete, get_file_info and read_multiple_files on real files under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import fileops, files
from agent.errors import OperationError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "al"
    root.mkdir()
    return root


@pytest.fixture
def policy(root: Path) -> files.PathPolicy:
    return files.PathPolicy((str(root),), home=str(root), deny=(str(root / ".ssh"),))


def refused(call, *args, **kwargs) -> OperationError:
    with pytest.raises(OperationError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_a_move_renames_and_refuses_an_existing_destination_unless_overwrite(policy, root):
    (root / "a.txt").write_text("a")
    (root / "b.txt").write_text("b")
    error = refused(fileops.move_file, policy, "a.txt", "b.txt")
    assert error.code == "destination_exists" and "overwrite=true" in error.message
    assert (root / "a.txt").read_text() == "a" and (root / "b.txt").read_text() == "b"
    fileops.move_file(policy, "a.txt", "b.txt", overwrite=True)
    assert not (root / "a.txt").exists() and (root / "b.txt").read_text() == "a"


def test_a_folder_is_never_overwritten_nor_moved_into_itself(policy, root):
    (root / "d").mkdir()
    (root / "f").write_text("x")
    assert "existing folder" in refused(fileops.move_file, policy, "f", "d", overwrite=True).message
    assert "inside itself" in refused(fileops.move_file, policy, "d", "d/e").message


def test_a_symlink_is_moved_and_deleted_itself_not_its_target(policy, root):
    (root / "target.txt").write_text("keep")
    os.symlink("target.txt", root / "link")
    fileops.move_file(policy, "link", "link2")
    assert os.readlink(root / "link2") == "target.txt"
    assert fileops.get_file_info(policy, "link2")["symlink_target"] == "target.txt"
    fileops.delete_path(policy, "link2")
    assert not os.path.lexists(root / "link2") and (root / "target.txt").read_text() == "keep"


def test_a_copy_keeps_the_mode_and_copies_folders_whole(policy, root):
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    fileops.copy_file(policy, "run.sh", "run2.sh")
    assert (root / "run2.sh").stat().st_mode & 0o777 == 0o755
    (root / "tree" / "sub").mkdir(parents=True)
    (root / "tree" / "sub" / "x").write_text("x")
    fileops.copy_file(policy, "tree", "tree2")
    assert (root / "tree2" / "sub" / "x").read_text() == "x"


def test_a_folder_holding_a_denied_path_is_not_copied_moved_or_deleted(policy, root):
    (root / ".ssh").mkdir()
    (root / ".ssh" / "id").write_text("secret")
    (root / "backup").mkdir()
    for call in (
        lambda: fileops.copy_file(policy, "~", "backup/home"),
        lambda: fileops.move_file(policy, ".ssh", "keys"),
        lambda: fileops.copy_file(policy, ".ssh/id", "stolen"),
        lambda: fileops.move_file(policy, "backup", ".ssh/backup"),
    ):
        assert refused(call).code in ("path_denied", "root_refused", "invalid_path")
    assert (root / ".ssh" / "id").read_text() == "secret" and not (root / "stolen").exists()


def test_delete_needs_recursive_for_a_full_folder_and_never_takes_a_root(policy, root):
    (root / "d" / "e").mkdir(parents=True)
    error = refused(fileops.delete_path, policy, "d")
    assert error.code == "directory_not_empty" and "recursive=true" in error.message
    assert fileops.delete_path(policy, "d", recursive=True)["removed_entries"] == 2
    assert refused(fileops.delete_path, policy, str(root), recursive=True).code == "root_refused"
    assert refused(fileops.delete_path, policy, "~", recursive=True).code == "root_refused"
    assert root.is_dir()


def test_make_directory_is_mkdir_p_and_refuses_a_file_in_the_way(policy, root):
    assert fileops.make_directory(policy, "a/b/c")["created"] == [str(root / "a"), str(root / "a/b"), str(root / "a/b/c")]
    assert fileops.make_directory(policy, "a/b/c")["created"] == []
    (root / "f").write_text("x")
    assert refused(fileops.make_directory, policy, "f").code == "not_a_directory"
    assert "not a directory" in refused(fileops.make_directory, policy, "f/g").message


def test_file_info_tells_type_size_mode_owner_times_and_lines(policy, root):
    (root / "t.txt").write_text("one\ntwo\nthree")
    os.chmod(root / "t.txt", 0o640)
    info = fileops.get_file_info(policy, "t.txt")
    assert info["type"] == "file" and info["size"] == 13 and info["mode"] == "0640" and info["line_count"] == 3
    assert info["permissions"] == "-rw-r-----" and info["owner"] and info["modified_at"].endswith("+00:00")
    assert fileops.get_file_info(policy, "~")["type"] == "directory"


def test_read_multiple_files_answers_each_file_or_its_own_error(policy, root):
    (root / "a").write_text("A")
    (root / "b").write_text("B")
    answer = files.read_multiple_files(policy, ["a", "missing", "b", "/etc/passwd"], max_bytes=1000)
    contents = [f.get("content") or f["error"]["code"] for f in answer["files"]]
    assert contents == ["A", "not_found", "B", "path_outside_roots"] and answer["failed"] == 2
