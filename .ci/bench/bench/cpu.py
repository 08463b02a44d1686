"""CPU used per process group, from /proc, and per request."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Iterable

from .settings import FUNCTIONS, NAMES

CLK_TCK = os.sysconf("SC_CLK_TCK")
# /proc/PID/stat holds the first 15 bytes of a program's name (TASK_COMM_LEN - 1).
COMM_LEN = 15
FUNCTION_OF_COMM = {name[:COMM_LEN]: name for name in NAMES}


def read_proc_stat() -> dict[int, tuple[str, int, int]]:
    """pid -> (comm, ppid, utime+stime ticks) for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                raw = fh.read().decode(errors="replace")
        except OSError:
            continue
        lpar, rpar = raw.find("("), raw.rfind(")")
        comm = raw[lpar + 1:rpar]
        fields = raw[rpar + 2:].split()
        # fields[0] = state (field 3); utime = field 14, stime = field 15
        out[int(entry)] = (comm, int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


def machine_ticks() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies of all CPUs since boot (guest time is already in user)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    values = values[:8]  # user nice system idle iowait irq softirq steal
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    steal = values[7] if len(values) > 7 else 0
    return sum(values) - idle, sum(values), steal


def is_client_backend(cmdline: str) -> bool:
    """Whether a postgres process title is a client backend: "postgres: USER DB HOST(PORT) STATE"
    over TCP, "postgres: USER DB [local] STATE" over a Unix socket (PgBouncer's own connections)."""
    return bool(re.match(r"postgres: \S+ \S+ ([\d.:\[\]a-f]+\(\d+\)|\[local\])", cmdline))


class CpuWatch:
    """CPU used per process group between two snapshots, in cores."""

    def __init__(self, postmasters: dict[int, str]) -> None:
        self.postmasters = postmasters  # postmaster pid -> "replica" | "primary"
        self.start = None
        self.cmdlines: dict[int, bool] = {}

    def group(self, pid: int, comm: str, ppid: int) -> str:
        if comm in FUNCTION_OF_COMM:
            return FUNCTION_OF_COMM[comm]
        if comm == "pgbouncer":
            return "pgbouncer"
        if comm in ("postgres", "postmaster") or comm.startswith("postgres"):
            role = self.postmasters.get(pid) or self.postmasters.get(ppid)
            if not role:
                return "postgres (other clusters)"
            # Client backends do the benchmark's queries; the postmaster and
            # background processes (WAL replay on the replica, walsender,
            # checkpointer, autovacuum) also work for everyone else's writes.
            return f"postgres {role}" if self.is_backend(pid) else f"postgres {role} background"
        if comm in ("wrk", "pgbench", "psql"):  # psql: the batch scenario's copy
            return "load generator"
        return "other"

    def is_backend(self, pid: int) -> bool:
        if pid not in self.cmdlines:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().decode(errors="replace")
            except OSError:
                cmd = ""
            self.cmdlines[pid] = is_client_backend(cmd)
        return self.cmdlines[pid]

    def snapshot(self):
        return time.monotonic(), read_proc_stat(), machine_ticks()

    def begin(self) -> None:
        self.start = self.snapshot()

    def end(self) -> dict[str, float]:
        t0, procs0, (busy0, total0, steal0) = self.start
        t1, procs1, (busy1, total1, steal1) = self.snapshot()
        wall = t1 - t0
        groups: dict[str, float] = {}
        for pid, (comm, ppid, ticks) in procs1.items():
            before = procs0.get(pid)
            delta = ticks - (before[2] if before and before[0] == comm else 0)
            g = self.group(pid, comm, ppid)
            groups[g] = groups.get(g, 0.0) + delta / CLK_TCK / wall
        ncpu = os.cpu_count() or 1
        busy_cores = (busy1 - busy0) / max(1, total1 - total0) * ncpu
        known = sum(v for k, v in groups.items() if k != "other")
        # steal (the hypervisor running someone else) counts as busy in /proc/stat
        # and belongs to no process: keep it out of "other"
        steal_cores = (steal1 - steal0) / max(1, total1 - total0) * (os.cpu_count() or 1)
        groups["other"] = max(0.0, busy_cores - steal_cores - known)
        groups["machine busy"] = busy_cores
        groups["steal"] = (steal1 - steal0) / max(1, total1 - total0) * ncpu
        return groups


def cpu_row(groups: dict[str, float], columns: list[str]) -> list:
    return [f"{groups.get(c, 0.0):.2f}" for c in columns]


# The processes a read request passes through.
READ_PATH = ("load generator", *(f.name for f in FUNCTIONS if f.access == "read"), "pgbouncer", "postgres replica")


def cpu_per_request(result: dict, groups: Iterable[str] = READ_PATH) -> float:
    """CPU microseconds per request of the processes on a request's path."""
    cpu = result["cpu"]
    used = sum(cpu.get(g, 0.0) for g in groups)
    return used / result["rps"] * 1e6 if result["rps"] else float("nan")


def postmaster_pids(state_dir: Path) -> dict[int, str]:
    """postmaster pid -> "primary" | "replica", from the stack's data directories."""
    out = {}
    for role in ("primary", "replica"):
        try:
            pid = int((state_dir / role / "postmaster.pid").read_text().split()[0])
            out[pid] = role
        except (OSError, ValueError, IndexError):
            pass
    return out
