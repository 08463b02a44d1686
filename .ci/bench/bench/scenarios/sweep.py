"""sweep: one process of the benchmark's own against pool size and in-flight concurrency; Knative settings."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..settings import BENCH_ROLL_BASE, BENCH_UPDATE_ROWS, ROOT
from ..stack import http_get, rss_kib
from ..stats import best_pool, recommend

NAME = "sweep"


def run(b) -> None:
    sweep(b, *b.seeded)


def sweep_one(b, name: str, pool: int, concurrency: list[int], script: str, args: list[str],
              log_level: str = "info", passes: int = 2) -> list[dict]:
    """wrk against one own process at each concurrency.

    `passes` runs go up and then down the list; each point keeps the
    pass with the higher throughput (other work on the machine can only
    take throughput away, so the better pass is the less disturbed one).
    """
    proc, port = b.stack.start_function(name, pool, log_level)
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

            res = b.load.run_wrk(port, c, script, args=args, sampler=sample, duration=b.s.sweep_duration)
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
        b.stack.stop(proc)
    points = [best[c] for c in concurrency]
    for p in points:
        p["hwm_kib"] = hwm
    return points


def sweep(b, year: int, lo: int, hi: int) -> None:
    r = b.report
    r.h("Per-instance capacity (for Knative)")
    read_args = [f"year={year}", f"roll_min={lo}", f"roll_max={hi}"]
    r.p("One get-result process of the benchmark's own (release binary, started on a free port with "
        "`.ci/stack.sh env get-result PORT`, its own pool), same PgBouncer and replica. First the pool "
        f"size at 64 in flight, then in-flight concurrency (wrk connections) with the chosen pool; "
        f"{b.s.sweep_duration:g} s per point.")
    pool_points = []
    for pool in b.s.pools:
        pool_points.extend(sweep_one(b, "get-result", pool, [64], "point_read.lua", read_args, passes=1))
    # second pass in reverse order, keeping the better of the two per pool size
    for i, pool in enumerate(reversed(b.s.pools)):
        again = sweep_one(b, "get-result", pool, [64], "point_read.lua", read_args, passes=1)[0]
        k = len(b.s.pools) - 1 - i
        if again["rps"] > pool_points[k]["rps"]:
            again["other_pass_rps"] = pool_points[k]["rps"]
            pool_points[k] = again
        else:
            pool_points[k]["other_pass_rps"] = again["rps"]
    bp = best_pool(pool_points)
    r.p("Each point is run twice (up the list, then down) and the pass with the higher throughput is "
        "shown (\"other pass\" gives the other one's requests/s): work by other processes on the machine only "
        "takes throughput away.")
    r.t(["pool size", "in flight", "requests/s", "other pass", "p50 ms", "p99 ms", "errors", "get-result CPU",
         "other CPU"],
        [[p["pool"], 64, p["rps"], p.get("other_pass_rps"), p["p50_ms"], p["p99_ms"], p["errors"],
          p["function_cpu"], p["cpu"]["other"]] for p in pool_points])
    r.p(f"Smallest pool within 10% of the best throughput (closer than that is within the run-to-run noise "
        f"here): **{bp['pool']}**.")
    points = sweep_one(b, "get-result", bp["pool"], b.s.sweep, "point_read.lua", read_args)
    r.t(["in flight", "requests/s", "other pass", "p50 ms", "p99 ms", "errors", "RSS MiB", "get-result CPU",
         "pgbouncer CPU", "replica CPU", "wrk CPU", "other CPU"],
        [[p["concurrency"], p["rps"], p.get("other_pass_rps"), p["p50_ms"], p["p99_ms"], p["errors"],
          p["rss_kib"] / 1024, p["function_cpu"], p["cpu"].get("pgbouncer", 0.0),
          p["cpu"].get("postgres replica", 0.0), p["cpu"].get("load generator", 0.0), p["cpu"]["other"]]
         for p in points])
    rec_get = recommend(points, p99_budget_ms=50.0)
    b.results["sweep"] = {"pools": pool_points, "get-result": points, "best_pool": bp["pool"],
                             "recommend": {"get-result": rec_get}}

    recs = [("get-result", rec_get, bp["pool"])]
    if not b.s.quick:
        small = [c for c in b.s.sweep if c <= 64]
        lpoints = sweep_one(b, "list-results", bp["pool"], small, "list_page.lua", read_args + ["limit=100"])
        rec_list = recommend(lpoints, p99_budget_ms=100.0)
        b.stack.bench_rows(year, create=True)
        try:
            wpoints = sweep_one(b, "update-result", bp["pool"], [c for c in b.s.sweep if c <= 32],
                                     "update.lua", [f"year={year}", f"roll_min={BENCH_ROLL_BASE + 1}",
                                                    f"roll_max={BENCH_ROLL_BASE + BENCH_UPDATE_ROWS}",
                                                    f"token={b.stack.secrets['WRITE_TOKEN']}", "pace_ms=0"])
        finally:
            b.stack.bench_rows(year, create=False)
        rec_write = recommend(wpoints, p99_budget_ms=100.0)
        for label, pts in (("list-results (pages of 100)", lpoints), ("update-result (PUT)", wpoints)):
            r.p(f"{label}, pool {bp['pool']}:")
            r.t(["in flight", "requests/s", "other pass", "p50 ms", "p99 ms", "errors", "function CPU",
                 "replica CPU", "primary CPU", "other CPU"],
                [[p["concurrency"], p["rps"], p.get("other_pass_rps"), p["p50_ms"], p["p99_ms"], p["errors"],
                  p["function_cpu"], p["cpu"].get("postgres replica", 0.0),
                  p["cpu"].get("postgres primary", 0.0), p["cpu"]["other"]] for p in pts])
        recs += [("list-results", rec_list, bp["pool"]), ("update-result", rec_write, bp["pool"])]
        b.results["sweep"].update({"list-results": lpoints, "update-result": wpoints})
        b.results["sweep"]["recommend"].update({"list-results": rec_list, "update-result": rec_write})

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


    planner_check(b)


def planner_check(b) -> None:
    """The capacity planner's per-pod model (knative/planner) against this sweep, in the same run:
    `make plan-validate` on these numbers, its verdict and table in the report."""
    r = b.report
    r.h("The capacity planner's pod model against this sweep", 3)
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        r.p("Skipped: Go is not installed (the planner is a Go program).")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=b.stack.tmp, delete=False) as fh:
        json.dump(b.results, fh, default=str)
    cmd = [go, "run", "./planner/cmd/plan", "-validate", fh.name, "-capacity", str(ROOT / "knative/planner/capacity.json")]
    try:
        done = subprocess.run(cmd, cwd=ROOT / "knative", capture_output=True, text=True, timeout=900,
                              env=dict(os.environ, GOTOOLCHAIN="local"))
    except subprocess.TimeoutExpired:
        r.p("Skipped: building and running the planner took longer than 15 minutes.")
        return
    verdict = "within" if done.returncode == 0 else "outside"
    b.results["sweep"]["planner_check"] = {"exit": done.returncode, "output": done.stdout[-4000:]}
    r.p(f"`cd knative && go run ./planner/cmd/plan -validate <this run's json>`: the model is **{verdict}** "
        "its tolerance (exit " + str(done.returncode) + "). On a busy machine the measured pod is slower than "
        "the committed capacity file's quiet run, and the check says so.")
    r.p("```\n" + (done.stdout or done.stderr).strip()[-3000:] + "\n```")
