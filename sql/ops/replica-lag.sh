#!/usr/bin/env bash
# Replication lag, measured on both sides.
#
#   sql/ops/replica-lag.sh [--max-lag SECONDS]
#
# On the primary (PGHOST:PGPORT, as the admin role, which may read
# pg_stat_replication): each standby's state, how many bytes of WAL it has not
# yet replayed, and the write/flush/replay lag times, plus the replication slots.
# On the replica (REPLICA_PGHOST:REPLICA_PGPORT): received vs replayed WAL, the
# time of the last replayed transaction, and the lag exactly as the read
# functions compute it (MAX_REPLICA_LAG_SECONDS is compared with this value).
# With --max-lag, exits 1 when the replica is down or lags more than SECONDS.
# Connection settings: see lib.sh.
set -euo pipefail
# shellcheck source=sql/ops/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ops_env
max_lag=""
case "${1:-}" in
  "") ;;
  --max-lag) max_lag="${2:?--max-lag needs a number of seconds}"; [[ "$max_lag" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--max-lag needs a number" ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

# The read functions' own lag query (functions/exam-results/src/db.rs): 0 when
# everything received has been replayed, else the age of the last replayed
# commit (or, if none has been replayed since start-up, the replica's uptime).
FUNCTION_LAG_SQL="SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0
  WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
  ELSE EXTRACT(EPOCH FROM now() - COALESCE(pg_last_xact_replay_timestamp(), pg_postmaster_start_time())) END::float8"

say "== primary $PGHOST:$PGPORT: pg_stat_replication (one row per connected standby)"
admin_psql -d "$PGDATABASE" -c "
SELECT application_name, client_addr, state, sync_state,
       pg_current_wal_lsn() AS primary_lsn, replay_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS replay_lag_bytes,
       write_lag, flush_lag, replay_lag
FROM pg_stat_replication ORDER BY application_name"
say "== primary $PGHOST:$PGPORT: replication slots (WAL kept for each standby)"
admin_psql -d "$PGDATABASE" -c "
SELECT slot_name, active, restart_lsn,
       pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) AS wal_retained
FROM pg_replication_slots ORDER BY slot_name"

say "== replica $REPLICA_PGHOST:$REPLICA_PGPORT"
if ! lag="$(PGHOST="$REPLICA_PGHOST" PGPORT="$REPLICA_PGPORT" PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-3}" q -c "$FUNCTION_LAG_SQL" 2>&1)"; then
  say "replica unreachable: $lag"
  say "read functions: reads fall back to READ_FALLBACK_DATABASE_URL (the primary) if set, otherwise answer 503 database_unavailable"
  [ -z "$max_lag" ] || exit 1
  exit 0
fi
PGHOST="$REPLICA_PGHOST" PGPORT="$REPLICA_PGPORT" psql -X -q -v ON_ERROR_STOP=1 -c "
SELECT pg_is_in_recovery() AS in_recovery,
       pg_is_wal_replay_paused() AS replay_paused,
       pg_last_wal_receive_lsn() AS received_lsn,
       pg_last_wal_replay_lsn() AS replayed_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) AS unreplayed_bytes,
       pg_last_xact_replay_timestamp() AS last_replayed_commit,
       round(($FUNCTION_LAG_SQL)::numeric, 3) AS function_lag_seconds"
say "lag as the read functions see it: ${lag}s${max_lag:+ (limit ${max_lag}s)}"
blind="$(PGHOST="$REPLICA_PGHOST" PGPORT="$REPLICA_PGPORT" q -c "SELECT pg_last_xact_replay_timestamp() IS NULL
  AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn()")"
if [ "$blind" = t ]; then
  say "WARNING: WAL is waiting to be replayed but no commit has been replayed since the replica started,"
  say "         so the functions count the replica's uptime as its lag; judge by unreplayed_bytes above"
fi
if [ -n "$max_lag" ] && awk -v l="$lag" -v m="$max_lag" 'BEGIN { exit !(l > m) }'; then
  say "replica is LAGGING: read functions answer 503 replica_lagging, or read from READ_FALLBACK_DATABASE_URL if set"
  exit 1
fi
