"""instructions: get-result's instructions per served request, beside a minimal baseline's (callgrind)."""
from __future__ import annotations

import os
import re
import subprocess
from typing import Optional

from .. import callgrind
from ..settings import BENCH_DIR, ROOT

NAME = "instructions"
BASELINE_MANIFEST = BENCH_DIR / "baseline" / "Cargo.toml"
BASELINE_BINARY = ROOT / "target" / "release" / "bench-baseline"
# The baseline shares the functions' target directory (and its compiled dependencies).
BUILD_BASELINE = ["cargo", "build", "--release", "-q", "--manifest-path", str(BASELINE_MANIFEST),
                  "--target-dir", str(ROOT / "target")]
# get-result as released but with its symbol table (the release profile strips it), so that
# callgrind can name functions; a target directory of its own keeps the stripped build intact.
PROFILING_DIR = ROOT / "target" / "profiling"
BUILD_PROFILING = ["cargo", "build", "--release", "-q", "-p", "get-result", "--target-dir", str(PROFILING_DIR)]
PROFILING_ENV = {"CARGO_PROFILE_RELEASE_STRIP": "false"}
TOP_FUNCTIONS = 30
# Inclusive costs worth naming beside get-result's own functions (exam_results::...): the
# library entry points its request path calls.
ENTRY_POINTS = (r"tracing_subscriber::fmt::Subscriber<.*>::event$", r"register_(histogram|gauge|counter)$",
                r"hyper::proto::h1::conn::Conn<.*>::poll_read_head$", r"Http1Transaction>::encode$",
                r"tokio_postgres::query::query_typed::", r"<tokio::time::timeout::Timeout<T> as .*>::poll$",
                r"uuid::")


def build(command: list[str], env: Optional[dict] = None) -> None:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")


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
    build(BUILD_BASELINE)
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
        f"`valgrind --tool=callgrind --instr-atstart=no` (pool size 4, through the stack's PgBouncer and replica); "
        f"after 50 warm-up requests instrumentation is switched on and the counters zeroed "
        f"(`callgrind_control --instr=on`, `-z`), and they are dumped after the last request (`-d`). "
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
    if b.s.instr_profile:
        by_function(b, paths)


def by_function(b, paths: list[str]) -> None:
    """Where get-result's instructions go: callgrind_annotate of one more run, with symbols."""
    r = b.report
    build(BUILD_PROFILING, PROFILING_ENV)
    dump = b.stack.tmp / "get-result.callgrind"
    m = callgrind.measure(b.stack, "get-result", paths, binary=PROFILING_DIR / "release" / "get-result", keep=dump)
    n = m["requests"]
    functions = callgrind.annotate(dump)
    crates: dict[str, int] = {}
    for ir, name in functions:
        crate = callgrind.component(name, "get-result")
        crates[crate] = crates.get(crate, 0) + ir
    total = m["instructions"]
    r.h("Where get-result's instructions go", 3)
    r.p(f"The same {n:,} requests through get-result built with its symbol table "
        f"(`{' '.join(f'{k}={v}' for k, v in PROFILING_ENV.items())} {' '.join(BUILD_PROFILING[:-2])} "
        f"--target-dir target/profiling`; the code is the release build's), one run: "
        f"{m['per_request']:,.0f} instructions per request. Self cost (each instruction counted once, in the "
        f"function that executed it; inlined code counts in the function it was inlined into), from "
        f"`callgrind_annotate --inclusive=no`. By crate or shared object:")
    r.t(["crate / object", "instructions per request", "share"],
        [[name, ir / n, f"{ir / total:.1%}"] for name, ir in sorted(crates.items(), key=lambda kv: -kv[1])
         if ir / total >= 0.005])
    r.p(f"The {TOP_FUNCTIONS} functions with the highest self cost:")
    r.t(["instructions per request", "share", "function"],
        [[ir / n, f"{ir / total:.1%}", f"`{short(name)}`"] for ir, name in functions[:TOP_FUNCTIONS]])
    inclusive = [(ir, name) for ir, name in callgrind.annotate(dump, inclusive=True)
                 if "exam_results::" in name or any(re.search(p, re.sub(r" \[.*\]$", "", name)) for p in ENTRY_POINTS)]
    r.p("Inclusive cost (with everything each function called) of get-result's own functions and of the "
        "library calls on its request path, from `callgrind_annotate --inclusive=yes`; nested entries "
        "overlap, so the column does not add up:")
    r.t(["instructions per request", "share", "function"],
        [[ir / n, f"{ir / total:.1%}", f"`{short(name)}`"] for ir, name in inclusive if ir / total >= 0.003])
    b.results["instructions"]["by_crate"] = {k: v / n for k, v in crates.items()}
    b.results["instructions"]["functions"] = [(ir / n, name) for ir, name in functions[:100]]


def short(function: str) -> str:
    """A function of callgrind_annotate's output without its object path, at most 150 characters."""
    text = re.sub(r" \[(?:[^\]]*/)?([^\]/]+)\]$", r" [\1]", function)
    text = re.sub(r"^/rustc/\w+/", "", text)
    return text if len(text) <= 150 else text[:147] + "..."
