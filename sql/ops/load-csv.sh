#!/usr/bin/env bash
# Loads a CSV file of results into one exam year's partition: all or nothing.
#
#   sql/ops/load-csv.sh FILE YEAR
#
# FILE is CSV with a header row naming its columns: roll_number and marks,
# and optionally exam_year (which must then equal YEAR on every row), in any
# order. The file is copied with psql \copy into a temporary staging table
# (every column as text, so no record can abort the copy), then every record
# is checked:
#   - roll_number present, a whole number, 1..999999999999
#   - marks present, a whole number, 0..100
#   - exam_year (if the column is there) equal to YEAR
#   - roll_number not repeated within the file
#   - no result for (YEAR, roll_number) already in the database
# If every record passes, all of them are inserted into student_results_YEAR
# in the same transaction and committed (exit 0). If any record fails, the
# report lists each rejected record with its reason, the transaction is rolled
# back and nothing is loaded (exit 1). Any other failure (the partition is
# missing, a concurrent writer inserted one of the keys, the server went
# away) also leaves nothing behind (exit 2).
#
# The report lists the first REPORT_ROWS (default 20) rejected records and a
# count per reason; REJECTS_FILE=path writes every rejected record, with its
# reason, as CSV.
# Connection settings: see lib.sh.
set -euo pipefail
# shellcheck source=sql/ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ops_env

[ $# -eq 2 ] || { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
file="$1" year="$2"
check_year "$year"
[ -n "$file" ] && [ -r "$file" ] && [ -f "$file" ] || die "cannot read CSV file '$file'"

# The header decides the column list of \copy; only known names are accepted.
# (A UTF-8 byte order mark, as spreadsheet exports write, is ignored.)
header="$(head -n 1 "$file" | sed $'s/^\xEF\xBB\xBF//' | tr -d '\r' | tr -d '"' | tr '[:upper:]' '[:lower:]' | tr -d ' ')"
columns=()
IFS=',' read -r -a names <<< "$header"
for col in "${names[@]}"; do
  case "$col" in
    roll_number|marks|exam_year) ;;
    *) die "unknown column '$col' in the header of $file (expected roll_number, marks and optionally exam_year)" ;;
  esac
  for seen in "${columns[@]}"; do [ "$seen" != "$col" ] || die "column '$col' appears twice in the header"; done
  columns+=("$col")
done
for needed in roll_number marks; do
  [[ " ${columns[*]} " == *" $needed "* ]] || die "the header of $file has no '$needed' column"
done
collist="$(IFS=,; echo "${columns[*]}")"
partition="student_results_$year"
report_rows="${REPORT_ROWS:-20}"
[[ "$report_rows" =~ ^[0-9]+$ ]] || die "REPORT_ROWS must be a number"

rejects_out=""
[ -n "${REJECTS_FILE:-}" ] && rejects_out="\\copy (SELECT record, roll_number, exam_year, marks, reason FROM csv_checked WHERE reason IS NOT NULL ORDER BY record) TO '${REJECTS_FILE//\'/\'\'}' WITH (FORMAT csv, HEADER true)"

err="$(mktemp)"; trap 'rm -f "$err"' EXIT
set +e
# One session, one transaction (psql --single-transaction): the staging table,
# the checks and the insert commit together or not at all.
psql -X -q -v ON_ERROR_STOP=1 --single-transaction --pset=footer=off \
  -v year="$year" -v partition="$partition" -v file="$file" 2>"$err" <<SQL
\set QUIET on
-- The partition must exist and be attached, or the batch has nowhere to go.
SELECT (EXISTS (SELECT 1 FROM pg_inherits i
                WHERE i.inhrelid = to_regclass(:'partition') AND NOT i.inhdetachpending
                  AND i.inhparent = 'student_results'::regclass)) AS partition_ok \gset
\if :partition_ok
\else
  \warn 'load-csv: partition $partition does not exist or is detached: create it first with make partitions YEAR=$year (sql/ops/partitions.sh ensure $year)'
  DO \$\$ BEGIN RAISE EXCEPTION 'load-csv: partition missing'; END \$\$;
\endif

CREATE TEMP TABLE csv_stage (
    record      bigint GENERATED ALWAYS AS IDENTITY,
    roll_number text,
    exam_year   text,
    marks       text
) ON COMMIT DROP;
\copy csv_stage ($collist) FROM '${file//\'/\'\'}' WITH (FORMAT csv, HEADER true)

