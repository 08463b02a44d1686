"""Statistics and the settings the sweeps imply."""
from __future__ import annotations

import math


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def knee(points: list[dict], share: float = 0.9) -> dict:
    """The smallest concurrency whose throughput reaches `share` of the best."""
    best = max(p["rps"] for p in points)
    for point in sorted(points, key=lambda p: p["concurrency"]):
        if point["rps"] >= share * best:
            return point
    raise AssertionError("unreachable")


def recommend(points: list[dict], p99_budget_ms: float) -> dict:
    """Knative settings from a concurrency sweep of one pod.

    - target: the knee (smallest in-flight count reaching 90% of peak
      throughput). Past it, more in-flight requests per pod only queue.
    - containerConcurrency: the largest swept concurrency that still holds 90%
      of peak throughput with p99 within the budget, at least 2 x target; the
      hard cap keeps a pod from being pushed into queueing collapse.
    """
    k = knee(points)
    best = max(p["rps"] for p in points)
    ok = [
        p["concurrency"]
        for p in points
        if p["rps"] >= 0.9 * best and p["p99_ms"] <= p99_budget_ms and p["errors"] == 0
    ]
    cc = max(ok) if ok else k["concurrency"]
    cc = max(cc, 2 * k["concurrency"])
    return {
        "knee": k["concurrency"],
        "knee_rps": k["rps"],
        "knee_p99_ms": k["p99_ms"],
        "peak_rps": best,
        "target": k["concurrency"],
        "container_concurrency": cc,
        "p99_budget_ms": p99_budget_ms,
    }


def best_pool(points: list[dict], share: float = 0.90) -> dict:
    """The smallest pool size within `share` of the best throughput.

    10%: on the shared reference machine two passes of the same point differ
    by about that much, so smaller differences say nothing about the pool.
    """
    best = max(p["rps"] for p in points)
    for point in sorted(points, key=lambda p: p["pool"]):
        if point["rps"] >= share * best:
            return point
    raise AssertionError("unreachable")


