"""`make bench`: results-day benchmarks against the local stack from `make up`.

Every scenario runs a real load generator for a few seconds against real
processes on 127.0.0.1 and is reported as a markdown table:

  point         GET /results/{year}/{roll} through get-result -> PgBouncer -> replica
                (wrk), side by side with the same SQL through PgBouncer and directly
                against the replica (pgbench) and with the function's /healthz
  mixed         10:1 reads to authenticated writes (get-result + update/create-result)
  list          keyset pages of 100: random pages under load, and one walk through a
                whole year
  results-day   the crowd's lookups (every student's roll number a few times within
                minutes) through get-result processes of our own with the in-process
                cache off and on, beside pgbench through PgBouncer: database CPU per
                served request
  batch         rows/s of HTTP batch loads (create-results-batch) beside psql \\copy
                of the same rows into a scratch year
  sweep         one get-result process of our own (list-results, update-result too)
                against in-flight concurrency 1..512 and pool size; the knee and the
                Knative settings it implies
  cold          exec -> first /readyz and -> first served request (20 runs),
                RSS idle and under load, binary sizes
  instructions  instructions per served request of get-result alone and of a
                minimal hyper + tokio-postgres baseline (valgrind --tool=callgrind,
                a fixed number of requests): the noise-free cost measure
  profile       where the time goes at 64 connections: round trips per request,
                pool wait vs query time, log level, perf
  growth        1M / 10M (/ 50M) rows in a scratch database on the primary: bulk
                load with the psql seed and with COPY, point-read p99, planning time
                against the number of partitions

Python 3 with PyYAML (Debian: python3-yaml) for the functions' manifest.
Settings come from the environment (see `settings.Settings`);
`BENCH_QUICK=1` is the short version. The output file is
bench-results/<UTC timestamp>.md (plus .json).

# Layout

  settings.py      what to run (environment) and the functions (functions.yaml)
  stats.py         percentiles, the knee, Knative recommendations, the pool choice
  report.py        markdown tables and the report being written
  cpu.py           CPU per process group from /proc, per request
  stack.py         the running stack: psql, secrets, own function processes, metrics
  loadgen.py       wrk and pgbench: command lines, output parsers, measured runs
  callgrind.py     instructions per request of one process under callgrind
  runner.py        the run: machine table, scenarios in order, findings, files
  scenarios/       one module per scenario, each `NAME` and `run(bench)`
"""