CREATE TEMP TABLE csv_checked ON COMMIT DROP AS
WITH parsed AS (
    SELECT s.*,
           CASE WHEN btrim(s.roll_number) ~ '^[0-9]{1,12}\$' THEN btrim(s.roll_number)::bigint END AS roll,
           CASE WHEN btrim(s.marks) ~ '^[+-]?[0-9]{1,9}\$' THEN btrim(s.marks)::int END AS mark
    FROM csv_stage s
), counted AS (
    SELECT p.*, CASE WHEN p.roll IS NULL THEN 1 ELSE count(*) OVER (PARTITION BY p.roll) END AS copies
    FROM parsed p
)
SELECT c.record, c.roll_number, c.exam_year, c.marks,
       CASE
         WHEN c.roll_number IS NULL OR btrim(c.roll_number) = '' THEN 'roll_number is missing'
         WHEN c.roll IS NULL THEN 'roll_number is not a whole number of at most 12 digits'
         WHEN c.roll < 1 THEN 'roll_number must be at least 1'
         WHEN c.marks IS NULL OR btrim(c.marks) = '' THEN 'marks is missing'
         WHEN c.mark IS NULL THEN 'marks is not a whole number'
         WHEN c.mark NOT BETWEEN 0 AND 100 THEN 'marks must be between 0 and 100'
         WHEN c.exam_year IS NOT NULL AND btrim(c.exam_year) IS DISTINCT FROM :'year' THEN 'exam_year is not ' || :'year'
         WHEN c.copies > 1 THEN 'roll_number appears ' || c.copies || ' times in the file'
         WHEN EXISTS (SELECT 1 FROM student_results r WHERE r.exam_year = :year AND r.roll_number = c.roll)
           THEN 'a result for this exam_year and roll_number already exists'
       END AS reason,
       c.roll, c.mark
FROM counted c;

SELECT count(*) AS total, count(*) FILTER (WHERE reason IS NOT NULL) AS rejected,
       count(*) FILTER (WHERE reason IS NOT NULL) > 0 AS has_rejects
FROM csv_checked \gset
SELECT format('load-csv: %s -> %s', :'file', :'partition') AS line1,
       format('  records in file: %s', :total) AS line2,
       format('  rejected:        %s', :rejected) AS line3 \gset
\echo :line1
\echo :line2
\echo :line3
\if :has_rejects
  \echo ''
  SELECT format('rejected records (record = data row number, header not counted; %s of %s shown):',
                least(:rejected, $report_rows), :rejected) AS line6 \gset
  \echo :line6
  SELECT record, roll_number, exam_year, marks, reason FROM csv_checked
  WHERE reason IS NOT NULL ORDER BY record LIMIT $report_rows;
  \echo 'rejections by reason:'
  SELECT reason, count(*) AS records FROM csv_checked WHERE reason IS NOT NULL GROUP BY reason ORDER BY count(*) DESC, reason;
  $rejects_out
  \echo 'NOTHING WAS LOADED: the batch is all or nothing. Fix the rejected records and run again.'
  -- Leave psql with an error so the single transaction rolls back.
  DO \$\$ BEGIN RAISE EXCEPTION 'load-csv: batch rejected'; END \$\$;
\else
  INSERT INTO :"partition" (roll_number, exam_year, marks)
  SELECT roll, :year, mark FROM csv_checked ORDER BY roll;
  -- Rows written straight into a partition bypass the parent's statistics
  -- trigger (sql/migrations/0007_publications.sql): recount the year.
  SELECT refresh_result_mark_counts(:year) AS counted \gset
  SELECT format('  loaded:          %s rows, committed in one transaction', :total) AS line4,
         format('  %s now holds %s rows', :'partition', (SELECT count(*) FROM :"partition")) AS line5 \gset
  \echo :line4
  \echo :line5
\endif
SQL
rc=$?
set -e
if [ $rc -eq 0 ]; then exit 0; fi
if grep -q 'load-csv: batch rejected' "$err"; then exit 1; fi
if grep -q 'load-csv: partition missing' "$err"; then
  grep -v -e 'ERROR:' -e 'CONTEXT:' "$err" >&2 || true
  exit 2
fi
cat "$err" >&2
echo "load-csv: the load failed and was rolled back: NOTHING WAS LOADED" >&2
exit 2
