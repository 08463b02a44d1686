"""Tests of the `make bench` driver: parsing, statistics, recommendations,
the doc splice, and the wrk Lua scripts driven by the real wrk against a
small local HTTP server.

    python3 -m pytest -q .ci/bench/tests

With LIVE_STACK=1 (and `make up` running) a one-second point-read run of the
real driver against the stack is added.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH_DIR))

from bench import cpu, loadgen, report, runner, settings, stack, stats  # noqa: E402
from bench.scenarios import point, cold, sweep  # noqa: E402
import update_doc  # noqa: E402

WRK_SAMPLE = (
    "Running 2s test @ http://127.0.0.1:8082\n"
    "  2 threads and 64 connections\n"
    'BENCH_JSON {"requests":12000,"duration_us":2000000,"bytes":100,'
    '"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":0},'
    '"latency_us":{"mean":5000.5,"stdev":10.0,"max":90000,"p50":4000,"p90":8000,"p99":25000,"p999":50000},'
    '"threads":2,"thread_counters":[3,4]}\n'
)

PGBENCH_SAMPLE = """transaction type: point_read.sql
scaling factor: 1
query mode: extended
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 1000
number of failed transactions: 3 (0.300%)
latency average = 1.2 ms
initial connection time = 12.500 ms
tps = 3456.789 (without initial connection time)
"""


# ---------------------------------------------------------------- parsing and statistics


def test_parse_wrk_converts_microseconds_to_ms_and_sums_every_error_kind():
    result = loadgen.parse_wrk(WRK_SAMPLE)
    assert result["requests"] == 12000
    assert result["rps"] == pytest.approx(6000.0)
    assert result["p50_ms"] == pytest.approx(4.0)
    assert result["p99_ms"] == pytest.approx(25.0)
    assert result["errors"] == 3
    assert result["thread_counters"] == [3, 4]


def test_parse_wrk_fails_loudly_without_the_summary_line():
    with pytest.raises(ValueError, match="BENCH_JSON"):
        loadgen.parse_wrk("Requests/sec: 100\n")


def test_parse_pgbench_takes_percentiles_from_the_transaction_log():
    # 100 transactions of 1..100 ms (microseconds in the log), and one failure.
    log = [f"{i % 4} {i} {(i + 1) * 1000} 0 1700000000 {i}" for i in range(100)]
    log.append("2 100 failed 0 1700000001 5")
    result = loadgen.parse_pgbench(PGBENCH_SAMPLE, log)
    assert result["rps"] == pytest.approx(3456.789)
    assert result["requests"] == 1000
    assert result["p50_ms"] == pytest.approx(50.0)
    assert result["p99_ms"] == pytest.approx(99.0)
    assert result["max_ms"] == pytest.approx(100.0)
    assert result["errors"] == 3
    assert result["connect_ms"] == pytest.approx(12.5)


def test_parse_pgbench_counts_an_aborted_run_as_an_error():
    out = PGBENCH_SAMPLE.replace("number of failed transactions: 3 (0.300%)\n", "") + \
        "pgbench: error: Run was aborted; the above results are incomplete.\n"
    assert loadgen.parse_pgbench(out, [])["errors"] == 1


def test_parse_pgbench_rejects_output_without_a_tps_line():
    with pytest.raises(ValueError):
        loadgen.parse_pgbench("connection to server failed\n", [])


def test_percentile_is_nearest_rank():
    values = list(range(1, 11))
    assert stats.percentile(values, 50) == 5
    assert stats.percentile(values, 90) == 9
    assert stats.percentile(values, 99) == 10
    assert stats.percentile([7.0], 99) == 7.0
    assert str(stats.percentile([], 50)) == "nan"


# ---------------------------------------------------------------- recommendations


def sweep_points(rows):
    return [{"concurrency": c, "rps": rps, "p99_ms": p99, "errors": err} for c, rps, p99, err in rows]


def test_knee_is_the_smallest_concurrency_reaching_ninety_percent_of_peak():
    points = sweep_points([(1, 1000, 1, 0), (4, 3000, 2, 0), (16, 5500, 5, 0), (64, 6000, 20, 0),
                           (256, 5800, 90, 0)])
    assert stats.knee(points)["concurrency"] == 16


def test_recommend_caps_container_concurrency_by_the_p99_budget_and_errors():
    points = sweep_points([(1, 1000, 1, 0), (4, 3000, 2, 0), (16, 5500, 5, 0), (64, 6000, 20, 0),
                           (128, 5900, 40, 3), (256, 5800, 90, 0)])
    rec = stats.recommend(points, p99_budget_ms=50)
    assert rec["target"] == 16
    # 128 has errors, 256 breaks the budget: 64 is the largest acceptable
    assert rec["container_concurrency"] == 64
    assert rec["peak_rps"] == 6000


def test_recommend_keeps_container_concurrency_at_least_twice_the_target():
    points = sweep_points([(1, 100, 1, 0), (2, 950, 200, 0), (4, 1000, 300, 0)])
    rec = stats.recommend(points, p99_budget_ms=50)
    assert rec["target"] == 2
    assert rec["container_concurrency"] == 4


def test_best_pool_prefers_the_smallest_pool_within_ten_percent():
    points = [{"pool": 4, "rps": 5000}, {"pool": 8, "rps": 5500}, {"pool": 16, "rps": 6000},
              {"pool": 32, "rps": 5900}]
    assert stats.best_pool(points)["pool"] == 8
    assert stats.best_pool(points, share=0.95)["pool"] == 16


# ---------------------------------------------------------------- markdown and settings


def test_table_right_aligns_numeric_columns_and_formats_by_magnitude():
    md = report.table(["name", "rps", "p99 ms", "ratio"], [["a", 12345.6, 0.456, "0.71"], ["b", 99.0, None, "-"]])
    lines = md.splitlines()
    assert lines[1] == "|---|---:|---:|---:|"
    assert lines[2] == "| a | 12,346 | 0.46 | 0.71 |"
    assert lines[3] == "| b | 99.0 | - | - |"


def test_settings_quick_mode_is_short_and_skips_the_growth_runs():
    quick = settings.Settings.from_env({"BENCH_QUICK": "1"})
    full = settings.Settings.from_env({})
    assert quick.duration < full.duration
    assert quick.growth_rows == []
    assert full.growth_rows == [1_000_000, 10_000_000]
    assert full.sweep[0] == 1 and full.sweep[-1] == 512
    assert quick.cold_runs < full.cold_runs == 20


def test_settings_reject_an_unknown_scenario_name():
    with pytest.raises(SystemExit, match="unknown scenario"):
        settings.Settings.from_env({"BENCH_ONLY": "point,warp-speed"})


def test_settings_take_ports_and_lists_from_the_environment():
    s = settings.Settings.from_env({"BENCH_CONNECTIONS": "8, 32", "GET_RESULT_PORT": "18082", "BENCH_ONLY": "point"})
    assert s.connections == [8, 32]
    assert s.ports["get-result"] == 18082
    assert s.only == {"point"}


def test_cpu_watch_attributes_a_busy_process_to_its_group():
    watch = cpu.CpuWatch({})
    assert watch.group(1, "pgbouncer", 0) == "pgbouncer"
    assert watch.group(1, "get-result", 0) == "get-result"
    assert watch.group(1, "wrk", 0) == "load generator"
    assert watch.group(5, "postgres", 4) == "postgres (other clusters)"
    replica = cpu.CpuWatch({4: "replica"})
    replica.cmdlines.update({5: True, 6: False})  # 5: a client backend, 6: e.g. WAL replay
    assert replica.group(5, "postgres", 4) == "postgres replica"
    assert replica.group(6, "postgres", 4) == "postgres replica background"
    assert replica.group(4, "postgres", 1) == "postgres replica background"
    busy = subprocess.Popen(["sh", "-c", "end=$(($(date +%s) + 3)); while [ $(date +%s) -lt $end ]; do :; done"])
    try:
        time.sleep(0.2)
        watch.begin()
        time.sleep(1.0)
        groups = watch.end()
    finally:
        busy.kill()
        busy.wait()
    # the shell loop burns (close to) one core; the machine is at least that busy
    assert groups["machine busy"] >= 0.5
    assert groups["other"] >= 0.3


def test_client_backends_are_told_apart_from_background_processes_by_their_title():
    assert cpu.is_client_backend("postgres: exam_app exam_results 127.0.0.1(56768) idle")
    assert cpu.is_client_backend("postgres: exam_app exam_results 127.0.0.1(40438) SELECT")
    assert cpu.is_client_backend("postgres: exam_reader exam_results [local] idle")  # PgBouncer over a socket
    assert not cpu.is_client_backend("postgres: startup recovering 00000001000000000000001C")
    assert not cpu.is_client_backend("postgres: walreceiver streaming 0/1C1CB748")
    assert not cpu.is_client_backend("postgres: checkpointer ")
    assert not cpu.is_client_backend("/usr/lib/postgresql/15/bin/postgres -D /work/main/.local/replica")


def test_free_port_pair_returns_two_bindable_ports():
    import socket

    port = stack.free_port_pair()
    for p in (port, port + 1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


# ---------------------------------------------------------------- the doc splice


def test_splice_replaces_only_the_marked_region_and_nests_headings():
    doc = "# Performance\n\nintro\n\n<!-- bench-results:begin -->\nold\n<!-- bench-results:end -->\n\nafter\n"
    results = "# exam-results benchmark\n\n## Point reads\n\n```\n# not a heading\n```\n| a |\n"
    out = update_doc.splice(doc, results, "x.md")
    assert out.startswith("# Performance\n\nintro\n\n<!-- bench-results:begin -->")
    assert "old" not in out
    assert "### exam-results benchmark" in out and "#### Point reads" in out
    assert "\n# not a heading\n" in out
    assert out.endswith("<!-- bench-results:end -->\n\nafter\n")
    # idempotent: splicing again gives the same document
    assert update_doc.splice(out, results, "x.md") == out


def test_splice_fills_a_named_region_and_leaves_the_others(tmp_path):
    doc = ("<!-- bench-results:begin -->\nA\n<!-- bench-results:end -->\n"
           "<!-- growth-50m:begin -->\nB\n<!-- growth-50m:end -->\n")
    out = update_doc.splice(doc, "## Growth\n", "g.md", region="growth-50m")
    assert "\nA\n" in out and "\nB\n" not in out and "#### Growth" in out
    results, target = tmp_path / "r.md", tmp_path / "doc.md"
    results.write_text("# Run\n")
    target.write_text(doc)
    assert update_doc.main(["update_doc.py", "--region", "bench-results", str(results), str(target)]) == 0
    assert "### Run" in target.read_text() and "\nB\n" in target.read_text()


def test_splice_requires_both_markers():
    with pytest.raises(ValueError):
        update_doc.splice("no markers", "x", "x.md")


# ---------------------------------------------------------------- the Lua scripts under the real wrk


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 to everything and records what it got."""

    seen: list = []
    lock = threading.Lock()
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        with self.lock:
            self.seen.append((self.command, self.path, dict(self.headers), body, time.monotonic()))
        payload = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = _handle

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except ConnectionError:  # wrk closes its connections at the end of the run
            pass


