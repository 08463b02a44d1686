#!/usr/bin/env python3
"""`make bench`: results-day benchmarks against the local stack from `make up`.

Every scenario runs a real load generator for a few seconds against real
processes on 127.0.0.1 and is reported as a markdown table:

  point     GET /results/{year}/{roll} through get-result -> PgBouncer -> replica
            (wrk), side by side with the same SQL through PgBouncer and directly
            against the replica (pgbench) and with the function's /healthz
  mixed     10:1 reads to authenticated writes (get-result + update/create-result)
  list      keyset pages of 100: random pages under load, and one walk through a
            whole year
  sweep     one get-result process of our own (list-results, update-result too)
            against in-flight concurrency 1..512 and pool size; the knee and the
            Knative settings it implies
  cold      exec -> first /readyz and -> first served request (20 runs),
            RSS idle and under load, binary sizes
  growth    1M / 10M (/ 50M) rows in a scratch database on the primary: bulk
            load with the psql seed and with COPY, point-read p99, planning time
            against the number of partitions
  profile   where the time goes at 64 connections: round trips per request,
            pool wait vs query time, log level, perf

Python standard library only (runs with the system python3). Settings come
from the environment (see `Settings`); `BENCH_QUICK=1` is the short version.
The output file is bench-results/<UTC timestamp>.md (plus .json).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LUA_DIR = HERE / "lua"
SQL_DIR = HERE / "sql"
FUNCTIONS = ["get-result", "list-results", "create-result", "update-result", "delete-result"]
# Roll numbers of the benchmark's own rows (far above the seed's range); the
# driver deletes this range before and after the write scenarios.
BENCH_ROLL_BASE = 500_000_000_000
BENCH_ROLL_END = 599_999_999_999
BENCH_UPDATE_ROWS = 10_000
SCRATCH_DB = "exam_results_bench_scratch"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- settings


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.replace(",", " ").split()]


@dataclasses.dataclass
class Settings:
    """What to run, from the environment (defaults in brackets)."""

    quick: bool  # BENCH_QUICK=1: the < 2 minute version
    duration: float  # BENCH_DURATION seconds per load run [6; quick 2]
    sweep_duration: float  # BENCH_SWEEP_DURATION seconds per capacity-sweep point [4; quick 2]
    connections: list[int]  # BENCH_CONNECTIONS point-read client counts [16 64 256; quick 64]
    sweep: list[int]  # BENCH_SWEEP get-result concurrency [1 2 4 .. 512; quick 1 4 16 64 256]
    pools: list[int]  # BENCH_POOLS pool sizes tried at 64 in flight [4 8 16 32 64; quick 8 32]
    cold_runs: int  # BENCH_COLD_RUNS [20; quick 5]
    growth_rows: list[int]  # BENCH_GROWTH_ROWS [1000000 10000000; quick none]
    only: set[str]  # BENCH_ONLY comma list of scenarios [all]
    out_dir: Path  # BENCH_OUT [bench-results]
    perf: bool  # BENCH_PERF=0 disables the perf profile [1]
    state_dir: Path  # STATE_DIR [.local]
    pgbouncer_port: int
    primary_port: int
    replica_port: int
    ports: dict[str, int]

    @classmethod
    def from_env(cls, env: Optional[dict] = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        quick = env.get("BENCH_QUICK", "") not in ("", "0", "false", "no")
        scenarios = {"point", "mixed", "list", "sweep", "cold", "growth", "profile"}
        only = {s.strip() for s in env.get("BENCH_ONLY", "").split(",") if s.strip()} or scenarios
        unknown = only - scenarios
        if unknown:
            raise SystemExit(f"BENCH_ONLY: unknown scenario(s) {sorted(unknown)}; known: {sorted(scenarios)}")
        return cls(
            quick=quick,
            duration=float(env.get("BENCH_DURATION", "2" if quick else "6")),
            sweep_duration=float(env.get("BENCH_SWEEP_DURATION", "2" if quick else "4")),
            connections=_ints(env.get("BENCH_CONNECTIONS", "64" if quick else "16 64 256")),
            sweep=_ints(env.get("BENCH_SWEEP", "1 4 16 64 256" if quick else "1 2 4 8 16 32 64 128 256 512")),
            pools=_ints(env.get("BENCH_POOLS", "8 32" if quick else "4 8 16 32 64")),
            cold_runs=int(env.get("BENCH_COLD_RUNS", "5" if quick else "20")),
            growth_rows=_ints(env.get("BENCH_GROWTH_ROWS", "" if quick else "1000000 10000000")),
            only=only,
            out_dir=Path(env.get("BENCH_OUT", str(ROOT / "bench-results"))),
            perf=env.get("BENCH_PERF", "1") not in ("0", "false", "no"),
            state_dir=Path(env.get("STATE_DIR", str(ROOT / ".local"))),
            pgbouncer_port=int(env.get("PGBOUNCER_PORT", "6432")),
            primary_port=int(env.get("PRIMARY_PORT", "55432")),
            replica_port=int(env.get("REPLICA_PORT", "55433")),
            ports={
                "create-result": int(env.get("CREATE_RESULT_PORT", "8081")),
                "get-result": int(env.get("GET_RESULT_PORT", "8082")),
                "list-results": int(env.get("LIST_RESULTS_PORT", "8083")),
                "update-result": int(env.get("UPDATE_RESULT_PORT", "8084")),
                "delete-result": int(env.get("DELETE_RESULT_PORT", "8085")),
            },
        )


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def parse_wrk(output: str) -> dict:
    """The BENCH_JSON line printed by lua/common.lua's done(), as numbers in ms."""
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            raw = json.loads(line[len("BENCH_JSON "):])
            lat = raw["latency_us"]
            seconds = raw["duration_us"] / 1e6
            return {
                "requests": raw["requests"],
                "seconds": seconds,
                "rps": raw["requests"] / seconds if seconds else 0.0,
                "p50_ms": lat["p50"] / 1000.0,
                "p90_ms": lat["p90"] / 1000.0,
                "p99_ms": lat["p99"] / 1000.0,
                "max_ms": lat["max"] / 1000.0,
                "errors": sum(raw["errors"].values()),
                "error_detail": raw["errors"],
                "thread_counters": raw.get("thread_counters", []),
            }
    raise ValueError("wrk printed no BENCH_JSON line (was the script loaded?):\n" + output[-2000:])


def parse_pgbench(stdout: str, log_lines: Iterable[str]) -> dict:
    """pgbench's summary plus percentiles from its per-transaction log (-l).

    Log lines: client_id transaction_no time script_no time_epoch time_us, with
    `time` the transaction's latency in microseconds, or `failed`/`skipped`.
    """
    latencies: list[float] = []
    failed_in_log = 0
    for line in log_lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        if parts[2].isdigit():
            latencies.append(int(parts[2]) / 1000.0)
        else:
            failed_in_log += 1
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", stdout, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", stdout, re.M)
    processed = re.search(r"^number of transactions actually processed: (\d+)", stdout, re.M)
    connect = re.search(r"^initial connection time = ([\d.]+) ms", stdout, re.M)
    if not tps or not processed:
        raise ValueError("unexpected pgbench output:\n" + stdout[-2000:])
    return {
        "requests": int(processed.group(1)),
        "rps": float(tps.group(1)),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else float("nan"),
        "errors": (int(failed.group(1)) if failed else 0) + ("aborted" in stdout) * 1,
        "connect_ms": float(connect.group(1)) if connect else float("nan"),
    }


def knee(points: list[dict], share: float = 0.9) -> dict:
    """The smallest concurrency whose throughput reaches `share` of the best."""
    best = max(p["rps"] for p in points)
    for point in sorted(points, key=lambda p: p["concurrency"]):
        if point["rps"] >= share * best:
            return point
    raise AssertionError("unreachable")


def recommend(points: list[dict], p99_budget_ms: float) -> dict:
    """Knative settings from a concurrency sweep of one pod.

    - target: the knee (smallest in-flight count reaching 90% of peak
      throughput). Past it, more in-flight requests per pod only queue.
    - containerConcurrency: the largest swept concurrency that still holds 90%
      of peak throughput with p99 within the budget, at least 2 x target; the
      hard cap keeps a pod from being pushed into queueing collapse.
    """
    k = knee(points)
    best = max(p["rps"] for p in points)
    ok = [
        p["concurrency"]
        for p in points
        if p["rps"] >= 0.9 * best and p["p99_ms"] <= p99_budget_ms and p["errors"] == 0
    ]
    cc = max(ok) if ok else k["concurrency"]
    cc = max(cc, 2 * k["concurrency"])
    return {
        "knee": k["concurrency"],
        "knee_rps": k["rps"],
        "knee_p99_ms": k["p99_ms"],
        "peak_rps": best,
        "target": k["concurrency"],
        "container_concurrency": cc,
        "p99_budget_ms": p99_budget_ms,
    }


