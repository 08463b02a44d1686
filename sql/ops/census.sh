#!/usr/bin/env bash
# Prints every student_results partition's row count and an md5 over its rows
# (in key order), then a TOTAL line: the same census backup.sh records and
# restore.sh checks. Use it to compare two databases, e.g. the live one and a
# point-in-time restore in a cluster.
#
#   sql/ops/census.sh            (PGDATABASE etc. choose the database; see lib.sh)
set -euo pipefail
# shellcheck source=sql/ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ops_env
[ $# -eq 0 ] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
out="$(q -c "$CENSUS_SQL")"
printf "partition|rows|md5\n%s\n" "$out" | { column -t -s "|" 2>/dev/null || cat; }