@pytest.fixture()
def recorder():
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.protocol_version = "HTTP/1.1"
    Recorder.protocol_version = "HTTP/1.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def run_wrk(port, script, args, conns=2, threads=2, duration="1s"):
    env = dict(os.environ, BENCH_LUA_DIR=str(BENCH_DIR / "lua"))
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(conns), "-d", duration, "-s", str(BENCH_DIR / "lua" / script),
         f"http://127.0.0.1:{port}/"] + (["--"] + args if args else []),
        env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return loadgen.parse_wrk(out.stdout)


def test_point_read_script_requests_random_rolls_inside_the_range(recorder):
    result = run_wrk(recorder, "point_read.lua", ["year=2025", "roll_min=100000001", "roll_max=100200000"])
    paths = [p for _, p, _, _, _ in Recorder.seen]
    assert len(paths) >= 50
    assert result["errors"] == 0 and result["requests"] <= len(paths)
    rolls = []
    for path in paths:
        m = re.fullmatch(r"/results/2025/(\d+)", path)
        assert m, path
        rolls.append(int(m.group(1)))
    assert all(100000001 <= r <= 100200000 for r in rolls)
    assert len(set(rolls)) > 0.9 * len(rolls)  # random, not a replayed sequence


def test_list_page_script_asks_for_page_boundaries(recorder):
    run_wrk(recorder, "list_page.lua", ["year=2024", "roll_min=100000001", "roll_max=100200000", "limit=100"])
    assert Recorder.seen
    for _, path, _, _, _ in Recorder.seen:
        m = re.fullmatch(r"/results\?exam_year=2024&after=(\d+)&limit=100", path)
        assert m, path
        after = int(m.group(1))
        assert (after - 100000000) % 100 == 0 and 100000000 <= after < 100200000


