"""The results-day and batch scenarios' offline parts: the crowd's timeline,
the hit ratio it implies, the key-file replay under the real wrk, the batch
bodies and the settings; with LIVE_STACK=1 (and `make up` running) a short
run of both against the stack.

    python3 -m pytest -q .ci/bench/tests
"""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import settings  # noqa: E402
from bench.scenarios import batch, results_day  # noqa: E402
from test_make_bench import Recorder, recorder, run_wrk  # noqa: E402,F401  (recorder is a fixture)


def test_every_student_is_looked_up_repeats_times_within_the_window_in_time_order():
    students = list(range(1000, 1600))
    timeline = results_day.crowd_order(students, repeats=4, window=30, arrivals=10, seed=7)
    times = [t for t, _ in timeline]
    assert times == sorted(times)
    counts = collections.Counter(roll for _, roll in timeline)
    assert set(counts) == set(students) and set(counts.values()) == {4}
    span = len(students) / 10
    by_roll = collections.defaultdict(list)
    for t, roll in timeline:
        by_roll[roll].append(t)
    for ts in by_roll.values():  # on a circle of length span, all within 30 s of one of them
        assert any(all((t - t0) % span <= 30 for t in ts) for t0 in ts)


def test_the_implied_hit_ratio_grows_with_the_ttl():
    # 2000 students at 5/s: a 400 s span, each student's lookups within 300 s
    timeline = results_day.crowd_order(list(range(2000)), repeats=4, window=300, arrivals=5, seed=3)
    ratios = [results_day.expected_hit_ratio(timeline, ttl) for ttl in (0, 2, 60, 300, 10**9)]
    assert ratios[0] == 0 and ratios[0] < ratios[1] < ratios[2] < ratios[3]
    assert ratios[3] == 0.75  # a TTL as long as the window: one fetch per student, three hits
    assert ratios[4] == 1.0  # nothing ever expires: every lookup after the first lap hits


def test_the_key_file_script_replays_the_file_in_order_across_threads(recorder, tmp_path):
    keys = tmp_path / "keys.txt"
    rolls = [100000001 + (i * 7919) % 500 for i in range(500)]
    keys.write_text("".join(f"{r}\n" for r in rolls))
    result = run_wrk(recorder, "key_file.lua", ["year=2025", f"keys={keys}", "threads=2"], conns=2, threads=2)
    assert result["errors"] == 0
    seen = [int(p.rsplit("/", 1)[1]) for _, p, _, _, _ in Recorder.seen]
    assert all(p.startswith("/results/2025/") for _, p, _, _, _ in Recorder.seen)
    # thread 1 sends lines 0, 2, 4, ... and thread 2 lines 1, 3, 5, ..., each looping
    assert len(set(rolls)) == len(rolls) and len(seen) > len(rolls)
    for sub in (rolls[0::2], rolls[1::2]):
        mine = [sub.index(r) for r in seen if r in set(sub)]
        assert len(mine) > len(sub)  # round the file and back to its start
        assert all(b == (a + 1) % len(sub) for a, b in zip(mine, mine[1:])), "each thread keeps the file's order"


def test_the_batch_bodies_hold_the_same_rows():
    http_body = batch.csv_rows(3).splitlines()
    copy_lines = batch.csv_rows(3, year=2098).splitlines()
    assert http_body == ["roll_number,marks", "1,1", "2,2", "3,3"]
    assert copy_lines == ["1,1,2098", "2,2,2098", "3,3,2098"]


def test_results_day_and_batch_settings_come_from_the_environment():
    s = settings.Settings.from_env({"BENCH_RD_STUDENTS": "10", "BENCH_RD_TTLS": "1,30", "BENCH_BATCH_ROWS": "5",
                                    "BENCH_ONLY": "results-day,batch"})
    assert (s.rd_students, s.rd_ttls, s.batch_rows, s.only) == (10, [1.0, 30.0], 5, {"results-day", "batch"})
    quick = settings.Settings.from_env({"BENCH_QUICK": "1"})
    assert quick.rd_students < settings.Settings.from_env({}).rd_students


@pytest.mark.skipif(os.environ.get("LIVE_STACK") != "1", reason="set LIVE_STACK=1 with `make up` running")
def test_a_short_results_day_and_batch_run_against_the_stack_writes_its_tables(tmp_path):
    env = dict(os.environ, BENCH_ONLY="results-day,batch", BENCH_DURATION="1", BENCH_RD_STUDENTS="2000",
               BENCH_RD_TTLS="60", BENCH_RD_PASSES="1", BENCH_BATCH_ROWS="2000", BENCH_BATCH_RUNS="1",
               BENCH_OUT=str(tmp_path))
    out = subprocess.run([str(BENCH_DIR / "run.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    runs = {r["label"]: r for r in data["results_day"]["chosen"]}
    assert set(runs) == {"get-result, cache off", "get-result, cache on, TTL 60 s", "pgbench -> PgBouncer -> replica"}
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in runs.values())
    assert runs["get-result, cache on, TTL 60 s"]["hit_ratio"] > 0
    assert [r["kind"] for r in data["batch"]["runs"]] == ["HTTP batch (create-results-batch)",
                                                          "psql \\copy through PgBouncer"]
