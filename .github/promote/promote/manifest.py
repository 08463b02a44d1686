"""The functions, as the chart's ``functions.yaml`` declares them.

That file is the one list of the functions (see docs/architecture.md); the
promotion program reads it at import time instead of keeping its own copy.
``PROMOTE_FUNCTIONS_MANIFEST`` points elsewhere (tests, or a chart checked out
at another path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

#: The repository's copy, three levels above this package (.github/promote/promote).
DEFAULT_PATH = Path(__file__).resolve().parents[3] / "knative" / "exam-results" / "functions.yaml"


@dataclass(frozen=True)
class Function:
    """One entry of ``functions.yaml``."""

    name: str
    #: The chart's values key: ``functions.<key>``.
    key: str
    #: ``read`` or ``write``.
    access: str
    method: str
    route: str
    #: ``public``, ``read-token`` or ``write-token``: which token a request needs.
    auth: str = "public"


def load(path: Path | str | None = None) -> tuple[Function, ...]:
    """Read and check the manifest; a malformed one raises ``ValueError``."""
    path = Path(path or os.environ.get("PROMOTE_FUNCTIONS_MANIFEST") or DEFAULT_PATH)
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = doc.get("functions")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty list under 'functions'")
    out = []
    for entry in entries:
        try:
            fn = Function(name=entry["name"], key=entry["key"], access=entry["access"],
                          method=entry["method"], route=entry["route"], auth=entry.get("auth", "public"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: entry {entry!r} lacks {exc}") from exc
        if fn.access not in ("read", "write"):
            raise ValueError(f"{path}: {fn.name}: access must be read or write, got {fn.access!r}")
        if fn.auth not in ("public", "read-token", "write-token"):
            raise ValueError(f"{path}: {fn.name}: auth must be public, read-token or write-token, got {fn.auth!r}")
        out.append(fn)
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate function names in {names}")
    return tuple(out)


MANIFEST = load()
#: Every function's name, in the manifest's order.
FUNCTIONS = tuple(f.name for f in MANIFEST)
READ_FUNCTIONS = tuple(f.name for f in MANIFEST if f.access == "read")
WRITE_FUNCTIONS = tuple(f.name for f in MANIFEST if f.access == "write")
_BY_NAME = {f.name: f for f in MANIFEST}


def function(name: str) -> Function:
    """The manifest entry of ``name``; ``ValueError`` for an unknown one."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown function {name!r}; choose from {', '.join(FUNCTIONS)}") from None