def test_update_script_sends_authenticated_json_at_the_paced_rate(recorder):
    run_wrk(recorder, "update.lua", ["year=2025", "roll_min=5", "roll_max=9", "token=sekret", "pace_ms=50"],
            conns=2, threads=1, duration="2s")
    seen = Recorder.seen
    assert seen
    for method, path, headers, body, _ in seen:
        assert method == "PUT"
        assert re.fullmatch(r"/results/2025/[5-9]", path)
        assert headers["Authorization"] == "Bearer sekret"
        assert headers["Content-Type"] == "application/json"
        assert 0 <= json.loads(body)["marks"] <= 100
    # 2 connections, 50 ms pause each: at most ~40 requests per second
    assert len(seen) <= 2 * (2 * 1000 / 50) + 4


def test_create_script_never_repeats_a_roll_number_across_threads(recorder):
    result = run_wrk(recorder, "create.lua", ["year=2025", "base=500000000000", "token=t", "pace_ms=0"],
                     conns=4, threads=2)
    bodies = [json.loads(body) for method, _, _, body, _ in Recorder.seen if method == "POST"]
    assert len(bodies) >= 20
    rolls = [b["roll_number"] for b in bodies]
    assert len(set(rolls)) == len(rolls)
    assert all(500_000_000_000 < r < 500_100_000_000 for r in rolls)
    assert all(b["exam_year"] == 2025 and 0 <= b["marks"] <= 100 for b in bodies)
    assert sum(result["thread_counters"]) >= len(bodies)


