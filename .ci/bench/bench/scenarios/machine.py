"""The machine and its load before the run (always reported first)."""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time

from ..cpu import CLK_TCK, CpuWatch, postmaster_pids
from ..settings import ROOT


def run(b) -> None:
    r = b.report
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    watch = CpuWatch(postmaster_pids(b.s.state_dir))
    watch.begin()
    time.sleep(2)
    idle = watch.end()
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    binary = ROOT / "target" / "release" / "get-result"
    built = (dt.datetime.fromtimestamp(binary.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
             if binary.exists() else "missing")
    last_change = git("log", "-1", "--format=%cd %h", "--date=format-local:%Y-%m-%d %H:%M:%S UTC", "--",
                      "functions", "Cargo.toml", "Cargo.lock")
    stack_started = "?"
    try:
        pid = int((b.s.state_dir / "run" / "get-result.pid").read_text().split()[0])
        boot = float(open("/proc/stat").read().split("btime ")[1].split()[0])
        start_ticks = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])
        stack_started = dt.datetime.fromtimestamp(boot + start_ticks / CLK_TCK, dt.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
    except (OSError, ValueError, IndexError):
        pass
    rows = [
        ["CPU", f"{os.cpu_count()} x {cpu}"],
        ["memory", f"{mem_kib / 1048576:.1f} GiB"],
        ["kernel", platform.release()],
        ["OS", version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"])],
        ["PostgreSQL", version(["psql", "--version"])],
        ["PgBouncer", version(["sh", "-c", "pgbouncer --version 2>/dev/null || /usr/sbin/pgbouncer --version"])],
        ["wrk", version(["sh", "-c", "wrk -v 2>&1 | head -1"])],
        ["commit", commit],
        ["release binaries built (target/release/get-result)", built],
        ["last commit to functions/ or Cargo files", last_change or "?"],
        ["stack's get-result started", stack_started],
        ["mode", ("quick (BENCH_QUICK=1)" if b.s.quick else "full") +
         f", {b.s.duration:g} s per run, {b.s.sweep_duration:g} s per sweep point"],
        ["load average before the run", " ".join(open("/proc/loadavg").read().split()[:3])],
        ["CPU busy before the run (2 s sample, cores)", f"{idle['machine busy']:.2f} of {os.cpu_count()}"],
        ["of which stolen by the hypervisor", f"{idle['steal']:.2f}"],
    ]
    r.h("Machine and load conditions")
    r.t(["", ""], rows)
    r.p("Everything (load generator, function, PgBouncer, both PostgreSQL servers) shares these cores; "
        "\"CPU\" tables show where the cores went during each run (cores used, from /proc, over the "
        "middle of the run). \"other\" is every process not part of the benchmark, e.g. builds and tests "
        "running at the same time.")
    b.results["machine"] = {k: v for k, v in rows}


