"""What to run, from the environment, and the functions from their manifest."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

import yaml

HERE = Path(__file__).resolve().parent
BENCH_DIR = HERE.parent
ROOT = BENCH_DIR.parents[1]
LUA_DIR = BENCH_DIR / "lua"
SQL_DIR = BENCH_DIR / "sql"
MANIFEST = ROOT / "knative" / "exam-results" / "functions.yaml"
# Roll numbers of the benchmark's own rows (far above the seed's range); the
# driver deletes this range before and after the write scenarios.
BENCH_ROLL_BASE = 500_000_000_000
BENCH_ROLL_END = 599_999_999_999
BENCH_UPDATE_ROWS = 10_000
SCRATCH_DB = "exam_results_bench_scratch"


@dataclasses.dataclass(frozen=True)
class Function:
    """One entry of knative/exam-results/functions.yaml."""

    name: str
    access: str  # read | write
    method: str
    route: str
    port: int  # the local port under `make up` (<NAME>_PORT overrides it)

    @property
    def port_variable(self) -> str:
        return self.name.upper().replace("-", "_") + "_PORT"


def load_functions(path: Path = MANIFEST) -> list[Function]:
    """The functions in the manifest's order."""
    entries = yaml.safe_load(path.read_text())["functions"]
    return [Function(e["name"], e["access"], e["method"], e["route"], int(e["port"])) for e in entries]


FUNCTIONS = load_functions()
NAMES = [f.name for f in FUNCTIONS]


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.replace(",", " ").split()]


