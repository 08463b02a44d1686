"""One `make bench` run: the machine table, the chosen scenarios in order, the findings, the files."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from . import scenarios
from .loadgen import Load
from .report import Report
from .scenarios import findings, machine
from .settings import Settings
from .stack import Stack


class Seeded(NamedTuple):
    """The seed's newest year and its dense range of roll numbers."""

    year: int
    lo: int
    hi: int


class Bench:
    """What the scenarios share: settings, the stack, the load generators, the report and the numbers."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.stack = Stack(settings)
        self.load = Load(self.stack)
        self.report = Report()
        self.results: dict = {}
        self.cpu_columns = ["get-result", "pgbouncer", "postgres replica", "postgres replica background",
                            "postgres primary", "postgres primary background", "load generator", "other",
                            "machine busy"]
        self.seeded = Seeded(0, 0, 0)
        self.failed: list[str] = []

    def run(self) -> Path:
        s = self.s
        started = dt.datetime.now(dt.timezone.utc)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        self.stack.check()
        r = self.report
        r.h(f"exam-results benchmark {started.strftime('%Y-%m-%d %H:%M:%S UTC')}", 1)
        r.p(f"`{'BENCH_QUICK=1 ' if s.quick else ''}make bench` (.ci/bench/run.sh); scenarios: "
            f"{', '.join(sorted(s.only))}.")
        machine.run(self)
        self.seeded = Seeded(*self.stack.seeded_range())
        self.results["seeded"] = {"year": self.seeded.year, "roll_min": self.seeded.lo, "roll_max": self.seeded.hi}
        steps = [(m.NAME, m.run) for m in scenarios.ORDER if m.NAME in s.only] + [("findings", findings.run)]
        timings = []
        try:
            for name, step in steps:
                t0 = time.monotonic()
                try:
                    step(self)
                except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as err:
                    # one broken scenario should not cost the others' numbers
                    self.failed.append(name)
                    r.p(f"**{name} failed:** `{str(err).strip()[:1500]}`")
                timings.append([name, time.monotonic() - t0])
        finally:
            self.stack.cleanup()
        total = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
        r.h("Run time")
        r.t(["scenario", "seconds"], timings + [["total", total]])
        s.out_dir.mkdir(parents=True, exist_ok=True)
        out = s.out_dir / f"{stamp}.md"
        out.write_text(r.markdown())
        (s.out_dir / f"{stamp}.json").write_text(json.dumps(self.results, indent=1, default=str))
        print(f"\nwrote {out} (and {out.with_suffix('.json').name})")
        if self.failed:
            print(f"failed scenarios: {', '.join(self.failed)}", file=sys.stderr)
        return out


def main() -> int:
    bench = Bench(Settings.from_env())
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.stack.cleanup()
        return 130
    return 1 if bench.failed else 0
