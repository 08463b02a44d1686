#!/usr/bin/env bash
# A consistent backup of the exam_results database.
#
#   sql/ops/backup.sh
#
# Writes $BACKUP_DIR/exam_results-<UTC timestamp>.dump (pg_dump custom format;
# BACKUP_DIR defaults to .local/backups) and, beside it, a .census file: each
# partition's row count and an md5 over its rows in key order. Both come from
# the same exported snapshot (pg_export_snapshot + pg_dump --snapshot), so the
# census describes exactly what is in the dump even while writes go on;
# restore.sh checks the restored database against it.
# Connection settings: see lib.sh.
set -euo pipefail
# shellcheck source=sql/ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ops_env
[ $# -eq 0 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
command -v pg_dump >/dev/null || die "pg_dump not found (apt-get install postgresql-client)"

BACKUP_DIR="${BACKUP_DIR:-$STATE_DIR/backups}"
# Backups hold every result: readable by their owner only.
umask 077
mkdir -p "$BACKUP_DIR"
stamp="$(utc_stamp)"
file="$BACKUP_DIR/$PGDATABASE-$stamp.dump"
census="$file.census"
started=$(date +%s%N)

# A session that holds a repeatable-read snapshot open for pg_dump to share.
coproc SNAP { psql -X -q -At -v ON_ERROR_STOP=1 2>&1; }
# Bash unsets SNAP and SNAP_PID as soon as the coprocess exits: keep copies.
snap_in=${SNAP[1]:-} snap_out=${SNAP[0]:-} snap_pid=${SNAP_PID:-}
[ -n "$snap_pid" ] && [ -n "$snap_in" ] || die "psql exited at once: cannot reach $PGHOST:$PGPORT/$PGDATABASE"
cleanup() { kill "$snap_pid" 2>/dev/null || true; rm -f "$file.partial" "$census.partial"; }
trap cleanup EXIT
printf '%s\n' "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;" "SELECT pg_export_snapshot();" >&"$snap_in"
IFS= read -r -t 60 snapshot <&"$snap_out" || die "could not open a snapshot on $PGHOST:$PGPORT/$PGDATABASE"
[[ "$snapshot" =~ ^[0-9A-F]+-[0-9A-F]+-[0-9]+$ ]] || die "could not export a snapshot: $snapshot"

pg_dump --format=custom --compress=6 --snapshot="$snapshot" --file="$file.partial"

printf '%s;\n\\echo __census_end__\n' "$CENSUS_SQL" >&"$snap_in"
{
  echo "# census of $PGDATABASE at snapshot $snapshot ($stamp): partition|rows|md5"
  while IFS= read -r -t 600 line <&"$snap_out"; do
    [ "$line" = __census_end__ ] && break
    [[ "$line" == *"|"*"|"* ]] || die "census failed: $line"
    echo "$line"
  done
} > "$census.partial"
printf 'COMMIT;\n\\q\n' >&"$snap_in"
wait "$snap_pid" 2>/dev/null || true

mv "$file.partial" "$file"
mv "$census.partial" "$census"
elapsed=$(awk -v a="$started" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
total="$(grep '^TOTAL|' "$census" | cut -d'|' -f2)"
say "backup written: $file ($(du -h "$file" | cut -f1), $total rows, ${elapsed}s)"
say "census:         $census"
{ echo "partition|rows|md5"; grep -v '^#' "$census"; } | { column -t -s '|' 2>/dev/null || cat; }
say "restore with:   make restore FILE=$file   (or sql/ops/restore.sh $file)"
