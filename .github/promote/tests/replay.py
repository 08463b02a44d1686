"""Replay a rollout against a Prometheus holding the synthetic series, with a
recorded cluster and a simulated clock, and print the job summary. The same
harness as the tests; used for the example in docs/cicd.md.

    python3 .github/promote/tests/replay.py --prometheus-url URL --start UNIX_TIME REVISION...

``--start`` is the first synthetic sample's time (the tests' ``PromServer.start``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from fakes import FakeClock, RecordedCluster  # noqa: E402
from promote.gates import GateConfig, Prometheus  # noqa: E402
from promote.rollout import Rollout, RolloutConfig, commit_of  # noqa: E402
from promote.summary import markdown  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus-url", required=True)
    ap.add_argument("--start", type=int, required=True)
    ap.add_argument("revisions", nargs="+")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for rev in args.revisions:
        cfg = RolloutConfig(function="get-result", suffix=commit_of("get-result", rev), digest="sha256:" + "9c" * 32,
                            steps=(10, 50, 100),
                            gate=GateConfig(0.01, 0.3, "2m", 10), bake_seconds=120, check_interval=30)
        report = Rollout(cfg, RecordedCluster("get-result-stable.json", rev), Prometheus(args.prometheus_url),
                         FakeClock(args.start + 600), smoke=lambda url: []).run()
        print(markdown(report, "staging", "error ratio ≤ 0.01, p99 ≤ 0.3s over 2m, ≥ 10 requests; "
                                          "steps 10,50,100%, bake 120s, check every 30s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
