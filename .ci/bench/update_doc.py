#!/usr/bin/env python3
"""Puts a `make bench` results file into docs/performance.md, verbatim.

    python3 .ci/bench/update_doc.py bench-results/20261126T144500Z.md [docs/performance.md]

Everything between the markers `<!-- bench-results:begin -->` and
`<!-- bench-results:end -->` is replaced by the results file, its headings
moved down two levels so they nest under the document's own. Numbers in the
document's tables therefore always come from a run, never from typing.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

BEGIN = "<!-- bench-results:begin -->"
END = "<!-- bench-results:end -->"


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


def splice(doc: str, results: str, source: str) -> str:
    """The document with the results between the markers (which must exist once each)."""
    if doc.count(BEGIN) != 1 or doc.count(END) != 1 or doc.index(BEGIN) > doc.index(END):
        raise ValueError(f"the document needs exactly one {BEGIN} followed by one {END}")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = f"\n<!-- generated from {source} by .ci/bench/update_doc.py; do not edit by hand -->\n\n"
    return head + BEGIN + body + demote(results.strip()) + "\n\n" + END + tail


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    results = Path(argv[1])
    doc = Path(argv[2]) if len(argv) == 3 else Path(__file__).resolve().parents[2] / "docs" / "performance.md"
    doc.write_text(splice(doc.read_text(), results.read_text(), results.name))
    print(f"updated {doc} from {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