@dataclasses.dataclass
class Settings:
    """What to run, from the environment (defaults in brackets)."""

    quick: bool  # BENCH_QUICK=1: the short version (about 3 minutes)
    duration: float  # BENCH_DURATION seconds per load run [6; quick 2]
    sweep_duration: float  # BENCH_SWEEP_DURATION seconds per capacity-sweep point [4; quick 2]
    connections: list[int]  # BENCH_CONNECTIONS point-read client counts [16 64 256; quick 64]
    sweep: list[int]  # BENCH_SWEEP get-result concurrency [1 2 4 .. 512; quick 1 4 16 64 256]
    pools: list[int]  # BENCH_POOLS pool sizes tried at 64 in flight [4 8 16 32 64; quick 8 32]
    cold_runs: int  # BENCH_COLD_RUNS [20; quick 5]
    growth_rows: list[int]  # BENCH_GROWTH_ROWS [1000000 10000000; quick none]
    instr_requests: int  # BENCH_INSTR_REQUESTS requests counted under callgrind per run [2000; quick 500]
    instr_runs: int  # BENCH_INSTR_RUNS callgrind runs per target [2]
    instr_profile: bool  # BENCH_INSTR_PROFILE=1: also get-result's instructions by function (a build with symbols) [0]
    rd_students: int  # BENCH_RD_STUDENTS results-day: students looking up their result [50000; quick 20000]
    rd_repeats: int  # BENCH_RD_REPEATS results-day: lookups per student (student, family, refreshes) [4]
    rd_window: float  # BENCH_RD_WINDOW results-day: seconds after a student's first lookup holding the others [300]
    rd_arrivals: float  # BENCH_RD_ARRIVALS results-day: students arriving per second [100]
    rd_ttls: list[float]  # BENCH_RD_TTLS results-day: cache time to live, real seconds, one cache-on row each [2 60]
    rd_connections: int  # BENCH_RD_CONNECTIONS results-day: wrk connections and pgbench clients [64]
    rd_passes: int  # BENCH_RD_PASSES results-day: passes over the rows, alternating order [2; quick 1]
    rd_pool: int  # BENCH_RD_POOL results-day: the get-result processes' DATABASE_POOL_SIZE [16]
    batch_rows: int  # BENCH_BATCH_ROWS batch: rows per load, HTTP batch and psql \copy alike [100000; quick 20000]
    batch_runs: int  # BENCH_BATCH_RUNS batch: loads of each kind, alternating [3]
    batch_year: int  # BENCH_BATCH_YEAR batch: the scratch exam year (must hold no results) [2098]
    only: set[str]  # BENCH_ONLY comma list of scenarios [all]
    out_dir: Path  # BENCH_OUT [bench-results]
    perf: bool  # BENCH_PERF=0 disables the perf profile [1]
    state_dir: Path  # STATE_DIR [.local]
    pgbouncer_port: int  # PGBOUNCER_PORT [6432]
    primary_port: int  # PRIMARY_PORT [55432]
    replica_port: int  # REPLICA_PORT [55433]
    ports: dict[str, int]  # <NAME>_PORT per function [functions.yaml]

    @classmethod
    def from_env(cls, env: Optional[dict] = None) -> "Settings":
        from .scenarios import NAMES as scenarios  # the scenario modules import this one

        env = dict(os.environ if env is None else env)
        quick = env.get("BENCH_QUICK", "") not in ("", "0", "false", "no")
        known = set(scenarios)
        only = {s.strip() for s in env.get("BENCH_ONLY", "").split(",") if s.strip()} or known
        unknown = only - known
        if unknown:
            raise SystemExit(f"BENCH_ONLY: unknown scenario(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(
            quick=quick,
            duration=float(env.get("BENCH_DURATION", "2" if quick else "6")),
            sweep_duration=float(env.get("BENCH_SWEEP_DURATION", "2" if quick else "4")),
            connections=_ints(env.get("BENCH_CONNECTIONS", "64" if quick else "16 64 256")),
            sweep=_ints(env.get("BENCH_SWEEP", "1 4 16 64 256" if quick else "1 2 4 8 16 32 64 128 256 512")),
            pools=_ints(env.get("BENCH_POOLS", "8 32" if quick else "4 8 16 32 64")),
            cold_runs=int(env.get("BENCH_COLD_RUNS", "5" if quick else "20")),
            growth_rows=_ints(env.get("BENCH_GROWTH_ROWS", "" if quick else "1000000 10000000")),
            instr_requests=int(env.get("BENCH_INSTR_REQUESTS", "500" if quick else "2000")),
            instr_runs=int(env.get("BENCH_INSTR_RUNS", "2")),
            instr_profile=env.get("BENCH_INSTR_PROFILE", "0") not in ("", "0", "false", "no"),
            rd_students=int(env.get("BENCH_RD_STUDENTS", "20000" if quick else "50000")),
            rd_repeats=int(env.get("BENCH_RD_REPEATS", "4")),
            rd_window=float(env.get("BENCH_RD_WINDOW", "300")),
            rd_arrivals=float(env.get("BENCH_RD_ARRIVALS", "100")),
            rd_ttls=[float(v) for v in env.get("BENCH_RD_TTLS", "2 60").replace(",", " ").split()],
            rd_connections=int(env.get("BENCH_RD_CONNECTIONS", "64")),
            rd_passes=int(env.get("BENCH_RD_PASSES", "1" if quick else "2")),
            rd_pool=int(env.get("BENCH_RD_POOL", "16")),
            batch_rows=int(env.get("BENCH_BATCH_ROWS", "20000" if quick else "100000")),
            batch_runs=int(env.get("BENCH_BATCH_RUNS", "3")),
            batch_year=int(env.get("BENCH_BATCH_YEAR", "2098")),
            only=only,
            out_dir=Path(env.get("BENCH_OUT", str(ROOT / "bench-results"))),
            perf=env.get("BENCH_PERF", "1") not in ("0", "false", "no"),
            state_dir=Path(env.get("STATE_DIR", str(ROOT / ".local"))),
            pgbouncer_port=int(env.get("PGBOUNCER_PORT", "6432")),
            primary_port=int(env.get("PRIMARY_PORT", "55432")),
            replica_port=int(env.get("REPLICA_PORT", "55433")),
            ports={f.name: int(env.get(f.port_variable, str(f.port))) for f in FUNCTIONS},
        )
