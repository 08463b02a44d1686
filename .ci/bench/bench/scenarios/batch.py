"""batch: rows/s of HTTP batch loads (create-results-batch) beside psql `\\copy` of the same rows.

Both load the same rows into a scratch exam year through the same PgBouncer
as the same role (exam_app), alternating, each into an empty year; the
year's rows (and its partition, when the run created it) are removed
afterwards.
"""
from __future__ import annotations

import http.client
import os
import time
from pathlib import Path

from ..cpu import CpuWatch, cpu_row, postmaster_pids
from ..report import ratio

NAME = "batch"


def csv_rows(rows: int, year: int | None = None) -> str:
    """Roll numbers 1..rows with marks roll % 101: the HTTP body (header
    `roll_number,marks`) or, with `year`, the lines psql's `\\copy` reads."""
    if year is None:
        return "roll_number,marks\n" + "".join(f"{n},{n % 101}\n" for n in range(1, rows + 1))
    return "".join(f"{n},{n % 101},{year}\n" for n in range(1, rows + 1))


def http_batch(port: int, year: int, token: str, body: Path, timeout: float = 600) -> tuple[int, bytes]:
    """POST /results/batches?exam_year=Y with the file streamed as the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        with body.open("rb") as fh:
            conn.request("POST", f"/results/batches?exam_year={year}", body=fh, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "text/csv",
                "Content-Length": str(body.stat().st_size), "Accept": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
    finally:
        conn.close()


def run(b) -> None:
    s, r, st = b.s, b.report, b.stack
    year, rows = s.batch_year, s.batch_rows
    primary = (s.primary_port, "exam_results")
    existing = int(st.psql(f"SELECT count(*) FROM student_results WHERE exam_year = {year}", *primary).strip())
    if existing:
        raise RuntimeError(f"BENCH_BATCH_YEAR {year} holds {existing} results: choose an empty year")
    created = st.psql(f"SELECT to_regclass('student_results_{year}') IS NULL", *primary).strip() == "t"
    st.psql(f"SELECT ensure_exam_year_partition({year})", *primary)
    http_body, copy_file = st.tmp / "batch.csv", st.tmp / "copy.csv"
    http_body.write_text(csv_rows(rows))
    copy_file.write_text(csv_rows(rows, year))

    def empty_year() -> None:
        st.psql(f"DELETE FROM student_results WHERE exam_year = {year}", *primary, options="-c statement_timeout=0")

    def timed(kind: str) -> dict:
        empty_year()
        watch = CpuWatch(postmaster_pids(s.state_dir))
        watch.begin()
        t0 = time.monotonic()
        if kind == "HTTP batch (create-results-batch)":
            status, body = http_batch(s.ports["create-results-batch"], year, st.secrets["WRITE_TOKEN"], http_body)
            if status != 201:
                raise RuntimeError(f"create-results-batch answered {status}: {body[:500]!r}")
        else:
            st.psql(f"\\copy student_results (roll_number, marks, exam_year) FROM '{copy_file}' CSV",
                    s.pgbouncer_port, "exam_results")
        seconds = time.monotonic() - t0
        cpu = watch.end()
        loaded = int(st.psql(f"SELECT count(*) FROM student_results WHERE exam_year = {year}", *primary).strip())
        if loaded != rows:
            raise RuntimeError(f"{kind} loaded {loaded} of {rows} rows")
        return {"kind": kind, "seconds": seconds, "rows_per_s": rows / seconds, "cpu": cpu}

    kinds = ["HTTP batch (create-results-batch)", "psql \\copy through PgBouncer"]
    runs = []
    try:
        for i in range(s.batch_runs):
            for kind in (kinds if i % 2 == 0 else kinds[::-1]):
                runs.append(timed(kind))
    finally:
        empty_year()
        if created:
            st.psql(f"DROP TABLE IF EXISTS student_results_{year}", *primary)
        st.psql(f"DELETE FROM result_mark_counts WHERE exam_year = {year}", *primary)
    best = {k: max(x["rows_per_s"] for x in runs if x["kind"] == k) for k in kinds}
    r.h("Batch loads: HTTP beside psql \\copy")
    r.p(f"{rows:,} rows (`roll_number,marks`, {http_body.stat().st_size / 1e6:.1f} MB of CSV) loaded into the "
        f"empty scratch year {year} (BENCH_BATCH_YEAR; its partition "
        f"{'created for the run and dropped after' if created else 'kept, its rows deleted after'}), "
        f"{s.batch_runs} times each, alternating: `POST /results/batches?exam_year={year}` (text/csv, "
        "`Authorization: Bearer $WRITE_TOKEN`, body streamed from a file) to the stack's create-results-batch, "
        "and psql `\\copy student_results (roll_number, marks, exam_year) FROM ... CSV` as exam_app through "
        "the same PgBouncer. Each is timed from the request to the answer (HTTP 201, psql's exit) and checked "
        "by counting the year's rows on the primary.")
    r.t(["load", "seconds", "rows/s", "ratio to best psql \\copy"],
        [[x["kind"], x["seconds"], x["rows_per_s"], ratio(x["rows_per_s"], best[kinds[1]])] for x in runs])
    r.p(f"Best of each: HTTP batch {best[kinds[0]]:,.0f} rows/s, psql \\copy {best[kinds[1]]:,.0f} rows/s; "
        f"ratio {best[kinds[0]] / best[kinds[1]]:.2f}.")
    r.p("CPU during each load (cores, of %d; psql counts as the load generator, every other process on the "
        "machine as \"other\"):" % (os.cpu_count() or 1))
    columns = ["create-results-batch"] + [c for c in b.cpu_columns if c != "get-result"]
    r.t(["load"] + columns, [[x["kind"]] + cpu_row(x["cpu"], columns) for x in runs])
    b.results["batch"] = {"year": year, "rows": rows, "runs": runs, "best_rows_per_s": best,
                          "ratio_http_to_copy": best[kinds[0]] / best[kinds[1]]}
