"""mixed: 10:1 reads to paced, authenticated writes."""
from __future__ import annotations

from ..cpu import cpu_row
from ..loadgen import parse_wrk
from ..settings import BENCH_ROLL_BASE, BENCH_UPDATE_ROWS

NAME = "mixed"


def run(b) -> None:
    mixed(b, *b.seeded)


def mixed(b, year: int, lo: int, hi: int) -> None:
    r = b.report
    r.h("Mixed 10:1 reads to writes")
    reads_c = 60
    base = next((p["function"]["rps"] for p in b.results.get("point", []) if p["connections"] == 64), None)
    if base is None:
        base = b.load.run_wrk(b.s.ports["get-result"], 64, "point_read.lua",
                            args=[f"year={year}", f"roll_min={lo}", f"roll_max={hi}"])["rps"]
    # Writes are paced (wrk's delay()): 4 connections each for update and
    # create, each connection waiting pace_ms between requests, aiming at
    # one write per ten reads of the read rate measured alone (the pause
    # is 80% of the interval: the write itself takes the rest).
    write_c = 4
    write_rate = base / 10.0
    per_conn = write_rate / (2 * write_c)
    pace_ms = max(1, int(0.8 * 1000.0 / per_conn)) if per_conn > 0 else 1000
    b.stack.bench_rows(year, create=True)
    token = b.stack.secrets["WRITE_TOKEN"]
    d = b.s.duration
    rd_args = [f"year={year}", f"roll_min={lo}", f"roll_max={hi}"]
    up_args = [f"year={year}", f"roll_min={BENCH_ROLL_BASE + 1}", f"roll_max={BENCH_ROLL_BASE + BENCH_UPDATE_ROWS}",
               f"token={token}", f"pace_ms={pace_ms}"]
    cr_args = [f"year={year}", f"base={BENCH_ROLL_BASE + 100_000_000}", f"token={token}", f"pace_ms={pace_ms}"]
    try:
        outputs, cpu = b.load.measure(lambda: [
            b.load.wrk(b.s.ports["get-result"], reads_c, d, "point_read.lua", args=rd_args),
            b.load.wrk(b.s.ports["update-result"], write_c, d, "update.lua", args=up_args, threads=1),
            b.load.wrk(b.s.ports["create-result"], write_c, d, "create.lua", args=cr_args, threads=1),
        ], d)
    finally:
        b.stack.bench_rows(year, create=False)
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
    r.t(["run"] + b.cpu_columns + ["update-result", "create-result"],
        [["mixed"] + cpu_row(cpu, b.cpu_columns) + [cpu.get("update-result", 0.0), cpu.get("create-result", 0.0)]])
    b.results["mixed"] = {"reads": reads, "updates": updates, "creates": creates, "ratio": ratio, "cpu": cpu}