def best_pool(points: list[dict], share: float = 0.90) -> dict:
    """The smallest pool size within `share` of the best throughput.

    10%: on the shared reference machine two passes of the same point differ
    by about that much, so smaller differences say nothing about the pool.
    """
    best = max(p["rps"] for p in points)
    for point in sorted(points, key=lambda p: p["pool"]):
        if point["rps"] >= share * best:
            return point
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- markdown


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


# --------------------------------------------------------------------------- processes and CPU


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
    """Whether a postgres process title is a client backend ("postgres: USER DB HOST(PORT) STATE")."""
    return bool(re.match(r"postgres: \S+ \S+ [\d.:\[\]a-f]+\(\d+\)", cmdline))


class CpuWatch:
    """CPU used per process group between two snapshots, in cores."""

    def __init__(self, postmasters: dict[int, str]) -> None:
        self.postmasters = postmasters  # postmaster pid -> "replica" | "primary"
        self.start = None
        self.cmdlines: dict[int, bool] = {}

    def group(self, pid: int, comm: str, ppid: int) -> str:
        if comm in FUNCTIONS:
            return comm
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
        if comm in ("wrk", "pgbench"):
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


READ_PATH = ("load generator", "get-result", "list-results", "pgbouncer", "postgres replica")


def cpu_per_request(result: dict, groups: Iterable[str] = READ_PATH) -> float:
    """CPU microseconds per request of the processes on a request's path."""
    cpu = result["cpu"]
    used = sum(cpu.get(g, 0.0) for g in groups)
    return used / result["rps"] * 1e6 if result["rps"] else float("nan")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def postmaster_pids(settings: Settings) -> dict[int, str]:
    out = {}
    for role in ("primary", "replica"):
        try:
            pid = int((settings.state_dir / role / "postmaster.pid").read_text().split()[0])
            out[pid] = role
        except (OSError, ValueError, IndexError):
            pass
    return out


