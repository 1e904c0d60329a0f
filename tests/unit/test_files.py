"""The agent's file tools on real files under tmp_path: confinement to the roots and precise errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import files, writing
from agent.errors import OperationError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "al"
    root.mkdir()
    return root


@pytest.fixture
def policy(root: Path) -> files.PathPolicy:
    return files.PathPolicy((str(root),), home=str(root))


def refused(call, *args, **kwargs) -> OperationError:
    with pytest.raises(OperationError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_a_file_inside_the_root_is_read_and_written(policy, root):
    target = root / "notes.txt"
    assert writing.write_file(policy, str(target), "héllo\n", max_bytes=1000)["bytes_written"] == 7
    assert files.read_file(policy, str(target), max_bytes=1000)["content"] == "héllo\n"


def test_a_relative_path_is_taken_from_home(policy, root):
    (root / "a.txt").write_text("x")
    assert files.read_file(policy, "a.txt", max_bytes=10)["path"] == str(root / "a.txt")
    assert files.read_file(policy, "~/a.txt", max_bytes=10)["path"] == str(root / "a.txt")


def test_dot_dot_out_of_the_root_is_refused(policy, root, tmp_path):
    (tmp_path / "outside.txt").write_text("secret")
    error = refused(files.read_file, policy, str(root / ".." / "outside.txt"), max_bytes=100)
    assert error.code == "path_outside_roots"
    assert str(tmp_path / "outside.txt") in error.message


def test_a_symlink_pointing_out_of_the_root_is_refused(policy, root, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "link").symlink_to(outside)
    assert refused(files.read_file, policy, str(root / "link" / "secret.txt"), max_bytes=100).code == "path_outside_roots"
    assert refused(files.list_directory, policy, str(root / "link")).code == "path_outside_roots"
    assert refused(writing.write_file, policy, str(root / "link" / "new.txt"), "x", max_bytes=100).code == "path_outside_roots"
    assert not (outside / "new.txt").exists()


def test_a_symlink_to_a_file_out_of_the_root_is_not_written_through(policy, root, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    (root / "innocent.txt").symlink_to(victim)
    assert refused(writing.write_file, policy, str(root / "innocent.txt"), "overwritten", max_bytes=100).code == "path_outside_roots"
    assert victim.read_text() == "original"


def test_a_root_does_not_admit_a_sibling_sharing_its_prefix(policy, tmp_path):
    sibling = tmp_path / "alice"
    sibling.mkdir()
    (sibling / "secret.txt").write_text("secret")
    assert refused(files.read_file, policy, str(sibling / "secret.txt"), max_bytes=100).code == "path_outside_roots"
    assert refused(files.list_directory, policy, str(sibling)).code == "path_outside_roots"


def test_a_symlink_inside_the_root_to_another_place_in_the_root_is_followed(policy, root):
    (root / "real").mkdir()
    (root / "real" / "f.txt").write_text("ok")
    (root / "alias").symlink_to(root / "real")
    assert files.read_file(policy, str(root / "alias" / "f.txt"), max_bytes=10)["content"] == "ok"


def test_a_missing_file_is_reported_as_not_found(policy, root):
    error = refused(files.read_file, policy, str(root / "nope.txt"), max_bytes=100)
    assert error.code == "not_found" and "nope.txt" in error.message
    assert refused(files.list_directory, policy, str(root / "nodir")).code == "not_found"


def test_reading_a_directory_says_it_is_not_a_file(policy, root):
    error = refused(files.read_file, policy, str(root), max_bytes=100)
    assert error.code == "not_a_file" and "list_directory" in error.message


def test_writing_over_a_directory_says_it_is_not_a_file(policy, root):
    (root / "d").mkdir()
    assert refused(writing.write_file, policy, str(root / "d"), "x", max_bytes=100).code == "not_a_file"


def test_listing_a_file_says_it_is_not_a_directory(policy, root):
    (root / "f.txt").write_text("x")
    error = refused(files.list_directory, policy, str(root / "f.txt"))
    assert error.code == "not_a_directory" and "read_file" in error.message


def test_a_file_over_the_read_limit_is_refused_with_its_size(policy, root):
    (root / "big.txt").write_text("x" * 2000)
    error = refused(files.read_file, policy, str(root / "big.txt"), max_bytes=1000)
    assert error.code == "file_too_large" and "2000 bytes" in error.message and "1000-byte" in error.message


def test_a_binary_file_is_refused(policy, root):
    (root / "blob.bin").write_bytes(b"\x7fELF\x00\x01\x02")
    assert refused(files.read_file, policy, str(root / "blob.bin"), max_bytes=100).code == "binary_file"


def test_a_file_that_is_not_utf8_is_refused(policy, root):
    (root / "latin1.txt").write_bytes("café".encode("latin-1"))
    error = refused(files.read_file, policy, str(root / "latin1.txt"), max_bytes=100)
    assert error.code == "binary_file" and "UTF-8" in error.message


def test_writing_into_a_missing_folder_says_to_create_it(policy, root):
    error = refused(writing.write_file, policy, str(root / "no" / "f.txt"), "x", max_bytes=100)
    assert error.code == "parent_not_found" and "create_dirs=true" in error.message


def test_a_listing_names_types_and_sizes(policy, root):
    (root / "sub").mkdir()
    (root / "f.txt").write_text("abc")
    (root / "ln").symlink_to(root / "f.txt")
    entries = {e["name"]: e for e in files.list_directory(policy, str(root))["entries"]}
    assert entries["sub"]["type"] == "directory"
    assert entries["f.txt"] == {"name": "f.txt", "type": "file", "size": 3}
    assert entries["ln"]["type"] == "symlink"


@pytest.mark.parametrize("bad", ["", "a\x00b"])
def test_an_empty_or_nul_path_is_invalid(policy, bad):
    assert refused(files.read_file, policy, bad, max_bytes=10).code == "invalid_path"


def test_a_fifo_is_not_read(policy, root):
    os.mkfifo(root / "pipe")
    assert refused(files.read_file, policy, str(root / "pipe"), max_bytes=10).code == "not_a_file"


def test_tail_reads_only_the_end_of_a_file_bigger_than_the_read_limit_and_numbers_it_truly(policy, root):
    (root / "big.log").write_bytes(b"".join(b"line %d\n" % n for n in range(1, 100_001)))
    last = files.read_file(policy, "big.log", max_bytes=4096, tail=2)
    assert last["content"] == "line 99999\nline 100000\n" and last["offset"] == 99_999 and last["total_lines"] == 100_000
    capped = files.read_file(policy, "big.log", max_bytes=64, tail=50)
    assert capped["content"].endswith("line 100000\n") and capped["lines"] < 50 and "read limit" in capped["stopped"]
    assert capped["content"].startswith("line ") and capped["offset"] == 100_001 - capped["lines"]  # no cut line
    (root / "empty.txt").write_bytes(b"")
    assert files.read_file(policy, "empty.txt", max_bytes=64, tail=3)["content"] == ""
    assert refused(files.read_file, policy, "big.log", max_bytes=64, tail=0).code == "invalid_arguments"


def test_images_are_recognised_by_their_bytes_not_their_names(policy, root):
    (root / "photo.txt").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    answer = files.read_file(policy, "photo.txt", max_bytes=1024)
    assert answer["mime_type"] == "image/jpeg" and answer["size"] == 104 and "content" not in answer
    (root / "fake.png").write_bytes(b"not an image at all\n")
    assert files.read_file(policy, "fake.png", max_bytes=1024)["content"] == "not an image at all\n"