def test_plain_script_reports_a_fixed_url(recorder):
    env = dict(os.environ, BENCH_LUA_DIR=str(BENCH_DIR / "lua"))
    out = subprocess.run(["wrk", "-t", "1", "-c", "1", "-d", "1s", "-s", str(BENCH_DIR / "lua" / "plain.lua"),
                          f"http://127.0.0.1:{recorder}/healthz"], env=env, capture_output=True, text=True,
                         timeout=30)
    assert loadgen.parse_wrk(out.stdout)["requests"] > 0
    assert {p for _, p, _, _, _ in Recorder.seen} == {"/healthz"}


# ---------------------------------------------------------------- against the running stack


@pytest.mark.skipif(os.environ.get("LIVE_STACK") != "1", reason="set LIVE_STACK=1 with `make up` running")
def test_a_short_point_read_run_against_the_stack_writes_its_tables(tmp_path):
    env = dict(os.environ, BENCH_QUICK="1", BENCH_ONLY="point", BENCH_DURATION="1", BENCH_CONNECTIONS="4",
               BENCH_OUT=str(tmp_path))
    out = subprocess.run([str(BENCH_DIR / "run.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    files = list(tmp_path.glob("*.md"))
    assert len(files) == 1
    text = files[0].read_text()
    assert "| 4 | get-result (wrk) |" in text
    assert "pgbench -> PgBouncer -> replica" in text
    data = json.loads(files[0].with_suffix(".json").read_text())
    point = data["point"][0]
    assert point["function"]["requests"] > 0 and point["function"]["errors"] == 0
    assert point["pgbouncer"]["requests"] > 0 and point["pgbouncer"]["errors"] == 0


def test_a_failing_scenario_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    (tmp_path / "secrets.env").write_text("POSTGRES_PASSWORD=a\nEXAM_APP_PASSWORD=b\nWRITE_TOKEN=c\n")
    s = settings.Settings.from_env({"STATE_DIR": str(tmp_path), "BENCH_OUT": str(tmp_path / "out"),
                                    "BENCH_ONLY": "point,cold"})
    b = runner.Bench(s)
    ran = []
    monkeypatch.setattr(b.stack, "check", lambda: None)
    monkeypatch.setattr(runner.machine, "run", lambda bench: None)
    monkeypatch.setattr(b.stack, "seeded_range", lambda: (2025, 1, 10))

    def broken(bench):
        raise RuntimeError("pgbench failed (2): connection refused")

    monkeypatch.setattr(point, "run", broken)
    monkeypatch.setattr(cold, "run", lambda bench: ran.append(bench.seeded))
    out = b.run()
    assert ran == [(2025, 1, 10)]
    assert b.failed == ["point"]
    text = out.read_text()
    assert "**point failed:** `pgbench failed (2): connection refused`" in text
    assert "| cold |" in text


def test_sweep_keeps_the_better_of_two_passes_per_point(tmp_path, monkeypatch):
    (tmp_path / "secrets.env").write_text("POSTGRES_PASSWORD=a\nEXAM_APP_PASSWORD=b\nWRITE_TOKEN=c\n")
    b = runner.Bench(settings.Settings.from_env({"STATE_DIR": str(tmp_path)}))

    class FakeProc:
        pid = os.getpid()

    calls = []
    # first pass (up): 100, 200, 300; second pass (down): 350, 150, 50
    rates = iter([100, 200, 300, 350, 150, 50])

    def fake_wrk(port, c, script, args=(), sampler=None, duration=None):
        calls.append(c)
        rps = next(rates)
        return {"rps": rps, "p50_ms": 1.0, "p99_ms": float(rps), "errors": 0, "cpu": {"get-result": 0.5}}

    monkeypatch.setattr(b.stack, "start_function", lambda *a, **k: (FakeProc(), 1))
    monkeypatch.setattr(b.stack, "stop", lambda proc: None)
    monkeypatch.setattr(sweep, "http_get", lambda *a, **k: (200, b""))
    monkeypatch.setattr(b.load, "run_wrk", fake_wrk)
    points = sweep.sweep_one(b, "get-result", 8, [1, 2, 4], "point_read.lua", [])
    assert calls == [1, 2, 4, 4, 2, 1]
    assert [p["concurrency"] for p in points] == [1, 2, 4]
    assert [p["rps"] for p in points] == [100, 200, 350]
    assert [p["other_pass_rps"] for p in points] == [50, 150, 300]
    # the kept pass carries its own latency
    assert points[2]["p99_ms"] == 350.0
    b.stack.cleanup()
