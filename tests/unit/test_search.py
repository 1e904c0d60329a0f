"""search (agent/search.py): the same matches from `rg` and from the pure-Python walk, on a real source
tree (pip, installed in the test venv) and on small trees that pin ripgrep's rules; paging, the answer
cap, the deny-list, cancellation and bad input."""

from __future__ import annotations

import glob
import os
import shutil
import sys
import threading
import time

import pytest

from agent import search as search_tool
from agent.errors import OperationError
from agent.files import PathPolicy

RG = shutil.which("rg")
needs_rg = pytest.mark.skipif(RG is None, reason="needs ripgrep (Debian: apt-get install ripgrep)")
# A real source tree: pip as installed in the test venv (Python, text data, vendored .exe launchers).
TREE = os.path.realpath(glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "pip"))[0])


def run_all(policy: PathPolicy, arguments: dict, engine: bool | None) -> tuple[list[dict], dict, int]:
    """Every result of a search, page after page; the last answer; how many pages it took."""
    found, token, pages = [], None, 0
    while True:
        answer = search_tool.search(policy, arguments | ({"continuation_token": token} if token else {}), timeout_seconds=120, use_rg=engine)
        pages += 1
        assert answer["complete"] is (not answer.get("continuation_token")) and not answer.get("stopped")
        found += answer.get("matches", answer.get("files", []))
        token = answer.get("continuation_token")
        if not token:
            return found, answer, pages


QUERIES = [
    {"pattern": r"def \w+\(self"},
    {"pattern": "import", "literal": True, "context_lines": 2, "max_results": 1000},
    {"pattern": "Error", "case_sensitive": False},
    {"pattern": "MZ"},  # matches in the binary launchers: skipped and named by both
    {"pattern": "todo", "include": ["*.py"], "exclude": ["_vendor/**"]},
    {"pattern": "(?i)licen[cs]e", "include": ["**/*.txt", "*.py"]},
    {"pattern": "é|ü|ß"},
    {"pattern": r"\.exe$", "kind": "files"},
    {"pattern": "util", "kind": "files", "exclude": ["*.pyc"]},
]


@needs_rg
@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q["pattern"])
def test_rg_and_the_python_walk_give_the_same_matches_on_a_real_source_tree(query):
    policy = PathPolicy((TREE,), TREE)
    arguments = {"path": TREE, "max_results": 500} | query
    with_rg, last_rg, _ = run_all(policy, arguments, True)
    without, last_py, _ = run_all(policy, arguments, False)
    assert last_rg["engine"] == "rg" and last_py["engine"] == "python"
    assert with_rg, f"{query} should find something in {TREE}"
    assert with_rg == without  # same matches, same columns and context, same order
    assert last_rg["binary_files_skipped"] == last_py["binary_files_skipped"]
    if query["pattern"] == "MZ":
        assert any(p.endswith(".exe") for p in last_rg["binary_files_skipped"])


def test_without_rg_on_path_the_python_walk_answers(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no rg
    policy = PathPolicy((TREE,), TREE)
    answer = search_tool.search(policy, {"path": TREE, "pattern": "class PipError"}, timeout_seconds=60)
    assert answer["engine"] == "python" and answer["matches"][0]["path"].endswith("exceptions.py")
    assert answer["matches"][0]["column"] == 1 and answer["matches"][0]["text"].startswith("class PipError")


def tree(root, files: dict[str, bytes | str]) -> None:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())


IGNORED_TREE = {
    ".gitignore": "build/\n*.log\n!keep.log\n/top.txt\ndocs/**/draft*\n",
    "a.txt": "needle\n",
    "top.txt": "needle at the top\n",
    "sub/top.txt": "needle: only the root's top.txt is ignored\n",
    "build/out.txt": "needle\n",
    "x.log": "needle\n",
    "keep.log": "needle kept\n",
    "docs/v1/draft-1.md": "needle\n",
    "docs/v1/final.md": "needle\n",
    "sub/.gitignore": "*.md\n",
    "sub/readme.md": "needle\n",
    "sub/.ignore": "!readme.md\n",  # .ignore beats .gitignore in the same folder
    ".hidden/h.txt": "needle in a hidden folder\n",
    ".git/config": "needle in .git\n",
    "crlf.txt": b"one\r\nneedle\r\n",
    "bin.dat": b"needle\x00\x01\x02",
    "latin1.txt": b"caf\xe9 needle\n",
}


