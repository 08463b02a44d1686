"""Which functions a change set touches (the CD's build/deploy matrix)."""

from __future__ import annotations

from typing import Iterable

from . import FUNCTIONS

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
