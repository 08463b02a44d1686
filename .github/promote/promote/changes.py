"""Which functions a change set touches (the CD's build/deploy matrix)."""

from __future__ import annotations

import subprocess
from typing import Callable, Iterable, Optional

from . import FUNCTIONS
from .rollout import commit_of

#: Paths whose change affects every function's image or Knative template.
SHARED_PREFIXES = (
    "functions/exam-results/",  # the shared library crate
    "knative/",  # chart (templates render every function), Dockerfile
    "sql/",  # migrations ship in the chart and run as its upgrade hook
    ".cargo/",
)
SHARED_FILES = ("Cargo.toml", "Cargo.lock", "rust-toolchain.toml", "rust-toolchain")


def changed_functions(paths: Iterable[str]) -> list[str]:
    """The functions to rebuild and roll out, in the canonical order.

    A path inside ``functions/<name>/`` selects that function; a shared path
    selects all five; anything else (docs, grafana, crossplane, CI) selects
    none.
    """
    selected: set[str] = set()
    for raw in paths:
        path = raw.strip()
        if path.startswith("./"):
            path = path[2:]
        if not path:
            continue
        if path in SHARED_FILES or path.startswith(SHARED_PREFIXES):
            return list(FUNCTIONS)
        parts = path.split("/")
        if len(parts) > 2 and parts[0] == "functions" and parts[1] in FUNCTIONS:
            selected.add(parts[1])
    return [f for f in FUNCTIONS if f in selected]


def plan(serving: dict[str, Optional[str]], diff: Callable[[str], Optional[list[str]]]) -> dict[str, str]:
    """Which functions differ from what an environment serves, and why.

    ``serving`` maps each function to the revision that serves most of its
    traffic (None: nothing deployed). Revisions are named
    ``<function>-<short sha>-<template hash>`` (``<function>-<short sha>``
    before the chart hashed its templates); ``diff(sha)`` lists the paths changed between
    that commit and the one being deployed, or returns None when the suffix
    is not a commit of this repository. Diffing against what is *deployed*
    (not against the previous push) means a function whose rollout was rolled
    back, or whose run was superseded, is picked up again by the next run.
    """
    out: dict[str, str] = {}
    for fn in FUNCTIONS:
        if fn not in serving:
            continue
        rev = serving[fn]
        if not rev:
            out[fn] = "nothing serves traffic yet"
            continue
        suffix = commit_of(fn, rev) or ""
        paths = diff(suffix) if suffix else None
        if paths is None:
            out[fn] = f"serves {rev}, whose suffix is not a commit of this repository"
        elif fn in changed_functions(paths):
            out[fn] = f"changed since {suffix}"
    return out


def git_diff_since(head: str, cwd: Optional[str] = None) -> Callable[[str], Optional[list[str]]]:
    """``diff`` for :func:`plan` backed by the local git checkout (needs the
    history: ``fetch-depth: 0``)."""

    def diff(rev: str) -> Optional[list[str]]:
        if not rev or not all(c in "0123456789abcdef" for c in rev) or len(rev) < 7:
            return None
        found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=cwd,
                               capture_output=True, text=True)
        if found.returncode != 0:
            return None
        out = subprocess.run(["git", "diff", "--name-only", found.stdout.strip(), head], cwd=cwd,
                             capture_output=True, text=True, check=True)
        return out.stdout.splitlines()

    return diff
