"""get-result's instructions per served request must not grow past the committed reference.

    make test-instructions        # the check (part of make test)
    make instructions-reference   # re-measure and rewrite reference.json on purpose; commit it

A throwaway local system (`.ci/stack.sh up` with its own state directory,
free ports and a 10,000-row seed; `down` and removed afterwards) serves
get-result's release binary under `valgrind --tool=callgrind`; the
benchmark's own measure (.ci/bench/bench/callgrind.py) counts every
instruction the process executes for a fixed list of point reads on one
keep-alive connection, after a warm-up. Instruction counts do not move with
the load on the machine; what is left (thread interleaving, hash seeds, the
once-a-second replica-lag probe) is measured by `make instructions-reference`
and recorded in the reference beside the margin.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
REFERENCE = HERE / "reference.json"
sys.path.insert(0, str(HERE.parent))

from bench import callgrind  # noqa: E402
from bench.settings import FUNCTIONS, Settings  # noqa: E402
from bench.stack import Stack, free_port_pair  # noqa: E402

UPDATE = os.environ.get("UPDATE_REFERENCE") == "1"
SEED_ROWS = 10_000
# Time bounds: the throwaway system (first build included) and each measured process.
UP_TIMEOUT_S = 1800
DOWN_TIMEOUT_S = 120


@contextlib.contextmanager
def local_system():
    """`.ci/stack.sh up` in a fresh state directory on free ports; the environment that reaches it.

    The one place this check depends on how a database sandbox is made.
    """
    if callgrind.available():
        pytest.fail(f"{callgrind.available()} not found: install the Debian package valgrind (.ci/apt-bench.txt)")
    parent = Path(tempfile.mkdtemp(prefix="exam-instructions-"))
    os.chmod(parent, 0o755)  # PostgreSQL runs as the postgres user
    env = dict(os.environ, STATE_DIR=str(parent / "state"), SEED_ROWS=str(SEED_ROWS))
    variables = ["PRIMARY_PORT", "REPLICA_PORT", "PGBOUNCER_PORT", "PROMETHEUS_PORT", "PGBOUNCER_EXPORTER_PORT",
                 "POSTGRES_PRIMARY_EXPORTER_PORT", "POSTGRES_REPLICA_EXPORTER_PORT",
                 *(f.port_variable for f in FUNCTIONS)]
    taken: set[int] = set()
    for var in variables:
        port = free_port_pair()  # a function's metrics listen on port + 1000
        while {port, port + 1000} & taken:
            port = free_port_pair()
        taken |= {port, port + 1000}
        env[var] = str(port)
    stack = [str(ROOT / ".ci" / "stack.sh")]
    try:
        up = subprocess.run(stack + ["up"], env=env, capture_output=True, text=True, timeout=UP_TIMEOUT_S)
        assert up.returncode == 0, f"stack.sh up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        yield env
    finally:
        subprocess.run(stack + ["down"], env=env, capture_output=True, timeout=DOWN_TIMEOUT_S)
        shutil.rmtree(parent, ignore_errors=True)


def measure(env: dict, requests: int, runs: int) -> list[float]:
    """Instructions per request of get-result, `runs` times over the same `requests` point reads."""
    stack = Stack(Settings.from_env(env))
    try:
        year, lo, hi = stack.seeded_range()
        paths = callgrind.point_read_paths(year, lo, hi, requests)
        return [callgrind.measure(stack, "get-result", paths)["per_request"] for _ in range(runs)]
    finally:
        stack.cleanup()


def test_get_result_instructions_per_request_stay_within_the_margin_of_the_reference():
    reference = json.loads(REFERENCE.read_text())
    with local_system() as env:
        if UPDATE:
            runs = measure(env, reference["requests"], reference["runs_measured"])
            spread = (max(runs) - min(runs)) / min(runs)
            reference.update(per_request=round(sum(runs) / len(runs)), spread=round(spread, 4),
                             runs=[round(r) for r in runs])
            REFERENCE.write_text(json.dumps(reference, indent=2) + "\n")
            print(f"reference.json: {reference['per_request']:,} instructions per request "
                  f"(runs {', '.join(f'{r:,.0f}' for r in runs)}, spread {spread:.2%})")
            return
        measured = measure(env, reference["requests"], 1)[0]
    limit = reference["per_request"] * (1 + reference["margin"])
    growth = measured / reference["per_request"] - 1
    print(f"get-result: {measured:,.0f} instructions per request; reference {reference['per_request']:,} "
          f"({growth:+.2%}, margin {reference['margin']:.0%})")
    assert measured <= limit, (
        f"get-result now executes {measured:,.0f} instructions per request, {growth:+.1%} over the reference "
        f"{reference['per_request']:,} (margin {reference['margin']:.0%}). Find where they went with "
        f"callgrind_annotate (docs/performance.md); if the growth is intended, run `make instructions-reference` "
        f"and commit .ci/bench/regression/reference.json.")
