#!/usr/bin/env bash
# Migrates a non-partitioned student_results table to the partitioned layout,
# then applies sql/migrations (which are idempotent) so partition upkeep
# (ensure_exam_year_partition) and the supported years' partitions exist.
#
#   sql/ops/migrate-to-partitioned.sh [--drop-old] [--lock-timeout 10s]
#
# See sql/ops/migrate-to-partitioned.sql for the locking and the checks.
# Connection settings: see lib.sh.
set -euo pipefail
# shellcheck source=sql/ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ops_env
drop_old=0 lock_timeout=10s
while [ $# -gt 0 ]; do
  case "$1" in
    --drop-old) drop_old=1; shift ;;
    --lock-timeout) lock_timeout="${2:?}"; shift 2 ;;
    *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
started=$(date +%s%N)
psql -X -q -v ON_ERROR_STOP=1 -v drop_old="$drop_old" -v lock_timeout="$lock_timeout" \
  -f "$OPS_ROOT/sql/ops/migrate-to-partitioned.sql"
for migration in "$OPS_ROOT"/sql/migrations/*.sql; do
  psql -X -q -v ON_ERROR_STOP=1 -f "$migration" >/dev/null
done
say "applied sql/migrations; partitions now:"
q -c "SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'student_results'::regclass"
say "took $(awk -v a="$started" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')s"
