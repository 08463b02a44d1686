#!/usr/bin/env bash
# Replication lag, measured on both sides.
#
#   sql/ops/replica-lag.sh [--max-lag SECONDS]
#
# On the primary (PGHOST:PGPORT, as the admin role, which may read
# pg_stat_replication): each standby's state, how many bytes of WAL it has not
# yet replayed, and the write/flush/replay lag times, plus the replication slots.
# On the replica (REPLICA_PGHOST:REPLICA_PGPORT): received vs replayed WAL, the
# time of the last replayed transaction, and the lag as the read functions
# judge it (MAX_REPLICA_LAG_SECONDS is compared with this value): 0 when
# caught up; about 1 s when replay passed, within one second, everything that
# had been received at the start (a replica keeping up with a long
# transaction); otherwise the age of the last replayed commit (or the
# replica's uptime if it has replayed none). Takes one second to measure.
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

# Age of the last replayed commit while WAL waits (the replica's uptime if it
# has replayed none); 0 when everything received has been replayed.
COMMIT_AGE_SQL="SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0
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
replica_q() { PGHOST="$REPLICA_PGHOST" PGPORT="$REPLICA_PGPORT" PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-3}" q -c "$1"; }
if ! received="$(replica_q "SELECT coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())" 2>&1)"; then
  say "replica unreachable: $received"
  say "read functions: reads fall back to READ_FALLBACK_DATABASE_URL (the primary) if set, otherwise answer 503 database_unavailable"
  [ -z "$max_lag" ] || exit 1
  exit 0
fi
# The functions sample the received position every second and count how long
# replay takes to pass it; one sample, one second apart, does the same here.
sleep 1
state="$(replica_q "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 'caught-up'
  WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 'caught-up'
  WHEN pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '$received') >= 0 THEN 'keeping-up'
  ELSE 'behind' END")"
case "$state" in
  caught-up) lag=0 ;;
  keeping-up) lag=1 ;;
  *) lag="$(replica_q "$COMMIT_AGE_SQL")" ;;
esac
PGHOST="$REPLICA_PGHOST" PGPORT="$REPLICA_PGPORT" psql -X -q -v ON_ERROR_STOP=1 -c "
SELECT pg_is_in_recovery() AS in_recovery,
       pg_is_wal_replay_paused() AS replay_paused,
       pg_last_wal_receive_lsn() AS received_lsn,
       pg_last_wal_replay_lsn() AS replayed_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) AS unreplayed_bytes,
       pg_last_xact_replay_timestamp() AS last_replayed_commit,
       round(($COMMIT_AGE_SQL)::numeric, 3) AS commit_age_seconds"
say "replay over the last second: $state"
say "lag as the read functions see it: ${lag}s${max_lag:+ (limit ${max_lag}s)}"
blind="$(PGHOST="$REPLICA_PGHOST" PGPORT="$REPLICA_PGPORT" q -c "SELECT pg_last_xact_replay_timestamp() IS NULL
  AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn()")"
if [ "$blind" = t ]; then
  say "WARNING: WAL is waiting to be replayed but no commit has been replayed since the replica started,"
  say "         so its uptime counts as its lag; judge by unreplayed_bytes above"
fi
if [ -n "$max_lag" ] && awk -v l="$lag" -v m="$max_lag" 'BEGIN { exit !(l > m) }'; then
  say "replica is LAGGING: read functions answer 503 replica_lagging, or read from READ_FALLBACK_DATABASE_URL if set"
  exit 1
fi