@pytest.mark.parametrize("engine", [pytest.param(True, marks=needs_rg), False], ids=["rg", "python"])
def test_ignore_rules_hidden_files_binary_and_encodings(tmp_path, engine):
    tree(tmp_path, IGNORED_TREE)
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")  # not followed
    policy = PathPolicy((str(tmp_path),), str(tmp_path))
    answer = search_tool.search(policy, {"path": str(tmp_path), "pattern": "needle"}, timeout_seconds=30, use_rg=engine)
    found = {os.path.relpath(m["path"], tmp_path): m for m in answer["matches"]}
    assert sorted(found) == [".hidden/h.txt", "a.txt", "crlf.txt", "docs/v1/final.md", "keep.log", "latin1.txt", "sub/readme.md", "sub/top.txt"]
    assert answer["binary_files_skipped"] == [str(tmp_path / "bin.dat")]
    assert found["crlf.txt"]["line"] == 2 and found["crlf.txt"]["text"] == "needle"
    assert found["latin1.txt"]["column"] == 6  # in characters, an undecodable byte counting as one


@pytest.mark.parametrize("engine", [pytest.param(True, marks=needs_rg), False], ids=["rg", "python"])
def test_denied_paths_are_never_searched_nor_a_hard_link_to_one(tmp_path, engine):
    home = tmp_path / "home"
    tree(home, {".ssh/id_ed25519": "needle: PRIVATE KEY\n", "vault.kdbx": "needle\n", "secret/key": "needle\n", "ok.txt": "needle\n"})
    os.link(home / ".ssh" / "id_ed25519", home / "innocent.txt")
    policy = PathPolicy.for_config(type("C", (), {
        "roots": (str(home),), "home": str(home), "deny_paths": (str(home / "secret"),), "state_dir": None,
        "env_file": None, "allow_persistence_writes": False,
    })())
    answer = search_tool.search(policy, {"path": str(home), "pattern": "needle"}, timeout_seconds=30, use_rg=engine)
    assert [m["path"] for m in answer["matches"]] == [str(home / "ok.txt")]
    assert str(home / ".ssh") in answer["denied_paths_skipped"] and str(home / "secret") in answer["denied_paths_skipped"]
    files = search_tool.search(policy, {"path": str(home), "pattern": ".", "kind": "files"}, timeout_seconds=30, use_rg=engine)
    assert [f["path"] for f in files["files"]] == [str(home / "ok.txt")]
    with pytest.raises(OperationError) as refused:
        search_tool.search(policy, {"path": str(home / ".ssh"), "pattern": "x"}, timeout_seconds=30, use_rg=engine)
    assert refused.value.code == "path_denied"
    with pytest.raises(OperationError) as outside:
        search_tool.search(policy, {"path": str(tmp_path), "pattern": "x"}, timeout_seconds=30, use_rg=engine)
    assert outside.value.code == "path_outside_roots"


@pytest.mark.parametrize("engine", [pytest.param(True, marks=needs_rg), False], ids=["rg", "python"])
def test_pages_follow_on_without_repeats_and_the_answer_stays_under_its_cap(tmp_path, engine):
    tree(tmp_path, {f"f{n:03}.txt": ("x" * 250 + " needle\n") * 40 for n in range(30)})
    policy = PathPolicy((str(tmp_path),), str(tmp_path))
    found, _, pages = run_all(policy, {"path": str(tmp_path), "pattern": "needle", "max_results": 1000}, engine)
    assert len(found) == 1200 and pages >= 4  # 1200 long lines cannot fit one ~96 KB answer
    assert len({(m["path"], m["line"]) for m in found}) == 1200
    small = search_tool.search(policy, {"path": str(tmp_path), "pattern": "needle", "max_results": 7}, timeout_seconds=30, use_rg=engine)
    assert small["count"] == 7 and small["continuation_token"] and not small["complete"]
    with pytest.raises(OperationError, match="different search"):
        search_tool.search(policy, {"path": str(tmp_path), "pattern": "other", "continuation_token": small["continuation_token"]}, timeout_seconds=30, use_rg=engine)
    with pytest.raises(OperationError, match="not one this search gave"):
        search_tool.search(policy, {"path": str(tmp_path), "pattern": "needle", "continuation_token": "garbage!"}, timeout_seconds=30, use_rg=engine)


