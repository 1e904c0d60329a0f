"""edit_file on real files under tmp_path: exact matches, all-or-nothing, and what it keeps byte for byte.

The properties (Hypothesis) are the ones a user relies on: an edit and its reverse give the file back
byte for byte; a CRLF file stays CRLF; a multi-edit that fails anywhere changes nothing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent import edit, fileops, files, writing
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


def test_an_edit_replaces_the_one_match_and_answers_a_diff_with_line_numbers(policy, root):
    target = root / "app.py"
    target.write_text("one\ntwo\nthree\nfour\n")
    result = edit.edit_file(policy, str(target), [{"old_text": "three", "new_text": "THREE"}])
    assert target.read_text() == "one\ntwo\nTHREE\nfour\n"
    assert result["replacements"] == 1
    assert "@@ -1,4 +1,4 @@" in result["diff"] and "-three\n+THREE\n" in result["diff"]


def test_an_ambiguous_edit_names_every_matching_line_and_changes_nothing(policy, root):
    target = root / "app.py"
    target.write_text("x = 1\ny = 2\nx = 1\n")
    error = refused(edit.edit_file, policy, str(target), [{"old_text": "x = 1", "new_text": "x = 3"}])
    assert error.code == "edit_mismatch"
    assert "found 2 times, expected 1" in error.message and "lines 1, 3" in error.message
    assert target.read_text() == "x = 1\ny = 2\nx = 1\n"
    assert edit.edit_file(policy, str(target), [{"old_text": "x = 1", "new_text": "x = 3", "expected_replacements": 2}])["replacements"] == 2
    assert target.read_text() == "x = 3\ny = 2\nx = 3\n"


def test_a_missing_match_shows_the_closest_near_miss(policy, root):
    target = root / "app.py"
    target.write_text("def main():\n    print('hello world')\n    return 0\n")
    error = refused(edit.edit_file, policy, str(target), [{"old_text": "    print('hello wrld')\n    return 0", "new_text": "x"}])
    assert "found 0 times" in error.message and "starts at line 2" in error.message
    assert "-    print('hello wrld')" in error.message and "+    print('hello world')" in error.message


def test_a_match_off_only_in_whitespace_is_pointed_at(policy, root):
    target = root / "app.py"
    target.write_text("if x:\n\tcall(a,  b)\n")
    error = refused(edit.edit_file, policy, str(target), [{"old_text": "    call(a, b)", "new_text": "x"}])
    assert "at line 2 if whitespace is ignored" in error.message


def test_a_dry_run_shows_the_diff_and_writes_nothing(policy, root):
    target = root / "a.txt"
    target.write_text("alpha\n")
    result = edit.edit_file(policy, str(target), [{"old_text": "alpha", "new_text": "beta"}], dry_run=True)
    assert "+beta" in result["diff"] and target.read_text() == "alpha\n" and "bytes_written" not in result


def test_the_mode_encoding_bom_and_missing_final_newline_are_kept(policy, root):
    target = root / "run.sh"
    target.write_bytes("\ufeff#!/bin/sh\r\necho héllo\r\nexit 0".encode("utf-8"))
    os.chmod(target, 0o751)
    edit.edit_file(policy, str(target), [{"old_text": "echo héllo\n", "new_text": "echo hé\necho llo\n"}])
    assert target.read_bytes() == "\ufeff#!/bin/sh\r\necho hé\r\necho llo\r\nexit 0".encode("utf-8")
    assert stat.S_IMODE(target.stat().st_mode) == 0o751


def test_a_latin_1_file_stays_latin_1(policy, root):
    target = root / "old.txt"
    target.write_bytes("café crème\n".encode("latin-1"))
    edit.edit_file(policy, str(target), [{"old_text": "crème", "new_text": "brûlée"}])
    assert target.read_bytes() == "café brûlée\n".encode("latin-1")
    error = refused(edit.edit_file, policy, str(target), [{"old_text": "café", "new_text": "☕"}])
    assert error.code == "encoding_error" and target.read_bytes() == "café brûlée\n".encode("latin-1")


def test_a_utf16_file_keeps_its_byte_order(policy, root):
    target = root / "wide.txt"
    target.write_bytes(b"\xfe\xff" + "key=1\n".encode("utf-16-be"))
    edit.edit_file(policy, str(target), [{"old_text": "key=1", "new_text": "key=2"}])
    assert target.read_bytes() == b"\xfe\xff" + "key=2\n".encode("utf-16-be")


def test_an_empty_old_text_and_a_binary_file_are_refused(policy, root):
    target = root / "a.bin"
    target.write_bytes(b"\x7fELF\x00\x01")
    assert refused(edit.edit_file, policy, str(target), [{"old_text": "ELF", "new_text": "x"}]).code == "binary_file"
    (root / "a.txt").write_text("x")
    assert "old_text is empty" in refused(edit.edit_file, policy, str(root / "a.txt"), [{"old_text": "", "new_text": "y"}]).message


def test_a_trailing_slash_on_a_file_is_not_a_directory_for_every_file_tool(policy, root):
    (root / "notes.txt").write_text("x\n")
    for path in ("notes.txt/", "notes.txt/.", "notes.txt/../notes.txt", "notes.txt/inner"):
        for call in (
            lambda p: files.read_file(policy, p, max_bytes=100),
            lambda p: writing.write_file(policy, p, "y", max_bytes=100),
            lambda p: edit.edit_file(policy, p, [{"old_text": "x", "new_text": "y"}]),
            lambda p: files.list_directory(policy, p),
        ):
            error = refused(call, f"{root}/{path}")
            assert "not a directory" in error.message or "names a folder" in error.message, (path, error.message)
    assert (root / "notes.txt").read_text() == "x\n"


def test_a_trailing_slash_on_a_file_is_not_a_directory_for_the_other_file_tools_too(policy, root):
    (root / "notes.txt").write_text("x\n")
    (root / "link").symlink_to("notes.txt")
    for path in ("notes.txt/", "notes.txt//", "notes.txt/.", "link/", "notes.txt/../notes.txt", "notes.txt/inner"):
        for call in (
            lambda p: fileops.get_file_info(policy, p),
            lambda p: fileops.delete_path(policy, p),
            lambda p: fileops.move_file(policy, p, str(root / "moved")),
            lambda p: fileops.copy_file(policy, p, str(root / "copied")),
            lambda p: fileops.make_directory(policy, p),
        ):
            error = refused(call, f"{root}/{path}")
            assert error.code == "not_a_directory", (path, error.code, error.message)
        (entry,) = files.read_multiple_files(policy, [f"{root}/{path}"], max_bytes=100)["files"]
        assert entry["error"]["code"] == "not_a_directory", (path, entry)
    assert (root / "notes.txt").read_text() == "x\n" and not (root / "moved").exists() and not (root / "copied").exists()


def test_dot_dot_after_a_missing_folder_is_not_found_as_the_kernel_says(policy, root):
    (root / "notes.txt").write_text("x\n")
    for path in ("missing/../notes.txt", "missing/deeper/../../notes.txt"):
        for call in (
            lambda p: files.read_file(policy, p, max_bytes=100),
            lambda p: writing.write_file(policy, p, "y", max_bytes=100),
            lambda p: fileops.make_directory(policy, p),
            lambda p: fileops.delete_path(policy, p),
        ):
            error = refused(call, f"{root}/{path}")
            assert error.code == "not_found" and "missing" in error.message, (path, error.message)
    assert (root / "notes.txt").read_text() == "x\n" and not (root / "missing").exists()
    (root / "real").mkdir()
    assert files.read_file(policy, f"{root}/real/../notes.txt", max_bytes=100)["content"] == "x\n"  # an existing folder: fine


# --- properties ------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.sampled_from("ab \tx\né"), max_size=60)
FRAGMENT = st.text(alphabet=st.sampled_from("abxé "), min_size=1, max_size=8)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(before=TEXT, after=TEXT, old=FRAGMENT, new=FRAGMENT, crlf=st.booleans(), final_newline=st.booleans())
def test_an_edit_then_its_reverse_gives_the_file_back_byte_for_byte(policy, root, before, after, old, new, crlf, final_newline):
    body = before + "\u2603" + old + "\u2603" + after  # the snowman fences make old unique, and new unique after
    assume(body.count(old) == 1)
    body = body.rstrip("\n") + ("\n" if final_newline else "")
    original = (body.replace("\n", "\r\n") if crlf else body).encode("utf-8")
    target = root / "p.txt"
    target.write_bytes(original)
    edited = body.replace("\u2603" + old + "\u2603", "\u2603" + new + "\u2603")
    assume(edited.count("\u2603" + new + "\u2603") == 1)
    edit.edit_file(policy, str(target), [{"old_text": "\u2603" + old + "\u2603", "new_text": "\u2603" + new + "\u2603"}])
    edit.edit_file(policy, str(target), [{"old_text": "\u2603" + new + "\u2603", "new_text": "\u2603" + old + "\u2603"}])
    assert target.read_bytes() == original


@FAST
@given(lines=st.lists(st.text(alphabet="abc ", min_size=1, max_size=10), min_size=2, max_size=12), new=st.text(alphabet="xyz\n", max_size=12))
def test_a_crlf_file_stays_crlf_whatever_line_endings_the_edit_uses(policy, root, lines, new):
    assume(lines[0] not in "\r\n".join(lines[1:]))
    target = root / "w.txt"
    target.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    edit.edit_file(policy, str(target), [{"old_text": lines[0] + "\n", "new_text": new + "\n"}])
    data = target.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") and data.endswith(b"\r\n")


@FAST
@given(lines=st.lists(st.text(alphabet="abc", min_size=1, max_size=6), min_size=1, max_size=10, unique=True), bad_at=st.integers(0, 5))
def test_a_multi_edit_that_fails_anywhere_changes_nothing(policy, root, lines, bad_at):
    original = "\n".join(f"<{line}>" for line in lines) + "\n"
    target = root / "m.txt"
    target.write_text(original)
    mtime = target.stat().st_mtime_ns
    edits = [{"old_text": f"<{line}>", "new_text": f"[{line}]"} for line in lines]
    edits.insert(min(bad_at, len(edits)), {"old_text": "<not there>", "new_text": "x"})
    with pytest.raises(OperationError):
        edit.edit_file(policy, str(target), edits)
    assert target.read_text() == original and target.stat().st_mtime_ns == mtime
