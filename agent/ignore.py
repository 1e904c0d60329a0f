"""Ignore rules as ripgrep applies them, for the pure-Python search (agent/search.py).

Files read, in each folder from `/` down to the searched one and then in each folder searched:
`.rgignore`, `.ignore`, `.gitignore` (first has precedence), and `.git/info/exclude` in a folder that
holds a `.git`. A deeper folder's rules win over a shallower one's; within one file the last matching
line wins; `!pattern` re-includes. This is ripgrep run with `--no-require-git --no-ignore-global`: a
`.gitignore` counts even outside a git repository, and the user's global excludes do not, so both
search paths give the same matches on any machine.

Patterns follow gitignore(5): a pattern without a slash (other than a trailing one) matches a name at
any depth; with one it is anchored to its file's folder; a trailing `/` matches folders only; `*` and
`?` stop at `/`, `**` crosses folders. The same rules serve the search's include and exclude globs
(ripgrep's `-g`), anchored to the searched folder.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

IGNORE_FILES = (".rgignore", ".ignore", ".gitignore")


@dataclass(frozen=True)
class Rule:
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool


@functools.lru_cache(maxsize=4096)
def compile_pattern(line: str, case_insensitive: bool = False) -> Rule | None:
    """One gitignore line as a Rule, or None for a blank line or a comment."""
    line = line.rstrip("\n").rstrip("\r")
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(line) > len(stripped):
        stripped += " "  # an escaped trailing space is kept
    line = stripped
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    if negated:
        line = line[1:]
    elif line.startswith(("\\!", "\\#")):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    body = _glob_to_regex(line)
    prefix = "" if anchored else "(?:.*/)?"
    flags = re.DOTALL | (re.IGNORECASE if case_insensitive else 0)
    return Rule(re.compile(f"{prefix}{body}", flags), negated, dir_only)


def _glob_to_regex(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("/.*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "^", "]") else i + 1)
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            inner = glob[i + 1 : end]
            if inner.startswith("!"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class RuleSet:
    """The rules of one folder's ignore files, matched against paths relative to that folder."""

    def __init__(self, base: str, rules: list[Rule]) -> None:
        self.base, self.rules = base, rules

    def decide(self, relative: str, is_dir: bool) -> bool | None:
        """True: ignored; False: re-included by `!`; None: no rule here speaks of it."""
        for rule in reversed(self.rules):
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.fullmatch(relative):
                return not rule.negated
        return None


def load(folder: str) -> list[RuleSet]:
    """The rule sets a folder's own ignore files give, highest precedence first."""
    found = []
    for name in IGNORE_FILES:
        rules = _read_rules(os.path.join(folder, name))
        if rules:
            found.append(RuleSet(folder, rules))
    if os.path.isdir(os.path.join(folder, ".git")):
        rules = _read_rules(os.path.join(folder, ".git", "info", "exclude"))
        if rules:
            found.append(RuleSet(folder, rules))
    return found


def _read_rules(path: str) -> list[Rule]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
        return []
    return [rule for rule in (compile_pattern(line) for line in lines) if rule is not None]


def ancestors(folder: str) -> list[RuleSet]:
    """The rule sets of every folder above `folder` (not `folder` itself), deepest first."""
    sets: list[RuleSet] = []
    current = os.path.dirname(folder)
    while True:
        sets.extend(load(current))
        parent = os.path.dirname(current)
        if parent == current:
            return sets
        current = parent


def ignored(stack: list[RuleSet], path: str, is_dir: bool) -> bool:
    """Whether `path` is ignored by the rule sets in `stack` (deepest first)."""
    for rule_set in stack:
        relative = os.path.relpath(path, rule_set.base)
        if relative.startswith(".."):
            continue
        decision = rule_set.decide(relative, is_dir)
        if decision is not None:
            return decision
    return False


class Overrides:
    """The search's include and exclude globs (ripgrep's `-g`), which beat every ignore file: a file
    matching an include is searched even if ignored; with includes, other files are not; an exclude
    drops files and folders. Folders are never dropped for not matching an include."""

    def __init__(self, base: str, include: list[str], exclude: list[str]) -> None:
        self.base = base
        self.include = [r for r in (compile_pattern(g) for g in include) if r is not None]
        self.exclude = [r for r in (compile_pattern(g) for g in exclude) if r is not None]

    def decide(self, path: str, is_dir: bool) -> bool | None:
        """True: search it regardless of ignore files; False: skip it; None: ignore files decide."""
        relative = os.path.relpath(path, self.base)
        if any(r.regex.fullmatch(relative) and (is_dir or not r.dir_only) for r in self.exclude):
            return False
        if not self.include:
            return None
        if any(r.regex.fullmatch(relative) and (is_dir or not r.dir_only) for r in self.include):
            return True
        return None if is_dir else False