def free_port_pair(offset: int = 1000) -> int:
    """A port p such that p and p + offset are both free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + offset > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair found")


def rss_kib(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def http_get(port: int, path: str, method: str = "GET", body: Optional[str] = None,
             headers: Optional[dict] = None, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.report = Report()
        self.secrets = self._read_secrets()
        self.tmp = Path(tempfile.mkdtemp(prefix="exam-bench-"))
        self.cpu_columns = ["get-result", "pgbouncer", "postgres replica", "postgres replica background",
                            "postgres primary", "postgres primary background", "load generator", "other",
                            "machine busy"]
        self.children: list[subprocess.Popen] = []
        self.results: dict = {}

    # ---- environment

    def _read_secrets(self) -> dict[str, str]:
        path = self.s.state_dir / "secrets.env"
        if not path.exists():
            raise SystemExit(f"{path} not found: run `make up` first")
        out = {}
        for line in path.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
        return out

    def pg_env(self, superuser: bool = False) -> dict:
        env = dict(os.environ)
        env["PGPASSWORD"] = self.secrets["POSTGRES_PASSWORD" if superuser else "EXAM_APP_PASSWORD"]
        env["PGCONNECT_TIMEOUT"] = "5"
        env.pop("PGOPTIONS", None)
        return env

    def psql(self, sql: str, port: int, db: str, superuser: bool = False, options: str = "",
             variables: Optional[dict] = None, file: Optional[Path] = None) -> str:
        cmd = ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
               "-U", "postgres" if superuser else "exam_app", "-d", db]
        for k, v in (variables or {}).items():
            cmd += ["-v", f"{k}={v}"]
        cmd += ["-f", str(file)] if file else ["-c", sql]
        env = self.pg_env(superuser)
        if options:
            env["PGOPTIONS"] = options
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({' '.join(cmd[:12])} ...): {done.stderr.strip()}")
        return done.stdout

    def check_stack(self) -> None:
        for name, port in self.s.ports.items():
            try:
                status, _ = http_get(port, "/readyz")
            except OSError as err:
                raise SystemExit(f"{name} is not answering on 127.0.0.1:{port} ({err}): run `make up` first")
            if status != 200:
                raise SystemExit(f"{name} /readyz answered {status}: is the stack healthy? (`make status`)")
        for tool in ("wrk", "pgbench", "psql"):
            if not shutil.which(tool):
                raise SystemExit(f"{tool} not found: apt-get install $(cat .ci/apt-bench.txt)")

    def seeded_range(self) -> tuple[int, int, int]:
        """(year, first roll, last roll) of the seed's newest year, all existing.

        The seed writes dense roll numbers from 100000001 up in every year; a
        few rows added by hand (other roll numbers) are excluded by taking the
        longest dense run from the year's smallest roll number.
        """
        out = self.psql(
            "WITH y AS (SELECT exam_year, count(*) AS n FROM student_results GROUP BY 1 HAVING count(*) >= 1000 "
            "ORDER BY exam_year DESC LIMIT 1), "
            "lo AS (SELECT min(roll_number) AS lo FROM student_results s JOIN y USING (exam_year)) "
            "SELECT y.exam_year, lo.lo, (SELECT count(*) FROM student_results s WHERE s.exam_year = y.exam_year "
            "AND s.roll_number BETWEEN lo.lo AND lo.lo + y.n - 1) FROM y, lo",
            self.s.pgbouncer_port, "exam_results_ro")
        year, lo, dense = (int(v) for v in out.strip().split("|"))
        hi = lo + dense - 1
        check = int(self.psql(
            f"SELECT count(*) FROM student_results WHERE exam_year = {year} AND roll_number BETWEEN {lo} AND {hi}",
            self.s.pgbouncer_port, "exam_results_ro").strip())
        if check != hi - lo + 1:
            raise SystemExit(f"seeded roll numbers of {year} are not dense ({check} rows in {lo}..{hi})")
        return year, lo, hi

    # ---- load generators

    def wrk(self, port: int, conns: int, duration: float, script: str = "", path: str = "/",
            args: Iterable[str] = (), threads: Optional[int] = None) -> subprocess.Popen:
        threads = threads or min(2, conns)
        cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration:g}s", "--timeout", "5s",
               "-s", str(LUA_DIR / (script or "plain.lua")), f"http://127.0.0.1:{port}{path}"]
        args = list(args)
        if args:
            cmd += ["--"] + args
        env = dict(os.environ, BENCH_LUA_DIR=str(LUA_DIR))
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def pgbench(self, script: str, conns: int, duration: float, port: int, db: str,
                defines: dict) -> tuple[subprocess.Popen, Path]:
        logdir = Path(tempfile.mkdtemp(dir=self.tmp, prefix="pgbench-"))
        cmd = ["pgbench", "-n", "-M", "extended", "-c", str(conns), "-j", str(min(2, conns)),
               "-T", str(max(1, round(duration))), "-f", str(SQL_DIR / script), "-l",
               f"--log-prefix={logdir}/tx", "-h", "127.0.0.1", "-p", str(port), "-U", "exam_app", db]
        for k, v in defines.items():
            cmd += ["-D", f"{k}={v}"]
        proc = subprocess.Popen(cmd, env=self.pg_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        return proc, logdir

    def measure(self, start: Callable[[], list], duration: float, warmup: float = 0.5,
                sampler: Optional[Callable[[], None]] = None) -> tuple[list, dict]:
        """Starts load processes, records CPU per group over the middle of the run."""
        watch = CpuWatch(postmaster_pids(self.s))
        started = time.monotonic()
        procs = start()
        time.sleep(warmup)
        watch.begin()
        deadline = started + duration * 0.92
        while time.monotonic() < deadline:
            if sampler:
                sampler()
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        cpu = watch.end()
        outputs = []
        for item in procs:
            proc = item[0] if isinstance(item, tuple) else item
            out, _ = proc.communicate(timeout=duration + 120)
            outputs.append((item, out, proc.returncode))
        return outputs, cpu

    def run_wrk(self, port: int, conns: int, script: str = "", path: str = "/", args=(),
                sampler=None, duration: Optional[float] = None) -> dict:
        d = duration or self.s.duration
        outputs, cpu = self.measure(lambda: [self.wrk(port, conns, d, script, path, args)], d,
                                    warmup=min(0.5, d / 4), sampler=sampler)
        _, out, rc = outputs[0]
        if rc != 0:
            raise RuntimeError(f"wrk failed ({rc}):\n{out}")
        result = parse_wrk(out)
        result["cpu"] = cpu
        return result

    def run_pgbench(self, script: str, conns: int, port: int, db: str, defines: dict) -> dict:
        # Logging in with SCRAM costs PgBouncer/Postgres a few ms per client;
        # pgbench's -T includes it, its tps excludes it: give it extra time.
        connect_allowance = 1 + math.ceil(conns / 64)
        d = self.s.duration + connect_allowance
        outputs, cpu = self.measure(
            lambda: [self.pgbench(script, conns, d, port, db, defines)], d, warmup=connect_allowance + 0.5)
        (proc, logdir), out, rc = outputs[0]
        lines: list[str] = []
        for f in sorted(logdir.glob("tx*")):
            lines += f.read_text().splitlines()
        shutil.rmtree(logdir, ignore_errors=True)
        if rc != 0 and "tps =" not in out:
            raise RuntimeError(f"pgbench failed ({rc}):\n{out[-3000:]}")
        result = parse_pgbench(out, lines)
        result["cpu"] = cpu
        return result

    # ---- own function processes

    def function_env(self, name: str, port: int, pool: int, log_level: str = "info",
                     extra: Optional[dict] = None) -> dict:
        out = subprocess.run([str(ROOT / ".ci/stack.sh"), "env", name, str(port)], capture_output=True,
                             text=True, check=True, env=dict(os.environ, DATABASE_POOL_SIZE=str(pool),
                                                             LOG_LEVEL=log_level)).stdout
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        for line in out.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
        env["SHUTDOWN_DRAIN_SECONDS"] = "1"
        env.update(extra or {})
        return env

    def binary(self, name: str) -> Path:
        path = ROOT / "target" / "release" / name
        if not path.exists():
            raise SystemExit(f"{path} missing: `make up` builds the release binaries")
        return path

    def start_function(self, name: str, pool: int, log_level: str = "info",
                       extra: Optional[dict] = None) -> tuple[subprocess.Popen, int]:
        port = free_port_pair()
        env = self.function_env(name, port, pool, log_level, extra)
        log = open(self.tmp / f"{name}-{port}.log", "ab")
        proc = subprocess.Popen([str(self.binary(name))], env=env, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        self.children.append(proc)
        for _ in range(300):
            try:
                if http_get(port, "/readyz", timeout=1)[0] == 200:
                    return proc, port
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; log {log.name}")
            time.sleep(0.02)
        raise RuntimeError(f"{name} on {port} did not become ready; log {log.name}")

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.children:
            self.children.remove(proc)

    def cleanup(self) -> None:
        for proc in list(self.children):
            self.stop(proc)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- bench rows for writes

    def bench_rows(self, year: int, create: bool) -> None:
        self.psql(f"DELETE FROM student_results WHERE exam_year = {year} "
                  f"AND roll_number BETWEEN {BENCH_ROLL_BASE} AND {BENCH_ROLL_END}",
                  self.s.primary_port, "exam_results", options="-c statement_timeout=0")
        if create:
            self.psql(f"INSERT INTO student_results (roll_number, exam_year, marks) "
                      f"SELECT {BENCH_ROLL_BASE} + n, {year}, n % 101 FROM generate_series(1, {BENCH_UPDATE_ROWS}) n",
                      self.s.primary_port, "exam_results")

    # ---- metrics scraping (function side breakdown)

    @staticmethod
    def scrape(port: int) -> dict[str, float]:
        status, body = http_get(port, "/metrics")
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line.startswith("#") or " " not in line:
                continue
            key, value = line.rsplit(" ", 1)
            try:
                out[key] = float(value)
            except ValueError:
                pass
        return out

    @staticmethod
    def metric_sum(metrics: dict[str, float], name: str, **labels) -> float:
        total = 0.0
        for key, value in metrics.items():
            if key.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in key for k, v in labels.items()):
                total += value
        return total

    def pgbouncer_stats(self, db: str) -> dict[str, float]:
        out = self.psql("SHOW STATS", self.s.pgbouncer_port, "pgbouncer")
        # columns: database|total_xact_count|total_query_count|total_received|total_sent|
        # total_xact_time|total_query_time|total_wait_time|avg_...
        header = ["database", "total_xact_count", "total_query_count", "total_received", "total_sent",
                  "total_xact_time", "total_query_time", "total_wait_time"]
        for line in out.splitlines():
            cols = line.split("|")
            if cols and cols[0] == db:
                return {h: float(c) for h, c in zip(header[1:], cols[1:len(header)])}
        return {}

    # ================================================================== scenarios

    def machine(self) -> None:
        r = self.report
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

        watch = CpuWatch(postmaster_pids(self.s))
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
            pid = int((self.s.state_dir / "run" / "get-result.pid").read_text().split()[0])
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
            ["mode", ("quick (BENCH_QUICK=1)" if self.s.quick else "full") +
             f", {self.s.duration:g} s per run, {self.s.sweep_duration:g} s per sweep point"],
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
        self.results["machine"] = {k: v for k, v in rows}

    def point_reads(self, year: int, lo: int, hi: int) -> None:
        r = self.report
        r.h("Point reads, results-day style")
        r.p(f"`GET /results/{year}/{{roll}}` for uniformly random existing roll numbers {lo}..{hi} of "
            f"{year} (one of 5 seeded years, 1M rows in all), each client looping for {self.s.duration:g} s. "
            "Compared in the same run with the same SQL through the same PgBouncer (pgbench, "
            "`-M extended`: unnamed statements, as the function sends them), directly against the replica, "
            "and with the function's `/healthz` (no database work).")
        pg = {"year": year, "roll_min": lo, "roll_max": hi}
        wrk_args = [f"year={year}", f"roll_min={lo}", f"roll_max={hi}"]
        gport = self.s.ports["get-result"]
        max_direct = self.direct_client_budget()
        rows, cpu_rows, verdict = [], [], {}
        for c in self.s.connections:
            fn = self.run_wrk(gport, c, "point_read.lua", args=wrk_args)
            hz = self.run_wrk(gport, c, path="/healthz")
            pb = self.run_pgbench("point_read.sql", c, self.s.pgbouncer_port, "exam_results_ro", pg)
            dc = min(c, max_direct)
            try:
                dr = self.run_pgbench("point_read.sql", dc, self.s.replica_port, "exam_results", pg)
            except RuntimeError as err:  # e.g. out of connection slots: keep the other numbers
                print(f"pgbench direct with {dc} clients failed: {err}", file=sys.stderr)
                dr = {"rps": float("nan"), "p50_ms": float("nan"), "p99_ms": float("nan"), "errors": dc,
                      "cpu": {}}
            ratio_pb = fn["rps"] / pb["rps"] if pb["rps"] else float("nan")
            ratio_hz = fn["rps"] / hz["rps"] if hz["rps"] else float("nan")
            rows.append([c, "get-result (wrk)", fn["rps"], fn["p50_ms"], fn["p99_ms"], fn["errors"],
                         ratio(fn["rps"], pb["rps"]), ratio(fn["rps"], hz["rps"])])
            rows.append([c, "get-result /healthz (wrk)", hz["rps"], hz["p50_ms"], hz["p99_ms"], hz["errors"],
                         None, None])
            rows.append([c, "pgbench -> PgBouncer -> replica", pb["rps"], pb["p50_ms"], pb["p99_ms"],
                         pb["errors"], None, None])
            rows.append([dc, "pgbench -> replica" + (f" ({dc} clients: max_connections)" if dc < c else ""),
                         dr["rps"], dr["p50_ms"], dr["p99_ms"], dr["errors"], None, None])
            for label, res in (("get-result", fn), ("/healthz", hz), ("pgbench PgBouncer", pb),
                               ("pgbench direct", dr)):
                cpu_rows.append([c, label] + cpu_row(res["cpu"], self.cpu_columns) + [cpu_per_request(res)])
            self.results.setdefault("point", []).append(
                {"connections": c, "function": fn, "healthz": hz, "pgbouncer": pb, "direct": dr,
                 "ratio_pgbouncer": ratio_pb, "ratio_healthz": ratio_hz})
            if c == 64:
                verdict = {"ratio": ratio_pb, "p99": fn["p99_ms"]}
        r.t(["clients", "target", "requests/s", "p50 ms", "p99 ms", "errors", "ratio to pgbench via PgBouncer",
             "ratio to /healthz"], rows)
        r.p("CPU during each run (cores, of %d):" % (os.cpu_count() or 1))
        r.t(["clients", "run"] + self.cpu_columns + ["path CPU µs per request"], cpu_rows)
        r.p("\"postgres replica\" is the replica's client backends (the benchmark's queries); \"background\" "
            "is its postmaster, WAL replay and other background processes, which also work for whatever else "
            "writes to the primary. \"path CPU µs per request\" = cores used by the processes on the request's "
            "path (load generator, function, PgBouncer, replica backends) divided by the request rate: what one "
            "request costs the machine end to end; on this machine the sum of those costs, not any single "
            "process, sets the ceiling.")
        if verdict:
            ok_ratio = verdict["ratio"] >= 0.7
            ok_p99 = verdict["p99"] < 10
            r.p(f"**At 64 connections:** ratio to pgbench-through-PgBouncer {verdict['ratio']:.2f} "
                f"({'meets' if ok_ratio else 'below'} the 0.7 goal), p99 {verdict['p99']:.1f} ms "
                f"({'meets' if ok_p99 else 'above'} the 10 ms goal).")
            self.results["verdict64"] = {**verdict, "ratio_ok": ok_ratio, "p99_ok": ok_p99}

    def direct_client_budget(self) -> int:
        """Clients pgbench may open directly on the replica without running it out of slots.

        Free slots now, minus what PgBouncer may still open to the replica
        (its pool plus reserve, less what it holds now), minus a margin for
        everything else.
        """
        out = self.psql("SELECT current_setting('max_connections')::int - "
                        "current_setting('superuser_reserved_connections')::int - count(*) FROM pg_stat_activity",
                        self.s.replica_port, "exam_results")
        free = int(out.strip())
        pgb_max, pgb_now = 50, 0
        try:
            config = {}
            for line in self.psql("SHOW CONFIG", self.s.pgbouncer_port, "pgbouncer").splitlines():
                cols = line.split("|")
                if len(cols) >= 2:
                    config[cols[0]] = cols[1]
            pgb_max = int(config.get("default_pool_size", 40)) + int(config.get("reserve_pool_size", 10))
            for line in self.psql("SHOW POOLS", self.s.pgbouncer_port, "pgbouncer").splitlines():
                cols = line.split("|")
                if cols and cols[0] == "exam_results_ro":
                    # database|user|cl_active|cl_waiting|cl_active_cancel_req|cl_waiting_cancel_req|
                    # sv_active|sv_active_cancel|sv_being_canceled|sv_idle|sv_used|sv_tested|sv_login|...
                    pgb_now += sum(int(c) for c in cols[6:13] if c.isdigit())
        except (RuntimeError, ValueError):
            pass
        return max(1, free - max(0, pgb_max - pgb_now) - 20)

    def mixed(self, year: int, lo: int, hi: int) -> None:
        r = self.report
        r.h("Mixed 10:1 reads to writes")
        reads_c = 60
        base = next((p["function"]["rps"] for p in self.results.get("point", []) if p["connections"] == 64), None)
        if base is None:
            base = self.run_wrk(self.s.ports["get-result"], 64, "point_read.lua",
                                args=[f"year={year}", f"roll_min={lo}", f"roll_max={hi}"])["rps"]
        # Writes are paced (wrk's delay()): 4 connections each for update and
        # create, each connection waiting pace_ms between requests, aiming at
        # one write per ten reads of the read rate measured alone (the pause
        # is 80% of the interval: the write itself takes the rest).
        write_c = 4
        write_rate = base / 10.0
        per_conn = write_rate / (2 * write_c)
        pace_ms = max(1, int(0.8 * 1000.0 / per_conn)) if per_conn > 0 else 1000
        self.bench_rows(year, create=True)
        token = self.secrets["WRITE_TOKEN"]
        d = self.s.duration
        rd_args = [f"year={year}", f"roll_min={lo}", f"roll_max={hi}"]
        up_args = [f"year={year}", f"roll_min={BENCH_ROLL_BASE + 1}", f"roll_max={BENCH_ROLL_BASE + BENCH_UPDATE_ROWS}",
                   f"token={token}", f"pace_ms={pace_ms}"]
        cr_args = [f"year={year}", f"base={BENCH_ROLL_BASE + 100_000_000}", f"token={token}", f"pace_ms={pace_ms}"]
        try:
            outputs, cpu = self.measure(lambda: [
                self.wrk(self.s.ports["get-result"], reads_c, d, "point_read.lua", args=rd_args),
                self.wrk(self.s.ports["update-result"], write_c, d, "update.lua", args=up_args, threads=1),
                self.wrk(self.s.ports["create-result"], write_c, d, "create.lua", args=cr_args, threads=1),
            ], d)
        finally:
            self.bench_rows(year, create=False)
        parsed = []
        for _, out, rc in outputs:
            if rc != 0:
                raise RuntimeError(f"wrk failed:\n{out}")
            parsed.append(parse_wrk(out))
        reads, updates, creates = parsed
        writes = updates["requests"] + creates["requests"]
        ratio = reads["requests"] / writes if writes else float("inf")
        r.p(f"{reads_c} connections reading (get-result, random existing rolls) while update-result (PUT, "
            f"{BENCH_UPDATE_ROWS:,} rows of the benchmark's own) and create-result (POST, new rows) each get {write_c} "
            f"connections paced at {pace_ms} ms between requests, aiming at one write per ten reads of the "
            f"read rate measured alone ({base:,.0f}/s). Writes carry `Authorization: Bearer $WRITE_TOKEN`. "
            "The benchmark's rows (roll numbers from 500000000001) are deleted afterwards.")
        r.t(["stream", "connections", "requests/s", "p50 ms", "p99 ms", "errors"], [
            ["reads: get-result", reads_c, reads["rps"], reads["p50_ms"], reads["p99_ms"], reads["errors"]],
            ["writes: update-result", write_c, updates["rps"], updates["p50_ms"], updates["p99_ms"], updates["errors"]],
            ["writes: create-result", write_c, creates["rps"], creates["p50_ms"], creates["p99_ms"], creates["errors"]],
        ])
        r.p(f"Achieved read:write ratio {ratio:.1f}:1.")
        r.t(["run"] + self.cpu_columns + ["update-result", "create-result"],
            [["mixed"] + cpu_row(cpu, self.cpu_columns) + [cpu.get("update-result", 0.0), cpu.get("create-result", 0.0)]])
        self.results["mixed"] = {"reads": reads, "updates": updates, "creates": creates, "ratio": ratio, "cpu": cpu}

    def listing(self, year: int, lo: int, hi: int) -> None:
        r = self.report
        r.h("Listing: keyset pages of 100")
        lport = self.s.ports["list-results"]
        c = 16
        args = [f"year={year}", f"roll_min={lo}", f"roll_max={hi}", "limit=100"]
        fn = self.run_wrk(lport, c, "list_page.lua", args=args)
        pb = self.run_pgbench("list_page.sql", c, self.s.pgbouncer_port, "exam_results_ro",
                              {"year": year, "roll_min": lo, "pages": (hi - lo + 1) // 100, "lim": 101})
        # One client walking the whole year, following next_after.
        conn = http.client.HTTPConnection("127.0.0.1", lport, timeout=10)
        after, pages, rows, lat = 0, 0, 0, []
        t0 = time.perf_counter()
        while True:
            t = time.perf_counter()
            conn.request("GET", f"/results?exam_year={year}&after={after}&limit=100")
            resp = conn.getresponse()
            body = resp.read()
            lat.append((time.perf_counter() - t) * 1000)
            if resp.status != 200:
                raise RuntimeError(f"list page after {after}: {resp.status} {body[:200]!r}")
            page = json.loads(body)
            pages += 1
            rows += len(page["items"])
            if page["next_after"] is None:
                break
            after = page["next_after"]
        walk_s = time.perf_counter() - t0
        conn.close()
        expected = int(self.psql(f"SELECT count(*) FROM student_results WHERE exam_year = {year}",
                                 self.s.pgbouncer_port, "exam_results_ro").strip())
        r.p(f"Random pages of {year} (`after` = the last roll of a random earlier page, `limit=100`; the "
            f"function fetches 101 rows to know whether another page follows, pgbench runs the same "
            f"`LIMIT 101`), {c} clients; then one client walking all of {year} from the start by `next_after`.")
        r.t(["target", "clients", "pages/s", "rows/s", "p50 ms", "p99 ms", "errors", "ratio to pgbench via PgBouncer"], [
            ["list-results (wrk)", c, fn["rps"], fn["rps"] * 100, fn["p50_ms"], fn["p99_ms"], fn["errors"],
             ratio(fn["rps"], pb["rps"])],
            ["pgbench -> PgBouncer -> replica", c, pb["rps"], pb["rps"] * 100, pb["p50_ms"], pb["p99_ms"],
             pb["errors"], None],
        ])
        r.t(["whole-year walk", "pages", "rows", "rows in the year", "seconds", "page p50 ms", "page p99 ms"], [
            [f"{year}, one client, keep-alive", pages, rows, expected, walk_s, percentile(lat, 50),
             percentile(lat, 99)],
        ])
        if rows != expected:
            r.p(f"**The walk returned {rows} rows but the year holds {expected}** (rows written during the walk?).")
        r.t(["run"] + self.cpu_columns + ["list-results"], [
            ["list-results"] + cpu_row(fn["cpu"], self.cpu_columns) + [fn["cpu"].get("list-results", 0.0)],
            ["pgbench"] + cpu_row(pb["cpu"], self.cpu_columns) + [pb["cpu"].get("list-results", 0.0)],
        ])
        self.results["list"] = {"function": fn, "pgbouncer": pb, "walk": {"pages": pages, "rows": rows,
                                "expected": expected, "seconds": walk_s, "p50_ms": percentile(lat, 50),
                                "p99_ms": percentile(lat, 99)}}

    def sweep_one(self, name: str, pool: int, concurrency: list[int], script: str, args: list[str],
                  log_level: str = "info", passes: int = 2) -> list[dict]:
        """wrk against one own process at each concurrency.

        `passes` runs go up and then down the list; each point keeps the
        pass with the higher throughput (other work on the machine can only
        take throughput away, so the better pass is the less disturbed one).
        """
        proc, port = self.start_function(name, pool, log_level)
        best: dict[int, dict] = {}
        try:
            http_get(port, "/healthz")
            idle = rss_kib(proc.pid)
            order = []
            for n in range(passes):
                order += [(n, c) for c in (concurrency if n % 2 == 0 else list(reversed(concurrency)))]
            first_rss: dict[int, int] = {}
            for n, c in order:
                peak = {"rss": 0}

                def sample():
                    peak["rss"] = max(peak["rss"], rss_kib(proc.pid).get("VmRSS", 0))

                res = self.run_wrk(port, c, script, args=args, sampler=sample, duration=self.s.sweep_duration)
                if n == 0:  # RSS never shrinks back: the ascending pass is the one that shows growth
                    first_rss[c] = peak["rss"]
                res.update(concurrency=c, pool=pool, rss_kib=first_rss[c], idle_rss_kib=idle.get("VmRSS", 0),
                           function_cpu=res["cpu"].get(name, 0.0), passes=passes)
                if c in best:
                    res["other_pass_rps"] = best[c]["rps"]
                if c not in best or res["rps"] > best[c]["rps"]:
                    best[c] = res
                else:
                    best[c]["other_pass_rps"] = res["rps"]
            hwm = rss_kib(proc.pid).get("VmHWM", 0)
        finally:
            self.stop(proc)
        points = [best[c] for c in concurrency]
        for p in points:
            p["hwm_kib"] = hwm
        return points

    def sweep(self, year: int, lo: int, hi: int) -> None:
        r = self.report
        r.h("Per-instance capacity (for Knative)")
        read_args = [f"year={year}", f"roll_min={lo}", f"roll_max={hi}"]
        r.p("One get-result process of the benchmark's own (release binary, started on a free port with "
            "`.ci/stack.sh env get-result PORT`, its own pool), same PgBouncer and replica. First the pool "
            f"size at 64 in flight, then in-flight concurrency (wrk connections) with the chosen pool; "
            f"{self.s.sweep_duration:g} s per point.")
        pool_points = []
        for pool in self.s.pools:
            pool_points.extend(self.sweep_one("get-result", pool, [64], "point_read.lua", read_args, passes=1))
        # second pass in reverse order, keeping the better of the two per pool size
        for i, pool in enumerate(reversed(self.s.pools)):
            again = self.sweep_one("get-result", pool, [64], "point_read.lua", read_args, passes=1)[0]
            k = len(self.s.pools) - 1 - i
            if again["rps"] > pool_points[k]["rps"]:
                again["other_pass_rps"] = pool_points[k]["rps"]
                pool_points[k] = again
            else:
                pool_points[k]["other_pass_rps"] = again["rps"]
        bp = best_pool(pool_points)
        r.p(f"Each point is run twice (up the list, then down) and the pass with the higher throughput is "
            f"shown (\"other pass\" gives the other one's requests/s): work by other processes on the machine only "
            f"takes throughput away.")
        r.t(["pool size", "in flight", "requests/s", "other pass", "p50 ms", "p99 ms", "errors", "get-result CPU",
             "other CPU"],
            [[p["pool"], 64, p["rps"], p.get("other_pass_rps"), p["p50_ms"], p["p99_ms"], p["errors"],
              p["function_cpu"], p["cpu"]["other"]] for p in pool_points])
        r.p(f"Smallest pool within 10% of the best throughput (closer than that is within the run-to-run noise "
            f"here): **{bp['pool']}**.")
        points = self.sweep_one("get-result", bp["pool"], self.s.sweep, "point_read.lua", read_args)
        r.t(["in flight", "requests/s", "other pass", "p50 ms", "p99 ms", "errors", "RSS MiB", "get-result CPU",
             "pgbouncer CPU", "replica CPU", "wrk CPU", "other CPU"],
            [[p["concurrency"], p["rps"], p.get("other_pass_rps"), p["p50_ms"], p["p99_ms"], p["errors"],
              p["rss_kib"] / 1024, p["function_cpu"], p["cpu"].get("pgbouncer", 0.0),
              p["cpu"].get("postgres replica", 0.0), p["cpu"].get("load generator", 0.0), p["cpu"]["other"]]
             for p in points])
        rec_get = recommend(points, p99_budget_ms=50.0)
        self.results["sweep"] = {"pools": pool_points, "get-result": points, "best_pool": bp["pool"],
                                 "recommend": {"get-result": rec_get}}

        recs = [("get-result", rec_get, bp["pool"])]
        if not self.s.quick:
            small = [c for c in self.s.sweep if c <= 64]
            lpoints = self.sweep_one("list-results", bp["pool"], small, "list_page.lua", read_args + ["limit=100"])
            rec_list = recommend(lpoints, p99_budget_ms=100.0)
            self.bench_rows(year, create=True)
            try:
                wpoints = self.sweep_one("update-result", bp["pool"], [c for c in self.s.sweep if c <= 32],
                                         "update.lua", [f"year={year}", f"roll_min={BENCH_ROLL_BASE + 1}",
                                                        f"roll_max={BENCH_ROLL_BASE + BENCH_UPDATE_ROWS}",
                                                        f"token={self.secrets['WRITE_TOKEN']}", "pace_ms=0"])
            finally:
                self.bench_rows(year, create=False)
            rec_write = recommend(wpoints, p99_budget_ms=100.0)
            for label, pts in (("list-results (pages of 100)", lpoints), ("update-result (PUT)", wpoints)):
                r.p(f"{label}, pool {bp['pool']}:")
                r.t(["in flight", "requests/s", "other pass", "p50 ms", "p99 ms", "errors", "function CPU",
                     "replica CPU", "primary CPU", "other CPU"],
                    [[p["concurrency"], p["rps"], p.get("other_pass_rps"), p["p50_ms"], p["p99_ms"], p["errors"],
                      p["function_cpu"], p["cpu"].get("postgres replica", 0.0),
                      p["cpu"].get("postgres primary", 0.0), p["cpu"]["other"]] for p in pts])
            recs += [("list-results", rec_list, bp["pool"]), ("update-result", rec_write, bp["pool"])]
            self.results["sweep"].update({"list-results": lpoints, "update-result": wpoints})
            self.results["sweep"]["recommend"].update({"list-results": rec_list, "update-result": rec_write})

        r.h("Recommended Knative settings per function", 3)
        r.p("Rule (computed, not chosen by hand): **target** = the knee, the smallest in-flight count that "
            "reaches 90% of the process's peak throughput (beyond it requests only queue inside the pod); "
            "**containerConcurrency** = the largest swept in-flight count still at ≥90% of peak with p99 within "
            "the budget (50 ms reads, 100 ms pages and writes) and no errors, at least 2 × target; **pool size** = "
            "the smallest pool within 10% of the best at 64 in flight. create-result and delete-result have "
            "update-result's shape (one single-row statement on the primary) and take its numbers. "
            "`targetUtilizationPercentage` 70 (Knative's default) starts new pods at 0.7 × target.")
        rows = []
        for name, rec, pool in recs:
            rows.append([name, rec["knee"], rec["knee_rps"], rec["knee_p99_ms"], rec["peak_rps"], rec["target"],
                         rec["container_concurrency"], pool])
        r.t(["function", "knee (in flight)", "requests/s at knee", "p99 ms at knee", "peak requests/s",
             "target", "containerConcurrency", "pool size"], rows)

    def cold_start(self, year: int, lo: int) -> None:
        r = self.report
        r.h("Cold start and footprint")
        token = self.secrets["WRITE_TOKEN"]
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.bench_rows(year, create=True)
        counter = {"n": 0}

        def first_request(name: str, port: int) -> tuple[int, bytes]:
            counter["n"] += 1
            n = counter["n"]
            if name == "get-result":
                return http_get(port, f"/results/{year}/{lo + n}")
            if name == "list-results":
                return http_get(port, f"/results?exam_year={year}&limit=100")
            if name == "update-result":
                return http_get(port, f"/results/{year}/{BENCH_ROLL_BASE + n}", "PUT", '{"marks": 50}', auth)
            if name == "create-result":
                return http_get(port, "/results", "POST", json.dumps(
                    {"roll_number": BENCH_ROLL_BASE + 200_000_000 + n, "exam_year": year, "marks": 1}), auth)
            return http_get(port, f"/results/{year}/{BENCH_ROLL_BASE + BENCH_UPDATE_ROWS - n}", "DELETE", None, auth)

        rows, sizes = [], []
        try:
            for name in FUNCTIONS:
                binary = self.binary(name)
                ready, served, rss = [], [], []
                for _ in range(self.s.cold_runs):
                    port = free_port_pair()
                    env = self.function_env(name, port, 8)
                    t0 = time.perf_counter()
                    proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
                    self.children.append(proc)
                    try:
                        t_ready = None
                        while time.perf_counter() - t0 < 10:
                            try:
                                if http_get(port, "/readyz", timeout=2)[0] == 200:
                                    t_ready = time.perf_counter()
                                    break
                            except OSError:
                                pass
                            time.sleep(0.001)
                        if t_ready is None:
                            raise RuntimeError(f"{name} not ready within 10 s")
                        status, body = first_request(name, port)
                        t_served = time.perf_counter()
                        if status not in (200, 201, 204):
                            raise RuntimeError(f"{name} first request: {status} {body[:200]!r}")
                        ready.append((t_ready - t0) * 1000)
                        served.append((t_served - t0) * 1000)
                        rss.append(rss_kib(proc.pid).get("VmRSS", 0))
                    finally:
                        self.stop(proc)
                rows.append([name, len(ready), statistics.median(ready), max(ready), statistics.median(served),
                             max(served), statistics.median(rss) / 1024])
                sizes.append([name, binary.stat().st_size / 1048576])
        finally:
            self.bench_rows(year, create=False)
        r.p(f"Process exec (Popen) to the first 200 from `/readyz` (polled every millisecond; readiness runs "
            f"`SELECT 1` through PgBouncer, so it includes the first pooled connection and SCRAM login) and to "
            f"the first served request (get-result: a point read; list-results: a page; writes: one PUT, POST "
            f"or DELETE of the benchmark's own rows), {self.s.cold_runs} runs each, pool size 8. "
            f"RSS right after that first request.")
        r.t(["function", "runs", "to /readyz median ms", "max ms", "to first request median ms", "max ms",
             "RSS after first request MiB"], rows)
        rss_rows = []
        for name in ("get-result", "list-results", "update-result"):
            sweep = self.results.get("sweep", {}).get(name)
            if sweep:
                under = max(sweep, key=lambda p: p["rss_kib"])
                rss_rows.append([name, sweep[0]["idle_rss_kib"] / 1024, under["rss_kib"] / 1024,
                                 under["concurrency"], under["hwm_kib"] / 1024])
        if rss_rows:
            r.p("RSS under load (the capacity sweeps above; sampled every 250 ms from /proc/PID/status):")
            r.t(["function", "idle RSS MiB", "highest sampled RSS MiB", "at in flight", "peak (VmHWM) MiB"],
                rss_rows)
        r.t(["release binary (stripped)", "size MiB"], sizes)
        self.results["cold"] = {"rows": rows, "sizes": sizes}

    def profile(self, year: int, lo: int, hi: int) -> None:
        """Where the time goes at 64 connections (issue item 3)."""
        r = self.report
        r.h("Where the time goes at 64 connections")
        args = [f"year={year}", f"roll_min={lo}", f"roll_max={hi}"]
        pool = self.results.get("sweep", {}).get("best_pool") or 16
        rows = []
        configs = (("stack settings (pool 16, LOG_LEVEL=info)", 16, "info", {}),
                   ("pool 16, LOG_LEVEL=warn (no per-request log line)", 16, "warn", {}),
                   ("pool 16, TOKIO_WORKER_THREADS=1", 16, "info", {"TOKIO_WORKER_THREADS": "1"}),
                   ("pool 64, LOG_LEVEL=info", 64, "info", {}))
        for label, pool_size, level, extra in configs:
            proc, port = self.start_function("get-result", pool_size, level, extra)
            try:
                m0, b0 = self.scrape(port + 1000), self.pgbouncer_stats("exam_results_ro")
                res = self.run_wrk(port, 64, "point_read.lua", args=args)
                m1, b1 = self.scrape(port + 1000), self.pgbouncer_stats("exam_results_ro")
            finally:
                self.stop(proc)

            def delta(name, **labels):
                return self.metric_sum(m1, name, **labels) - self.metric_sum(m0, name, **labels)

            n_http = delta("http_server_request_duration_seconds_count", http_route="/results/{exam_year}/{roll_number}")
            http_s = delta("http_server_request_duration_seconds_sum", http_route="/results/{exam_year}/{roll_number}")
            n_q = delta("exam_results_db_query_duration_seconds_count", operation="select_result")
            q_s = delta("exam_results_db_query_duration_seconds_sum", operation="select_result")
            n_w = delta("exam_results_db_pool_wait_duration_seconds_count")
            w_s = delta("exam_results_db_pool_wait_duration_seconds_sum")
            bq = b1.get("total_query_count", 0) - b0.get("total_query_count", 0)
            bx = b1.get("total_xact_count", 0) - b0.get("total_xact_count", 0)
            bqt = b1.get("total_query_time", 0) - b0.get("total_query_time", 0)
            bwt = b1.get("total_wait_time", 0) - b0.get("total_wait_time", 0)
            rows.append([label, res["rps"], res["p50_ms"], res["p99_ms"], res["errors"],
                         bq / n_http if n_http else None,
                         http_s / n_http * 1000 if n_http else None,
                         w_s / n_w * 1000 if n_w else None,
                         q_s / n_q * 1000 if n_q else None,
                         bqt / bq / 1000 if bq else None,
                         bwt / bx / 1000 if bx else None,
                         res["cpu"].get("get-result", 0.0) / res["rps"] * 1e6 if res["rps"] else None,
                         res["cpu"].get("get-result", 0.0), res["cpu"].get("pgbouncer", 0.0),
                         res["cpu"].get("postgres replica", 0.0), res["cpu"].get("load generator", 0.0)])
            self.results.setdefault("profile", []).append({"label": label, "wrk": res, "http": n_http,
                                                           "pgbouncer_queries": bq, "pgbouncer_xacts": bx})
        r.p("One get-result process of our own at 64 wrk connections, four configurations. Round trips: "
            "PgBouncer's `SHOW STATS` query count for `exam_results_ro` over the run divided by the function's "
            "request count (other clients of the replica pool, e.g. the stack's lag probes, add a little). Times "
            "per request from the function's own histograms (`/metrics`: HTTP duration, pool wait, query) and "
            "from PgBouncer (query time = server-side time of a query as PgBouncer sees it; wait = time clients "
            "waited for a server connection).")
        r.t(["configuration", "requests/s", "p50 ms", "p99 ms", "errors", "queries per request",
             "function: request ms", "function: pool wait ms", "function: query ms", "PgBouncer: query ms",
             "PgBouncer: client wait ms", "get-result CPU µs per request", "get-result CPU", "pgbouncer CPU", "replica CPU", "wrk CPU"], rows)
        if shutil.which("strace"):
            self.syscalls(args)
        if self.s.perf and shutil.which("perf"):
            self.perf_profile(args)

    def syscalls(self, args: list[str]) -> None:
        """System calls per request of get-result (strace -c), the round trips at the socket level."""
        r = self.report
        proc, port = self.start_function("get-result", 16)
        out = self.tmp / "strace.txt"
        try:
            load = self.wrk(port, 16, self.s.duration, "point_read.lua", args=args)
            time.sleep(min(1.0, self.s.duration / 4))
            m0 = self.scrape(port + 1000)
            tracer = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(proc.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(max(1.0, self.s.duration / 3))
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
            m1 = self.scrape(port + 1000)
            load.communicate()
        finally:
            self.stop(proc)
        # requests counted around the trace window (the trace is inside it)
        n = (self.metric_sum(m1, "http_server_request_duration_seconds_count")
             - self.metric_sum(m0, "http_server_request_duration_seconds_count") - 1)
        rows = []
        if out.exists() and n > 0:
            for line in out.read_text().splitlines():
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)$", line)
                if m and m.group(3) != "total":
                    rows.append([m.group(3), int(m.group(1)) / n, (int(m.group(2)) / n) if m.group(2) else 0.0])
        if not rows:
            r.p("strace produced no counts here.")
            return
        rows.sort(key=lambda row: -row[1])
        r.p(f"System calls of get-result per request (`strace -f -c` attached for a part of a 16-connection run; "
            f"{n:,.0f} requests counted from its own metrics around the trace). Strace slows the process; the "
            "counts per request are what matters:")
        r.t(["system call", "calls per request", "failed per request"], [row for row in rows if row[1] >= 0.01])
        self.results["syscalls"] = {"requests": n, "rows": rows}

    def perf_profile(self, args: list[str]) -> None:
        r = self.report
        proc, port = self.start_function("get-result", 16)
        data = self.tmp / "perf.data"
        try:
            load = self.wrk(port, 64, self.s.duration, "point_read.lua", args=args)
            time.sleep(0.5)
            rec = subprocess.run(["perf", "record", "-F", "997", "-g", "-o", str(data), "-p", str(proc.pid), "--",
                                  "sleep", str(max(1.0, self.s.duration - 1.5))], capture_output=True, text=True)
            load.communicate()
        finally:
            self.stop(proc)
        if rec.returncode != 0 or not data.exists():
            r.p(f"perf could not record here: {rec.stderr.strip()[-300:]}")
            return
        samples = re.search(r"\((\d+) samples\)", rec.stderr)
        r.p(f"perf: {samples.group(1) if samples else '?'} samples.")
        rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso",
                              "-g", "none", "--percent-limit", "1"], capture_output=True, text=True)
        sym = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "sym",
                              "-g", "none", "--percent-limit", "1.5"], capture_output=True, text=True)

        def rows_of(text: str) -> list[list]:
            out = []
            for line in text.splitlines():
                m = re.match(r"\s+([\d.]+)%\s+(.+)$", line)
                if m:
                    out.append([float(m.group(1)), m.group(2).strip()])
            return out[:15]

        r.p("`perf record -F 997 -g` of that get-result process (stack settings) under 64 connections; "
            "on-CPU samples by shared object and by symbol (the release binary is stripped, so its own code "
            "shows as addresses; kernel symbols show the system calls):")
        r.t(["% of samples", "shared object"], rows_of(rep.stdout))
        r.t(["% of samples", "symbol"], rows_of(sym.stdout))

    # ---- growth and bulk load

    def growth(self) -> None:
        r = self.report
        r.h("Data growth and bulk load (scratch database)")
        rows_list = sorted(self.s.growth_rows)
        if not rows_list:
            r.p("Skipped (quick mode; set BENCH_GROWTH_ROWS, e.g. `BENCH_GROWTH_ROWS=\"1000000 10000000\"`).")
            return
        need = max(rows_list) * 300  # table + index + WAL on the primary, again on the replica
        free = shutil.disk_usage(self.s.state_dir).free
        if free < need:
            r.p(f"Skipped: {free / 1e9:.1f} GB free, about {need / 1e9:.1f} GB needed for {max(rows_list):,} rows.")
            return
        P = self.s.primary_port
        self.psql(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)", P, "postgres", superuser=True)
        self.psql(f"CREATE DATABASE {SCRATCH_DB} OWNER exam_app", P, "postgres", superuser=True)
        opts = "-c statement_timeout=0 -c client_min_messages=warning"
        seed_rows, copy_rows, growth_rows, plan_rows = [], [], [], []
        try:
            for f in sorted((ROOT / "sql" / "migrations").glob("*.sql")):
                self.psql("", P, SCRATCH_DB, options=opts, file=f)
            years = 5
            first_year = 2021
            year = first_year + years - 1
            for n in rows_list:
                self.psql("TRUNCATE student_results", P, SCRATCH_DB, options=opts)
                t0 = time.perf_counter()
                out = self.psql("", P, SCRATCH_DB, options=opts, file=ROOT / "sql" / "seed.sql",
                                variables={"rows": n, "first_year": first_year, "years": years})
                total = time.perf_counter() - t0
                insert_ms = [float(m) for m in re.findall(r"Time: ([\d.]+) ms", out)]
                ins = insert_ms[0] / 1000 if insert_ms else float("nan")
                size = int(self.psql("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                                     "WHERE inhparent = 'student_results'::regclass", P, SCRATCH_DB).strip())
                seed_rows.append([n, "psql sql/seed.sql (INSERT ... SELECT generate_series)", ins, n / ins,
                                  total, size / 1048576])
                per_year = n // years
                pg = {"year": year, "roll_min": 100000001, "roll_max": 100000000 + per_year}
                res = self.run_pgbench("point_read.sql", 16, P, SCRATCH_DB, pg)
                plan, execute = self.plan_times(P, year, 100000001, 100000000 + per_year)
                nparts = self.partition_count(P)
                growth_rows.append([n, per_year, res["rps"], res["p50_ms"], res["p99_ms"], res["errors"],
                                    statistics.median(plan), percentile(plan, 99), statistics.median(execute)])
                plan_rows.append([n, nparts, statistics.median(plan), percentile(plan, 99)])
            # planning time against partitions in use: one partition per year 2000..2100
            n = rows_list[-1]
            per_year = n // years
            for upto in (2060, 2100):
                self.psql(f"SELECT ensure_exam_year_partition(y) FROM generate_series(2000, {upto}) y", P,
                          SCRATCH_DB, options=opts)
                self.psql("ANALYZE student_results", P, SCRATCH_DB, options=opts)
                plan, _ = self.plan_times(P, year, 100000001, 100000000 + per_year)
                plan_rows.append([n, self.partition_count(P), statistics.median(plan), percentile(plan, 99)])
            during = self.reads_during_bulk_load(P, opts, first_year, years)
            # COPY: the same rows from a CSV file, client-side \copy (what a bulk load job does)
            for n in rows_list:
                csv = self.tmp / f"rows-{n}.csv"
                self.psql(f"\\copy (SELECT 100000000 + ((n - 1) / {years}) + 1, {first_year} + ((n - 1) % {years}), "
                          f"floor(random() * 101)::int FROM generate_series(1, {n}) n) TO '{csv}' WITH (FORMAT csv)",
                          P, SCRATCH_DB, options=opts)
                self.psql("TRUNCATE student_results", P, SCRATCH_DB, options=opts)
                t0 = time.perf_counter()
                self.psql(f"\\copy student_results (roll_number, exam_year, marks) FROM '{csv}' WITH (FORMAT csv)",
                          P, SCRATCH_DB, options=opts)
                copy_s = time.perf_counter() - t0
                t1 = time.perf_counter()
                self.psql("ANALYZE student_results", P, SCRATCH_DB, options=opts)
                analyze_s = time.perf_counter() - t1
                size = int(self.psql("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                                     "WHERE inhparent = 'student_results'::regclass", P, SCRATCH_DB).strip())
                copy_rows.append([n, f"psql \\copy from CSV ({csv.stat().st_size / 1048576:,.0f} MiB)", copy_s,
                                  n / copy_s, copy_s + analyze_s, size / 1048576])
                csv.unlink()
        finally:
            self.psql(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)", P, "postgres", superuser=True)
        r.p(f"In a scratch database `{SCRATCH_DB}` on the primary (created from sql/migrations, dropped afterwards; "
            "the stack's 1M rows are not touched; the primary streams the load to the replica as usual). Rows "
            "spread over 5 years like the seed. Point reads: pgbench, 16 clients, directly on the primary "
            "(PgBouncer only knows the stack's databases), random existing rolls of the newest year; planning "
            "and execution time from `EXPLAIN (ANALYZE, SUMMARY)` of the same query, 200 random rolls.")
        r.t(["rows", "rows per year", "reads/s", "p50 ms", "p99 ms", "errors", "planning median ms",
             "planning p99 ms", "execution median ms"], growth_rows)
        r.p("Planning time against partitions in use (`ensure_exam_year_partition` for more years; the "
            "query names one year, so the planner prunes to one partition):")
        r.t(["rows", "partitions", "planning median ms", "planning p99 ms"], plan_rows)
        r.p("Bulk load into an empty table (indexes in place, as in production), seconds; \"total\" "
            "includes `ANALYZE`:")
        r.t(["rows", "method", "load seconds", "rows/s", "total seconds", "table+index MiB"], seed_rows + copy_rows)
        self.results["growth"] = {"growth": growth_rows, "plan": plan_rows, "seed": seed_rows, "copy": copy_rows,
                                  "during": during}
        if during:
            r.p(f"Results-day reads during a bulk load: `sql/seed.sql` loads {during['rows']:,} rows into the scratch "
                f"database on the primary (one transaction, {during['load_seconds']:.0f} s here) while an own get-result "
                f"process with `MAX_REPLICA_LAG_SECONDS={during['limit']}` serves point reads (16 connections, "
                f"{during['seconds']:g} s, starting {during['lead']:g} s into the load). \"served by the primary\" = the "
                "share of queries PgBouncer counted on `exam_results` (the read fallback) rather than "
                "`exam_results_ro`; \"lag reported\" = the function's `exam_results_replica_lag_seconds`, \"replay "
                "lag\" = `pg_stat_replication.replay_lag` on the primary, both sampled every 0.5 s through the load:")
            r.t(["reads/s", "p50 ms", "p99 ms", "errors", "served by the primary", "lag reported by get-result, max s",
                 "replay lag on the primary, max s"],
                [[during["rps"], during["p50_ms"], during["p99_ms"], during["errors"], f"{during['primary_share']:.0%}",
                  during["lag_max"], during["replay_lag_max"]]])
            if not during["load_outlasted_reads"]:
                r.p("(The load finished before the reads did: part of the run saw no bulk load.)")

    def reads_during_bulk_load(self, port: int, opts: str, first_year: int, years: int) -> Optional[dict]:
        """One own get-result under read load while the primary runs one long bulk-load transaction.

        The process runs with MAX_REPLICA_LAG_SECONDS=5 so that a load of
        a few tens of seconds shows what a longer one does with the stack's
        (30 s) or the chart's limit.
        """
        rows, limit, lead = 3_000_000, 5, 8.0
        seeded = self.results["seeded"]
        args = [f"year={seeded['year']}", f"roll_min={seeded['roll_min']}", f"roll_max={seeded['roll_max']}"]
        self.psql("TRUNCATE student_results", port, SCRATCH_DB, options=opts)
        proc, fport = self.start_function("get-result", 16, extra={"MAX_REPLICA_LAG_SECONDS": str(limit)})
        env = self.pg_env()
        env["PGOPTIONS"] = opts
        lags, replay = [], []

        def sample():
            try:
                m = self.scrape(fport + 1000)
                lags.append(self.metric_sum(m, "exam_results_replica_lag_seconds"))
                out = self.psql("SELECT COALESCE(max(EXTRACT(EPOCH FROM replay_lag)), 0) FROM pg_stat_replication",
                                port, "postgres", superuser=True)
                replay.append(float(out.strip() or 0))
            except (OSError, RuntimeError, ValueError):
                pass

        t0 = time.monotonic()
        seed = subprocess.Popen(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", "exam_app",
             "-d", SCRATCH_DB, "-v", f"rows={rows}", "-v", f"first_year={first_year}", "-v", f"years={years}",
             "-f", str(ROOT / "sql" / "seed.sql")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        try:
            while time.monotonic() - t0 < lead and seed.poll() is None:
                sample()
                time.sleep(0.5)
            b0 = {db: self.pgbouncer_stats(db).get("total_query_count", 0) for db in ("exam_results", "exam_results_ro")}
            d = min(self.s.duration, 6)
            res = self.run_wrk(fport, 16, "point_read.lua", args=args, sampler=sample, duration=d)
            b1 = {db: self.pgbouncer_stats(db).get("total_query_count", 0) for db in ("exam_results", "exam_results_ro")}
            still_loading = seed.poll() is None
            while seed.poll() is None:
                sample()
                time.sleep(0.5)
            load_s = time.monotonic() - t0
        finally:
            _, err = seed.communicate()
            self.stop(proc)
        if seed.returncode != 0:
            raise RuntimeError(f"seed during reads failed: {err}")
        rw = b1["exam_results"] - b0["exam_results"]
        ro = b1["exam_results_ro"] - b0["exam_results_ro"]
        return {**res, "rows": rows, "seconds": d, "lead": lead, "limit": limit, "load_seconds": load_s,
                "primary_share": rw / (rw + ro) if rw + ro else 0.0,
                "lag_max": max(lags) if lags else float("nan"), "replay_lag_max": max(replay) if replay else float("nan"),
                "load_outlasted_reads": still_loading}

    def partition_count(self, port: int) -> int:
        return int(self.psql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'student_results'::regclass",
                             port, SCRATCH_DB).strip())

    def plan_times(self, port: int, year: int, lo: int, hi: int, n: int = 200) -> tuple[list[float], list[float]]:
        import random

        rnd = random.Random(42)
        sql = "\n".join(
            f"EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) SELECT roll_number, exam_year, marks FROM student_results "
            f"WHERE exam_year = {year} AND roll_number = {rnd.randint(lo, hi)};" for _ in range(n))
        path = self.tmp / "plan.sql"
        path.write_text(sql)
        out = self.psql("", port, SCRATCH_DB, file=path)
        plan = [float(v) for v in re.findall(r'"Planning Time": ([\d.]+)', out)]
        execute = [float(v) for v in re.findall(r'"Execution Time": ([\d.]+)', out)]
        return plan[1:], execute[1:]  # the first one warms the catalog caches

    def findings(self) -> None:
        """What the numbers above say about the 0.7 / 10 ms goals, computed from them."""
        r = self.report
        point = {p["connections"]: p for p in self.results.get("point", [])}
        at = point.get(64) or (point[max(point)] if point else None)
        if not at:
            return
        r.h("Findings (computed from the tables above)")
        c = at["connections"]
        comps = [("load generator (wrk / pgbench)", "load generator"), ("get-result", "get-result"),
                 ("PgBouncer", "pgbouncer"), ("PostgreSQL replica", "postgres replica")]
        rows, totals = [], {}
        for label, key in comps:
            row = [label]
            for name in ("function", "pgbouncer", "direct"):
                res = at[name]
                row.append(res["cpu"].get(key, 0.0) / res["rps"] * 1e6 if res["rps"] else None)
            rows.append(row)
        for i, name in enumerate(("function", "pgbouncer", "direct")):
            totals[name] = sum(row[i + 1] or 0.0 for row in rows)
        rows.append(["sum", totals["function"], totals["pgbouncer"], totals["direct"]])
        r.p(f"CPU microseconds per request at {c} clients, by process (cores used / requests per second, "
            "from the point-read runs):")
        r.t(["process", "get-result via wrk", "pgbench via PgBouncer", "pgbench direct"], rows)
        busy = {n: at[n]["cpu"]["machine busy"] - at[n]["cpu"]["other"] for n in ("function", "pgbouncer")}
        predicted = totals["pgbouncer"] / totals["function"] if totals["function"] else float("nan")
        lines = [
            f"- Measured ratio get-result / pgbench-through-PgBouncer at {c} clients: "
            f"**{at['ratio_pgbouncer']:.2f}**; the ratio of their CPU costs per request above predicts "
            f"{predicted:.2f}. The machine was {at['function']['cpu']['machine busy']:.2f} and "
            f"{at['pgbouncer']['cpu']['machine busy']:.2f} of {os.cpu_count()} cores busy during the two runs "
            f"(benchmark processes {busy['function']:.2f} and {busy['pgbouncer']:.2f}, everything else "
            f"{at['function']['cpu']['other']:.2f} and {at['pgbouncer']['cpu']['other']:.2f}); where it is "
            "saturated, each path's throughput is the CPU it gets divided by its CPU per request.",
            f"- The same SQL's own p99 at {c} clients: {at['pgbouncer']['p99_ms']:.1f} ms through PgBouncer, "
            f"{at['direct']['p99_ms']:.1f} ms directly; get-result's p99 {at['function']['p99_ms']:.1f} ms. "
            f"With {c} requests always in flight, mean latency = {c} / throughput (Little's law).",
        ]
        pgb = at["pgbouncer"]["cpu"].get("pgbouncer", 0.0)
        groups = {k: v for k, v in at["function"]["cpu"].items() if k not in ("machine busy", "other", "steal")}
        top = max(groups, key=groups.get)
        lines.append(f"- PgBouncer runs on one thread: it used {pgb:.2f} of its one core in the pgbench run at "
                     f"{c} clients and {at['function']['cpu'].get('pgbouncer', 0.0):.2f} in the get-result run ("
                     + ("well below a saturated core" if max(pgb, at['function']['cpu'].get('pgbouncer', 0.0)) < 0.8
                        else "close to a saturated core") +
                     f"). The largest consumer in the get-result run: {top} ({groups[top]:.2f} cores).")
        prof = {p["label"]: p for p in self.results.get("profile", [])}
        base = prof.get("stack settings (pool 16, LOG_LEVEL=info)")
        warn = prof.get("pool 16, LOG_LEVEL=warn (no per-request log line)")
        one = prof.get("pool 16, TOKIO_WORKER_THREADS=1")
        def fn_us(p):
            return p["wrk"]["cpu"].get("get-result", 0.0) / p["wrk"]["rps"] * 1e6 if p["wrk"]["rps"] else float("nan")
        if base and warn:
            lines.append(f"- The per-request JSON log line: get-result used {fn_us(base):.1f} µs CPU per request "
                         f"with LOG_LEVEL=info and {fn_us(warn):.1f} µs with LOG_LEVEL=warn.")
        if base and one:
            lines.append(f"- One tokio worker thread instead of one per core: {fn_us(one):.1f} µs per request "
                         f"({one['wrk']['rps']:,.0f} requests/s against {base['wrk']['rps']:,.0f}).")
        if base:
            lines.append(f"- Queries per HTTP request through PgBouncer: {base['pgbouncer_queries'] / base['http']:.2f} "
                         "(one round trip: Parse/Bind/Execute/Sync in one message).")
        sc = self.results.get("syscalls")
        if sc:
            per = {row[0]: row[1] for row in sc["rows"]}
            total = sum(per.values())
            lines.append(f"- System calls per request: {total:.1f} in all; " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.1) + ".")
        r.p("\n".join(lines))

    # ================================================================== main

    def run(self) -> Path:
        s = self.s
        started = dt.datetime.now(dt.timezone.utc)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        self.check_stack()
        r = self.report
        r.h(f"exam-results benchmark {started.strftime('%Y-%m-%d %H:%M:%S UTC')}", 1)
        r.p(f"`{'BENCH_QUICK=1 ' if s.quick else ''}make bench` (.ci/bench/run.sh); scenarios: "
            f"{', '.join(sorted(s.only))}.")
        self.machine()
        year, lo, hi = self.seeded_range()
        self.results["seeded"] = {"year": year, "roll_min": lo, "roll_max": hi}
        steps = [("point", lambda: self.point_reads(year, lo, hi)),
                 ("mixed", lambda: self.mixed(year, lo, hi)),
                 ("list", lambda: self.listing(year, lo, hi)),
                 ("sweep", lambda: self.sweep(year, lo, hi)),
                 ("cold", lambda: self.cold_start(year, lo)),
                 ("profile", lambda: self.profile(year, lo, hi)),
                 ("growth", self.growth),
                 ("findings", self.findings)]
        timings = []
        self.failed: list[str] = []
        try:
            for name, step in steps:
                if name in s.only or name == "findings":
                    t0 = time.monotonic()
                    try:
                        step()
                    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as err:
                        # one broken scenario should not cost the others' numbers
                        self.failed.append(name)
                        r.p(f"**{name} failed:** `{str(err).strip()[:1500]}`")
                    timings.append([name, time.monotonic() - t0])
        finally:
            self.cleanup()
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
    settings = Settings.from_env()
    bench = Bench(settings)
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.cleanup()
        return 130
    return 1 if getattr(bench, "failed", None) else 0


if __name__ == "__main__":
    sys.exit(main())
