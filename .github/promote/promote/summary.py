"""The job summary (GitHub-flavoured Markdown) and the JSON report."""

from __future__ import annotations

import json
from typing import Optional

from .rollout import RolloutReport

ICON = {"promoted": "✅", "unchanged": "➖", "rolled back": "↩️", "failed": "❌"}


def _num(value: Optional[float], fmt: str) -> str:
    return "no data" if value is None else format(value, fmt)


def markdown(report: RolloutReport, environment: str, thresholds: str) -> str:
    d = report.decision.value
    lines = [
        f"### {ICON.get(d, '')} `{report.function}` in {environment}: {d}",
        "",
        f"{report.reason}",
        "",
        "| function | old revision | new revision | smoke | step | checks | worst error ratio | worst p99 "
        "| synthetic load | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = (f"| `{report.function}` | `{report.old_revision or '(none)'}` | `{report.new_revision or '(none)'}` "
             f"| {report.smoke} ")
    if not report.steps:
        lines.append(first + f"| - | 0 | - | - | - | {d} |")
    for i, step in enumerate(report.steps):
        lead = first if i == 0 else "| | | | "
        result = "passed" if step.passed else f"failed: {step.note}" if step.note else "failed"
        lines.append(
            f"{lead}| {step.percent}% | {len(step.checks)} | {_num(step.worst_error_ratio, '.4f')} "
            f"| {_num(step.worst_p99 * 1000 if step.worst_p99 is not None else None, '.0f')}"
            f"{'' if step.worst_p99 is None else ' ms'} | {step.synthetic or 'none'} | {result} |"
        )
    lines += ["", f"Gates: {thresholds}", ""]
    return "\n".join(lines)


def as_json(report: RolloutReport, environment: str) -> str:
    return json.dumps({
        "environment": environment,
        "function": report.function,
        "old_revision": report.old_revision,
        "new_revision": report.new_revision,
        "decision": report.decision.value,
        "reason": report.reason,
        "smoke": report.smoke,
        "steps": [
            {
                "percent": s.percent,
                "passed": s.passed,
                "note": s.note,
                "synthetic": None if s.synthetic is None else {
                    "sent": s.synthetic.sent, "failed": s.synthetic.failed, "rejected": s.synthetic.rejected,
                    "rate": s.synthetic.rate},
                "checks": [
                    {"at": c.at, "error_ratio": c.error_ratio, "p99_seconds": c.p99_seconds, "requests": c.requests,
                     "reasons": c.reasons}
                    for c in s.checks
                ],
            }
            for s in report.steps
        ],
    }, indent=2)
