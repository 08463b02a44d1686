"""The running stack from `make up`: psql, secrets, processes of the benchmark's own, metrics."""
from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from .settings import BENCH_ROLL_BASE, BENCH_ROLL_END, BENCH_UPDATE_ROWS, ROOT, Settings


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


def scrape(port: int) -> dict[str, float]:
    """A Prometheus text exposition as {"name{labels}": value}."""
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


def metric_sum(metrics: dict[str, float], name: str, **labels) -> float:
    """The sum of a metric's series whose labels include `labels`."""
    total = 0.0
    for key, value in metrics.items():
        if key.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            total += value
    return total


class Stack:
    """The stack's databases and PgBouncer, and function processes started on free ports."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.secrets = self._read_secrets()
        self.tmp = Path(tempfile.mkdtemp(prefix="exam-bench-"))
        self.children: list[subprocess.Popen] = []

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

    def login(self, port: int, db: str, superuser: bool = False) -> tuple[str, str]:
        """(role, password) the stack's roles allow here: through PgBouncer the
        functions' roles (exam_reader on the read-only database, exam_app on the
        others) and pgbouncer_stats on its console; straight to a server the
        owner, exam_owner (or the superuser when asked)."""
        if superuser:
            return "postgres", self.secrets["POSTGRES_PASSWORD"]
        if port == self.s.pgbouncer_port:
            if db == "pgbouncer":
                return "pgbouncer_stats", self.secrets["PGBOUNCER_STATS_PASSWORD"]
            if db == "exam_results_ro":
                return "exam_reader", self.secrets["EXAM_READER_PASSWORD"]
            return "exam_app", self.secrets["EXAM_APP_PASSWORD"]
        return "exam_owner", self.secrets["EXAM_OWNER_PASSWORD"]

    def pg_env(self, password: str) -> dict:
        env = dict(os.environ)
        env["PGPASSWORD"] = password
        env["PGCONNECT_TIMEOUT"] = "5"
        env.pop("PGOPTIONS", None)
        return env

    def psql(self, sql: str, port: int, db: str, superuser: bool = False, options: str = "",
             variables: Optional[dict] = None, file: Optional[Path] = None) -> str:
        user, password = self.login(port, db, superuser)
        cmd = ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
               "-U", user, "-d", db]
        for k, v in (variables or {}).items():
            cmd += ["-v", f"{k}={v}"]
        cmd += ["-f", str(file)] if file else ["-c", sql]
        env = self.pg_env(password)
        if options:
            env["PGOPTIONS"] = options
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({' '.join(cmd[:12])} ...): {done.stderr.strip()}")
        return done.stdout

    def check(self) -> None:
        for name, port in self.s.ports.items():
            try:
                status, _ = http_get(port, "/readyz")
            except OSError as err:
                raise SystemExit(f"{name} is not answering on 127.0.0.1:{port} ({err}): run `make up` first")
            if status != 200:
                raise SystemExit(f"{name} /readyz answered {status}: is the stack healthy? (`make status`)")
        # One client drives the whole load: the public functions' per-client limit must be off.
        # More requests than the limit's default burst (RATE_LIMIT_BURST, 100) trip it when it is on.
        get_port = self.s.ports.get("get-result")
        if get_port and any(http_get(get_port, "/results/2000/1")[0] == 429 for _ in range(150)):
            raise SystemExit("get-result limits requests per client (RATE_LIMIT_PER_SECOND): restart the stack "
                             "for benchmarks with `RATE_LIMIT_PER_SECOND=0 make up`")
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

    # ---- own function processes

    def function_env(self, name: str, port: int, pool: int, log_level: str = "info",
                     extra: Optional[dict] = None) -> dict:
        # The stack these settings name (its secrets and PgBouncer), whatever this process's environment says.
        stack_env = dict(os.environ, STATE_DIR=str(self.s.state_dir), PGBOUNCER_PORT=str(self.s.pgbouncer_port),
                         DATABASE_POOL_SIZE=str(pool), LOG_LEVEL=log_level)
        out = subprocess.run([str(ROOT / ".ci/stack.sh"), "env", name, str(port)], capture_output=True,
                             text=True, check=True, env=stack_env).stdout
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

    def start_function(self, name: str, pool: int, log_level: str = "info", extra: Optional[dict] = None,
                       binary: Optional[Path] = None, wrapper: tuple[str, ...] = (),
                       ready_within: float = 6.0) -> tuple[subprocess.Popen, int]:
        """A process of the function's (or `binary`, with its environment) on a free port pair, once ready.

        `wrapper` goes before the binary on the command line (e.g. valgrind).
        """
        port = free_port_pair()
        env = self.function_env(name, port, pool, log_level, extra)
        binary = binary or self.binary(name)
        log = open(self.tmp / f"{binary.name}-{port}.log", "ab")
        proc = subprocess.Popen([*wrapper, str(binary)], env=env, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        self.children.append(proc)
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            try:
                if http_get(port, "/readyz", timeout=1)[0] == 200:
                    return proc, port
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"{binary.name} exited with {proc.returncode}; log {log.name}")
            time.sleep(0.02)
        self.stop(proc)
        raise RuntimeError(f"{binary.name} on {port} did not become ready; log {log.name}")

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

