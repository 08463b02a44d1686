#!/usr/bin/env bash
# Partition upkeep for student_results (one LIST partition per exam year).
#
#   sql/ops/partitions.sh ensure YEAR          create student_results_YEAR if missing (idempotent)
#   sql/ops/partitions.sh detach YEAR [--drop] detach it CONCURRENTLY, archive it with pg_dump
#                                              to $ARCHIVE_DIR, and with --drop drop the table
#   sql/ops/partitions.sh list                 partitions with their row counts and sizes
#   sql/ops/partitions.sh purge-keys           delete expired idempotency keys (upkeep)
#
# ARCHIVE_DIR defaults to .local/archive. Connection settings: see lib.sh.
set -euo pipefail
# shellcheck source=sql/ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ops_env
ARCHIVE_DIR="${ARCHIVE_DIR:-$STATE_DIR/archive}"
umask 077  # archives hold every result of a year

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# attach state of student_results_YEAR: attached | pending | detached | missing
state_of() {
  q -c "SELECT CASE
          WHEN to_regclass('student_results_$1') IS NULL THEN 'missing'
          WHEN NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass('student_results_$1')) THEN 'detached'
          WHEN (SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass('student_results_$1')) THEN 'pending'
          ELSE 'attached' END"
}

ensure() {
  local year="$1" name existed
  check_year "$year"
  existed="$(state_of "$year")"
  case "$existed" in
    detached|pending) die "student_results_$year exists but is not attached ($existed): finish with 'sql/ops/partitions.sh detach $year [--drop]', or re-attach it with ALTER TABLE student_results ATTACH PARTITION student_results_$year FOR VALUES IN ($year)" ;;
  esac
  name="$(q -c "SELECT ensure_exam_year_partition($year)")"
  if [ "$existed" = attached ]; then
    say "partition $name already exists: nothing to do"
  else
    say "created partition $name"
  fi
}

detach() {
  local year="$1" drop="${2:-}" name state stamp file rows checksum
  check_year "$year"
  name="student_results_$year"
  state="$(state_of "$year")"
  case "$state" in
    missing) die "there is no table $name" ;;
    attached)
      say "detaching $name CONCURRENTLY (reads and writes to other years continue)"
      # Cannot run inside a transaction block; waits for queries that use the
      # partition to finish instead of blocking new ones.
      q -c "ALTER TABLE student_results DETACH PARTITION $name CONCURRENTLY" ;;
    pending)
      # A previous CONCURRENTLY detach was interrupted: finish it.
      say "finishing an interrupted detach of $name (DETACH PARTITION ... FINALIZE)"
      q -c "ALTER TABLE student_results DETACH PARTITION $name FINALIZE" ;;
    detached) say "$name is already detached" ;;
  esac

  mkdir -p "$ARCHIVE_DIR"
  stamp="$(utc_stamp)"
  file="$ARCHIVE_DIR/$name-$stamp.dump"
  read -r rows checksum < <(q -F ' ' -c "SELECT count(*), md5(coalesce(string_agg(exam_year || ',' || roll_number || ',' || marks, E'\n' ORDER BY roll_number), '')) FROM $name")
  pg_dump --format=custom --no-owner --table="public.$name" --file="$file.partial"
  mv "$file.partial" "$file"
  # Prove the archive is readable and holds the table's data before anything is dropped.
  pg_restore --list "$file" | grep -q "TABLE DATA public $name " || die "archive $file has no data for $name"
  printf 'table=%s\nexam_year=%s\nrows=%s\nchecksum=%s\ndumped_at=%s\n' "$name" "$year" "$rows" "$checksum" "$stamp" > "$file.manifest"
  say "archived $name ($rows rows, md5 $checksum) to $file"

  if [ "$drop" = --drop ]; then
    q -c "DROP TABLE $name"
    say "dropped $name; restore it with: pg_restore -d \$PGDATABASE $file, then ALTER TABLE student_results ATTACH PARTITION $name FOR VALUES IN ($year)"
  else
    say "$name is kept as a standalone table; drop it with: sql/ops/partitions.sh detach $year --drop"
  fi
}

list() {
  psql -X -q -v ON_ERROR_STOP=1 -c "
    SELECT c.relname AS partition, pg_get_expr(c.relpartbound, c.oid) AS bound,
           CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END AS approx_rows,
           pg_size_pretty(pg_total_relation_size(c.oid)) AS total_size
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'student_results'::regclass ORDER BY c.relname"
}

purge_keys() {
  say "purged $(q -c "SELECT purge_expired_idempotency_keys()") expired idempotency keys"
}

case "${1:-}" in
  ensure) [ $# -eq 2 ] || usage; ensure "$2" ;;
  detach) [ $# -ge 2 ] && [ $# -le 3 ] || usage; [ $# -eq 2 ] || [ "$3" = --drop ] || usage; detach "$2" "${3:-}" ;;
  list) list ;;
  purge-keys) [ $# -eq 1 ] || usage; purge_keys ;;
  *) usage ;;
esac
