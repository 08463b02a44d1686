#!/usr/bin/env python3
"""Puts a `make bench` results file into docs/performance.md, verbatim.

    python3 .ci/bench/update_doc.py [--region NAME] bench-results/20261126T144500Z.md [docs/performance.md]

Everything between the markers `<!-- NAME:begin -->` and `<!-- NAME:end -->`
(NAME defaults to `bench-results`) is replaced by the results file, its
headings moved down two levels so they nest under the document's own.
Numbers in the document's tables therefore always come from a run, never
from typing.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DEFAULT_REGION = "bench-results"


def markers(region: str) -> tuple[str, str]:
    return f"<!-- {region}:begin -->", f"<!-- {region}:end -->"


def demote(markdown: str, levels: int = 2) -> str:
    """Adds `levels` '#' to every heading outside fenced code blocks."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def splice(doc: str, results: str, source: str, region: str = DEFAULT_REGION) -> str:
    """The document with the results between the region's markers (each must exist once)."""
    begin, end = markers(region)
    if doc.count(begin) != 1 or doc.count(end) != 1 or doc.index(begin) > doc.index(end):
        raise ValueError(f"the document needs exactly one {begin} followed by one {end}")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    body = f"\n<!-- generated from {source} by .ci/bench/update_doc.py; do not edit by hand -->\n\n"
    return head + begin + body + demote(results.strip()) + "\n\n" + end + tail


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Put a make bench results file into docs/performance.md.")
    parser.add_argument("--region", default=DEFAULT_REGION, help="marker name (default %(default)s)")
    parser.add_argument("results", type=Path)
    parser.add_argument("doc", type=Path, nargs="?",
                        default=Path(__file__).resolve().parents[2] / "docs" / "performance.md")
    args = parser.parse_args(argv[1:])
    args.doc.write_text(splice(args.doc.read_text(), args.results.read_text(), args.results.name, args.region))
    print(f"updated {args.doc} ({args.region}) from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