@pytest.mark.parametrize("engine", [pytest.param(True, marks=needs_rg), False], ids=["rg", "python"])
def test_a_cancelled_search_stops_and_says_so_with_what_it_found(engine):
    policy = PathPolicy((TREE,), TREE)
    cancel = threading.Event()
    cancel.set()
    answer = search_tool.search(policy, {"path": TREE, "pattern": "import"}, timeout_seconds=60, cancel=cancel, use_rg=engine)
    assert answer["stopped"] == "cancelled" and answer["cancelled"] is True and answer["complete"] is False


def test_bad_input_is_refused_with_how_to_fix_it(tmp_path):
    tree(tmp_path, {"a.txt": "x\n"})
    policy = PathPolicy((str(tmp_path),), str(tmp_path))
    cases = [
        ({"pattern": "("}, "literal=true"),
        ({"pattern": ""}, "non-empty"),
        ({"pattern": "x", "kind": "dirs"}, "'content' or 'files'"),
        ({"pattern": "x", "max_results": 0}, "between 1 and 1000"),
        ({"pattern": "x", "context_lines": 11}, "between 0 and 10"),
        ({"pattern": "x", "include": [""]}, "glob patterns"),
        ({"pattern": "x", "path": str(tmp_path / "a.txt")}, "not a folder"),
        ({"pattern": "x", "path": str(tmp_path / "missing")}, "no such folder"),
    ]
    for arguments, words in cases:
        with pytest.raises(OperationError) as refused:
            search_tool.search(policy, {"path": str(tmp_path)} | arguments, timeout_seconds=30, use_rg=False)
        assert words in refused.value.message, (arguments, refused.value.message)


@pytest.mark.parametrize("engine", [pytest.param(True, marks=needs_rg), False], ids=["rg", "python"])
def test_a_pattern_that_backtracks_without_end_still_stops_at_the_timeout(tmp_path, engine):
    """Python's re cannot be interrupted; the walk runs in a child process that is killed at the deadline."""
    tree(tmp_path, {"a.txt": "a" * 64 + "!\n"})
    policy = PathPolicy((str(tmp_path),), str(tmp_path))
    started = time.monotonic()
    answer = search_tool.search(policy, {"path": str(tmp_path), "pattern": "(a|aa)+$"}, timeout_seconds=2, use_rg=engine)
    assert time.monotonic() - started < 15  # ~1 s deadline; unbounded (hours) without the child process
    if engine:
        assert answer["complete"] and answer["count"] == 0  # rg's automaton has no backtracking
    else:
        assert answer["stopped"].startswith("timed out") and answer["complete"] is False


def test_rg_is_told_to_skip_denied_paths_under_the_root_so_it_never_reads_them(tmp_path):
    from agent import search_walk

    home = tmp_path / "home"
    tree(home, {".ssh/id_rsa": "k\n", "odd[1]/x": "x\n", "ok.txt": "x\n"})
    policy = PathPolicy((str(home),), str(home), (str(home / ".ssh"), str(home / "odd[1]"), str(tmp_path / "elsewhere")), deny_names=("*.kdbx",))
    argv = search_walk._rg_argv({"policy": policy, "root": str(home), "include": ["*.txt"], "exclude": [], "kind": "files"}, "rg")
    assert argv[-5:-2] == ["-g", "!*.kdbx", "--files"]
    assert "!/.ssh" in argv and "!/odd\\[1\\]" in argv and not any("elsewhere" in a for a in argv)
    assert argv.index("!/.ssh") > argv.index("*.txt")  # after the includes: an include cannot bring it back
