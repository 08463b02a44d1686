"""The scenarios, one module each, in the order a run takes them.

Each module has `NAME` (its BENCH_ONLY name) and `run(bench)`, which writes
its section into `bench.report` and its numbers into `bench.results`.
`machine` (first) and `findings` (last) are reported in every run.
"""
from . import batch, cold, growth, instructions, listing, mixed, point, profile, results_day, sweep

ORDER = (point, mixed, listing, results_day, batch, sweep, cold, instructions, profile, growth)
NAMES = tuple(m.NAME for m in ORDER)
