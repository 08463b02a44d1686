"""instructions: get-result's instructions per served request, beside a minimal baseline's (callgrind)."""
from __future__ import annotations

import subprocess

from .. import callgrind
from ..settings import BENCH_DIR, ROOT

NAME = "instructions"
BASELINE_MANIFEST = BENCH_DIR / "baseline" / "Cargo.toml"
BASELINE_BINARY = ROOT / "target" / "release" / "bench-baseline"
# The baseline shares the functions' target directory (and its compiled dependencies).
BUILD_BASELINE = ["cargo", "build", "--release", "-q", "--manifest-path", str(BASELINE_MANIFEST),
                  "--target-dir", str(ROOT / "target")]


def build_baseline() -> None:
    done = subprocess.run(BUILD_BASELINE, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"building the baseline failed: {done.stderr[-2000:]}")


def same_answers(a: list, b: list) -> bool:
    """Whether two runs over the same paths answered with the same bodies and ETags."""
    return len(a) == len(b) and all(
        sa == sb and ba == bb and ha.get("etag") == hb.get("etag") for (sa, ha, ba), (sb, hb, bb) in zip(a, b))


def perf_counts_instructions() -> bool:
    """Whether `perf stat -e instructions` counts here (virtual machines often expose no PMU)."""
    try:
        done = subprocess.run(["perf", "stat", "-x,", "-e", "instructions", "true"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "not supported" not in done.stderr and "<not" not in done.stderr


def run(b) -> None:
    r = b.report
    r.h("Instructions per request (callgrind)")
    missing = callgrind.available()
    if missing:
        r.p(f"Skipped: {missing} not found (Debian package valgrind, in .ci/apt-bench.txt).")
        return
    build_baseline()
    year, lo, hi = b.seeded
    n = b.s.instr_requests
    paths = callgrind.point_read_paths(year, lo, hi, n)
    targets = (("get-result (stack settings, LOG_LEVEL=info)", None),
               ("baseline: hyper + tokio-postgres only (.ci/bench/baseline)", BASELINE_BINARY))
    runs: dict[str, list[dict]] = {label: [] for label, _ in targets}
    for _ in range(b.s.instr_runs):
        for label, binary in targets:
            runs[label].append(callgrind.measure(b.stack, "get-result", paths, binary=binary))
    (fn_label, _), (base_label, _) = targets
    agree = same_answers(runs[fn_label][0]["answers"], runs[base_label][0]["answers"])
    base = min(m["per_request"] for m in runs[base_label])
    rows = []
    for label, _ in targets:
        per = [m["per_request"] for m in runs[label]]
        spread = (max(per) - min(per)) / min(per)
        rows.append([label, *per, f"{spread:.2%}", f"{sum(per) / len(per) / base:.2f}"])
    r.p(f"{n:,} point reads of existing rows (`GET /results/{year}/{{roll}}`, a fixed pseudo-random list, the "
        f"same for every run), sent one after another on one keep-alive connection to one process under "
        f"`valgrind --tool=callgrind` (pool size 4, through the stack's PgBouncer and replica); counters zeroed "
        f"after 50 warm-up requests and dumped after the last one (`callgrind_control -z` / `-d`). "
        f"Instructions per request = every instruction the process executed in that window, on all threads, "
        f"divided by {n:,}. Both processes answered the {n:,} requests with "
        + ("identical bodies and `ETag`s." if agree else "**different bodies or `ETag`s**.")
        + (" `perf stat -e instructions` counts here too." if perf_counts_instructions() else
           " `perf stat -e instructions` reports `<not supported>` on this machine (no hardware counters in "
           "the virtual machine), so there are no cycle counts."))
    r.t(["process", *[f"run {i + 1} instructions/request" for i in range(b.s.instr_runs)], "spread",
         "ratio to the baseline"], rows)
    b.results["instructions"] = {
        "requests": n, "answers_agree": agree,
        "runs": {label: [{k: v for k, v in m.items() if k != "answers"} for m in ms] for label, ms in runs.items()}}
    if not agree:
        raise RuntimeError("the baseline answered differently from get-result")
