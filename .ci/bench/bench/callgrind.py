"""Instructions per served request of one server process, counted by valgrind's callgrind.

Instruction counts do not depend on how busy the machine is, so they make a
cost measure (and a regression check) that a shared 2-core machine cannot
blur. The process runs under `valgrind --tool=callgrind`; after a warm-up
(pool connections open, first-use allocations done; run without instrumentation)
instrumentation is switched on and the counters zeroed (`callgrind_control
--instr=on`, `-z`), a fixed list of requests is sent one after the
other on one keep-alive connection, and the counters are dumped
(`callgrind_control -d`). Instructions per request = the dump's total /
the number of requests: everything the process executed in that window, on
every thread, including its background work (the replica-lag probe runs
once a second, which adds a few hundred instructions per request at the
speed requests are served under callgrind).
"""
from __future__ import annotations

import http.client
import random
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

from .stack import Stack

# --instr-atstart=no: start-up and warm-up run without callgrind's instrumentation (several
# times faster; under callgrind alone the SCRAM login to PgBouncer takes seconds).
# --dump-instr=no: per-function totals are enough. --vgdb=yes (the default) lets
# callgrind_control reach the process.
VALGRIND = ("valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no", "--vgdb=yes")
# Start-up under valgrind on a busy 2-core machine: generous, but bounded.
READY_WITHIN_S = 600.0


def available() -> Optional[str]:
    """None when valgrind and callgrind_control are installed, else what is missing."""
    missing = [tool for tool in ("valgrind", "callgrind_control") if not shutil.which(tool)]
    return ", ".join(missing) or None


def point_read_paths(year: int, lo: int, hi: int, n: int, seed: int = 17) -> list[str]:
    """n point-read paths of existing rows, the same list for the same arguments."""
    rnd = random.Random(seed)
    return [f"/results/{year}/{rnd.randint(lo, hi)}" for _ in range(n)]


def send(port: int, paths: list[str], timeout: float = 30.0) -> list[tuple[int, dict, bytes]]:
    """GETs the paths in order on one keep-alive connection; (status, headers, body) each."""
    out = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        for path in paths:
            conn.request("GET", path)
            resp = conn.getresponse()
            out.append((resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()))
    finally:
        conn.close()
    return out


def totals(path: Path) -> int:
    """The instruction total (Ir) of a callgrind output file."""
    text = path.read_text(errors="replace")
    m = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
    if not m:
        raise ValueError(f"no totals line in {path}")
    return int(m.group(1))


def control(option: str, pid: int, timeout: float = 60.0) -> None:
    done = subprocess.run(["callgrind_control", option, str(pid)], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control {option} {pid} failed: {done.stdout}{done.stderr}")


def measure(stack: Stack, name: str, paths: list[str], warmup: int = 50, pool: int = 4,
            binary: Optional[Path] = None, extra: Optional[dict] = None, keep: Optional[Path] = None) -> dict:
    """Instructions per request of one process serving `paths` (after `warmup` of them unmeasured).

    `name` picks the environment (`.ci/stack.sh env NAME PORT`); `binary`
    (default: the function's release binary) is what runs. `keep`, when
    given, receives the callgrind file of the measured window (for
    callgrind_annotate).
    """
    out = stack.tmp / f"callgrind.{(binary.name if binary else name)}.{time.monotonic_ns()}.out"
    # The per-client rate limit would refuse a burst from one client: off for the measure.
    extra = {"LOG_LEVEL": "info", "RATE_LIMIT_PER_SECOND": "0", **(extra or {})}
    proc, port = stack.start_function(name, pool, extra=extra, binary=binary,
                                      wrapper=(*VALGRIND, f"--callgrind-out-file={out}"), ready_within=READY_WITHIN_S)
    try:
        for status, _, body in send(port, paths[:warmup] or paths[:1]):
            if status != 200:
                raise RuntimeError(f"{name} warm-up request: {status} {body[:200]!r}")
        control("--instr=on", proc.pid)
        control("-z", proc.pid)
        t0 = time.monotonic()
        answers = send(port, paths)
        seconds = time.monotonic() - t0
        control("-d", proc.pid)
    finally:
        stack.stop(proc)
    bad = [(s, b[:200]) for s, _, b in answers if s != 200]
    if bad:
        raise RuntimeError(f"{name}: {len(bad)} of {len(paths)} requests failed, e.g. {bad[0]}")
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    dumps = [d for d in dumps if d.suffix[1:].isdigit()]
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for {name} (looked for {out}.N)")
    instructions = totals(dumps[0])
    if keep:
        shutil.copyfile(dumps[0], keep)
    return {"requests": len(paths), "instructions": instructions, "per_request": instructions / len(paths),
            "seconds": seconds, "answers": answers}


def annotate(path: Path, inclusive: bool = False) -> list[tuple[int, str]]:
    """(instructions, function) per function of a callgrind file, highest first (callgrind_annotate).

    Self cost: every instruction counted once, in the function that executed
    it (inlined code counts in the function it was inlined into); inclusive:
    with everything the function called. Functions
    that were on a call stack when the counters were zeroed (thread start,
    the tokio worker loop) come out of callgrind with their inclusive cost in
    the self column: every one above half the total is one of those, and is
    left out; what remains adds up to the total.
    """
    done = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100",
                           str(path)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_annotate failed: {done.stderr[-500:]}")
    total, rows = totals(path), []
    for line in done.stdout.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.+)$", line)
        if m and "PROGRAM TOTALS" not in m.group(2):
            ir = int(m.group(1).replace(",", ""))
            if ir <= total / 2:
                rows.append((ir, m.group(2).strip()))
    return rows


def component(function: str, binary: str) -> str:
    """The crate, or the shared object, a function of callgrind_annotate's output belongs to.

    `function` is "file:name [object]" (file ??? when unknown, object absent
    for inlined library code); `binary` is the profiled program's file name.
    """
    m = re.search(r" \[([^\]]+)\]$", function)
    obj = Path(m.group(1)).name if m else ""
    text = function[:m.start()] if m else function
    where = re.match(r"(\?\?\?|[^:]*\.(?:rs|c|S|h)):(.*)$", text)
    file, name = (where.group(1), where.group(2)) if where else ("", text)
    if obj and obj != binary:
        return obj.split(".so")[0]
    if not obj and file.endswith((".c", ".S", ".h")):
        return "libc"
    trait = re.match(r"<(?:&|mut |dyn |\*const |\*mut )*(\w+)(?:<.*?>)? as (?:&|mut |dyn )*([\w:]+)", name)
    if trait and "::" not in name[:name.find(" as ")] and "::" in trait.group(2):
        name = trait.group(2)  # <W as core::fmt::Write>: the trait's crate
    name = re.sub(r"^(?:<|&|mut |dyn |\*const |\*mut |core::ptr::drop_in_place<)+", "", name)
    return re.split(r"::|<| ", name, maxsplit=1)[0] or name
