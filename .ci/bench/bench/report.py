"""The report: markdown sections in order, and the raw numbers for the JSON file."""
from __future__ import annotations

import math
import re


def fmt(value) -> str:
    """Numbers for tables: 2 decimals below 10, 1 below 1000, none above."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) < 10:
            return f"{value:.2f}"
        if abs(value) < 1000:
            return f"{value:.1f}"
        return f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; numbers right-aligned."""
    def cell(v):
        return fmt(v) if not isinstance(v, str) else v

    body = [[cell(v) for v in row] for row in rows]
    align = []
    for i, _ in enumerate(headers):
        numeric = rows and all(
            isinstance(r[i], (int, float)) or r[i] is None or re.fullmatch(r"-|-?[\d,]+(\.\d+)?", str(r[i]))
            for r in rows)
        align.append("---:" if numeric else "---")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


class Report:
    """Markdown sections in order, and the raw numbers for the JSON file."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.data: dict = {}

    def h(self, text: str, level: int = 2) -> None:
        self.parts.append("#" * level + " " + text)
        self.emit(self.parts[-1])

    def p(self, text: str) -> None:
        self.parts.append(text)
        self.emit(text)

    def t(self, headers: list[str], rows: list[list]) -> None:
        self.p(table(headers, rows))

    @staticmethod
    def emit(text: str) -> None:
        print("\n" + text, flush=True)

    def markdown(self) -> str:
        return "\n\n".join(self.parts) + "\n"


