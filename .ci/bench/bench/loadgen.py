"""The load generators, wrk and pgbench: command lines, output parsers, measured runs."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from .cpu import CpuWatch, postmaster_pids
from .settings import LUA_DIR, SQL_DIR
from .stack import Stack
from .stats import percentile


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


class Load:
    """Load runs against the stack, each with the CPU its processes used over the middle of the run."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.s = stack.s

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
        logdir = Path(tempfile.mkdtemp(dir=self.stack.tmp, prefix="pgbench-"))
        user, password = self.stack.login(port, db)
        cmd = ["pgbench", "-n", "-M", "extended", "-c", str(conns), "-j", str(min(2, conns)),
               "-T", str(max(1, round(duration))), "-f", str(SQL_DIR / script), "-l",
               f"--log-prefix={logdir}/tx", "-h", "127.0.0.1", "-p", str(port), "-U", user, db]
        for k, v in defines.items():
            cmd += ["-D", f"{k}={v}"]
        proc = subprocess.Popen(cmd, env=self.stack.pg_env(password), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        return proc, logdir

    def measure(self, start: Callable[[], list], duration: float, warmup: float = 0.5,
                sampler: Optional[Callable[[], None]] = None) -> tuple[list, dict]:
        """Starts load processes, records CPU per group over the middle of the run."""
        watch = CpuWatch(postmaster_pids(self.s.state_dir))
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

