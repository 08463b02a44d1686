//! The connection pool and the queries: single-result reads and writes,
//! writes under an idempotency key (one transaction with the record of the
//! response), reads at a consistency token, and batch loads ([`BatchTx`]).
//!
//! Every query is sent with [`tokio_postgres::Client::query_typed`]: an
//! unnamed statement whose parameter types are given up front, so Parse,
//! Bind, Execute and Sync travel in one message and the answer comes back in
//! one round trip. The one named statement, a batch load's COPY, is
//! prepared, used and closed inside its transaction. That is what PgBouncer
//! in transaction pooling mode (1.18 has no protocol-level prepared
//! statements) requires.
//!
//! The pool checks a connection at checkout without a round trip (is the
//! socket still open?) and drops any connection that failed, so a broken
//! connection is never handed out twice.

use std::time::{Duration, Instant};

use bb8::{ManageConnection, Pool, RunError};
use bb8_postgres::PostgresConnectionManager;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, GenericClient, NoTls, Row};

use crate::model::{ExamResult, ListQuery, ResultKey};
use crate::telemetry;

/// What a query can fail with, already sorted by what the client should see.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The pooler or database could not be reached in time, the pool was
    /// exhausted, or the query ran past the statement timeout.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A read that needs a WAL position this replica has not replayed yet.
    #[error("the replica has not replayed {0} yet")]
    NotReplayed(Lsn),
    /// Another request with this idempotency key is being processed.
    #[error("idempotency key in progress")]
    KeyInProgress,
    /// This idempotency key was used for a different request.
    #[error("idempotency key reused for another request")]
    KeyReused,
    /// A result with this key exists (unique violation).
    #[error("unique violation on {0:?}")]
    Exists(ResultKey),
    /// No partition of `student_results` accepts this exam year.
    #[error("no partition for exam year {0}")]
    NoPartition(i32),
    /// Anything else (a bug or a schema problem).
    #[error("database error: {0}")]
    Other(String),
}

/// Which query a duration belongs to (the `operation` metric label).
#[derive(Clone, Copy, Debug)]
pub enum Operation {
    /// `INSERT ... RETURNING`.
    InsertResult,
    /// Point read.
    SelectResult,
    /// One keyset page.
    ListResults,
    /// `UPDATE ... RETURNING`.
    UpdateResult,
    /// `DELETE`.
    DeleteResult,
    /// Every year's publication time.
    SelectPublications,
    /// Set a year's publication time and audit the change.
    SetPublication,
    /// One year's mark counts (statistics).
    SelectMarkCounts,
    /// `/readyz` probe.
    Readiness,
    /// Replica lag probe.
    ReplicaLag,
    /// The primary's WAL position after a write.
    CurrentLsn,
    /// A whole batch load (body, COPY, checks, insert).
    LoadBatch,
}

impl Operation {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsertResult => "insert_result",
            Self::SelectResult => "select_result",
            Self::ListResults => "list_results",
            Self::UpdateResult => "update_result",
            Self::DeleteResult => "delete_result",
            Self::SelectPublications => "select_publications",
            Self::SetPublication => "set_publication",
            Self::SelectMarkCounts => "select_mark_counts",
            Self::Readiness => "readiness",
            Self::ReplicaLag => "replica_lag",
            Self::CurrentLsn => "current_lsn",
            Self::LoadBatch => "load_batch",
        }
    }
}

/// Wraps bb8-postgres's manager so the checkout test costs no round trip and
/// a connection attempt, login included, has a deadline.
#[derive(Debug)]
pub struct Manager {
    inner: PostgresConnectionManager<NoTls>,
    /// `DATABASE_CONNECT_TIMEOUT_MS`, for the whole attempt. tokio-postgres
    /// applies its connect timeout to the socket's connect only, and bb8 waits
    /// for an attempt without a limit while the attempt holds one of the
    /// pool's places: a pooler that accepts the socket and never finishes the
    /// login (PgBouncer holding logins while it cannot reach PostgreSQL, a
    /// half-open connection) would otherwise take those places for good.
    login_timeout: Option<Duration>,
}

/// Why the pool could not provide a connection.
#[derive(Debug)]
pub enum ManagerError {
    /// Connecting (or logging in) failed.
    Connect(tokio_postgres::Error),
    /// Connecting and logging in took longer than the connect timeout.
    LoginTimedOut(Duration),
    /// A pooled connection's socket was found closed at checkout.
    Closed,
}

impl ManageConnection for Manager {
    type Connection = Client;
    type Error = ManagerError;

    async fn connect(&self) -> Result<Client, ManagerError> {
        let attempt = self.inner.connect();
        let Some(limit) = self.login_timeout else {
            return attempt.await.map_err(ManagerError::Connect);
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(connected) => connected.map_err(ManagerError::Connect),
            Err(_) => Err(ManagerError::LoginTimedOut(limit)),
        }
    }

    async fn is_valid(&self, conn: &mut Client) -> Result<(), ManagerError> {
        // No round trip: a closed socket fails the check; a connection that
        // fails a query is marked broken on return (see `has_broken`).
        if conn.is_closed() {
            Err(ManagerError::Closed)
        } else {
            Ok(())
        }
    }

    fn has_broken(&self, conn: &mut Client) -> bool {
        conn.is_closed()
    }
}

/// A pool of connections to one database (through the pooler).
#[derive(Clone)]
pub struct Database {
    pool: Pool<Manager>,
    statement_timeout: Duration,
    max_size: u32,
    cancel_to: Option<CancelTarget>,
}

// The result statements, fixed at compile time (parameters are always bound, never interpolated).
const INSERT_RESULT: &str =
    "INSERT INTO student_results (roll_number, exam_year, marks) VALUES ($1, $2, $3) \
                             RETURNING roll_number, exam_year, marks";
const SELECT_RESULT: &str = "SELECT roll_number, exam_year, marks FROM student_results \
                             WHERE exam_year = $1 AND roll_number = $2";
const LIST_RESULTS: &str = "SELECT roll_number, exam_year, marks FROM student_results \
                            WHERE exam_year = $1 AND roll_number > $2 ORDER BY roll_number LIMIT $3";
// `$4`/`$3` is the set of marks the client's `If-Match` names (NULL: any).
// The condition is part of the statement, so a concurrent change is seen:
// the second of two writers waits for the first's row lock and re-checks
// the condition against the row the first committed.
const UPDATE_RESULT: &str = "UPDATE student_results SET marks = $3 \
                             WHERE exam_year = $1 AND roll_number = $2 \
                             AND ($4::int4[] IS NULL OR marks = ANY($4)) \
                             RETURNING roll_number, exam_year, marks";
const DELETE_RESULT: &str = "DELETE FROM student_results \
                             WHERE exam_year = $1 AND roll_number = $2 \
                             AND ($3::int4[] IS NULL OR marks = ANY($3)) \
                             RETURNING roll_number";
/// The commit position of everything this session has committed so far.
const CURRENT_LSN: &str = "SELECT pg_current_wal_lsn()::text";
/// True on a primary (a promoted replica included), or on a replica that has replayed `$1`.
const REPLAYED: &str = "SELECT NOT pg_is_in_recovery() \
                        OR COALESCE(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)";

// Publication times ('infinity' = withdrawn, read as NULL) and statistics
// (sql/migrations/0007_publications.sql).
const SELECT_PUBLICATIONS: &str = "SELECT exam_year, \
     CASE WHEN isfinite(publish_at) THEN publish_at END FROM publications";
// One statement: lock and read the old row, upsert, append the audit row.
// `saved` reads `old` so the lock is taken (and the old value read) before
// the upsert changes the row.
const SET_PUBLICATION: &str = "WITH old AS (\
         SELECT publish_at FROM publications WHERE exam_year = $1 FOR UPDATE), \
     saved AS (\
         INSERT INTO publications AS p (exam_year, publish_at, updated_at) \
         SELECT $1, coalesce($2, 'infinity'::timestamptz), now() \
         FROM (SELECT count(*) FROM old) AS locked \
         ON CONFLICT (exam_year) DO UPDATE SET publish_at = EXCLUDED.publish_at, updated_at = now() \
         RETURNING p.exam_year, p.publish_at), \
     audit AS (\
         INSERT INTO publication_audit (exam_year, changed_by, old_publish_at, new_publish_at) \
         SELECT exam_year, $3, (SELECT publish_at FROM old), publish_at FROM saved) \
     SELECT exam_year, CASE WHEN isfinite(publish_at) THEN publish_at END FROM saved";
const SELECT_MARK_COUNTS: &str = "SELECT marks, results FROM result_mark_counts \
     WHERE exam_year = $1 AND results > 0 ORDER BY marks";

impl Database {
    /// Builds the pool without connecting: the process starts (and answers
    /// `/healthz`) even while the database is down, and connects on demand.
    pub fn new(
        config: tokio_postgres::Config,
        size: u32,
        wait: Duration,
        statement_timeout: Duration,
    ) -> Self {
        let cancel_to = CancelTarget::of(&config);
        let pool = Pool::builder()
            .max_size(size)
            .min_idle(None)
            .connection_timeout(wait)
            .test_on_check_out(true)
            .idle_timeout(Some(Duration::from_secs(300)))
            .max_lifetime(Some(Duration::from_secs(1800)))
            .build_unchecked(Manager {
                login_timeout: config.get_connect_timeout().copied(),
                inner: PostgresConnectionManager::new(config, NoTls),
            });
        Self {
            pool,
            statement_timeout,
            max_size: size,
            cancel_to,
        }
    }

    /// The pool's configured size.
    pub fn max_size(&self) -> u32 {
        self.max_size
    }

    /// Connections (in use, idle) right now.
    pub fn connections(&self) -> (u32, u32) {
        let state = self.pool.state();
        (
            state.connections - state.idle_connections,
            state.idle_connections,
        )
    }

    /// Runs one statement with typed parameters, timing it and mapping errors;
    /// `key` names the row the statement is about, for the errors that need it.
    async fn run(
        &self,
        operation: Operation,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        key: Option<ResultKey>,
    ) -> Result<Vec<Row>, DbError> {
        let conn = self.checkout().await?;
        let work = async {
            conn.query_typed(sql, params)
                .await
                .map_err(|err| classify(err, key))
        };
        self.timed(operation, conn.cancel_token(), work).await
    }

    /// A connection from the pool, or why there is none.
    async fn checkout(&self) -> Result<bb8::PooledConnection<'_, Manager>, DbError> {
        let waited = Instant::now();
        let conn = self.pool.get().await.map_err(pool_error)?;
        telemetry::record_pool_wait(waited.elapsed());
        Ok(conn)
    }

    /// Runs `work` (one or more statements on one connection) within the
    /// statement timeout, timing it; past the timeout the server-side work is
    /// cancelled and an open transaction is rolled back (dropping a
    /// `Transaction` queues its `ROLLBACK`).
    async fn timed<T>(
        &self,
        operation: Operation,
        cancel: tokio_postgres::CancelToken,
        work: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.statement_timeout, work).await;
        telemetry::record_query(operation.as_str(), started.elapsed());
        match outcome {
            Ok(result) => result,
            Err(_) => {
                // Try to stop the server-side work too. PgBouncer forwards cancel
                // requests it can match; behind a Service with several PgBouncer pods
                // the cancel may land on another pod and be dropped, so the chart also
                // sets a server-side statement_timeout as the backstop.
                send_cancel(cancel, self.cancel_to.clone());
                Err(DbError::Unavailable(format!(
                    "{} exceeded the statement timeout of {:?}",
                    operation.as_str(),
                    self.statement_timeout
                )))
            }
        }
    }

    /// Reads one result; with `at`, only from a database that has replayed
    /// that position (else [`DbError::NotReplayed`]).
    pub async fn get(
        &self,
        key: ResultKey,
        at: Option<Lsn>,
    ) -> Result<Option<ExamResult>, DbError> {
        let rows = self
            .run_at(
                Operation::SelectResult,
                at,
                SELECT_RESULT,
                &[(&key.exam_year, Type::INT4), (&key.roll_number, Type::INT8)],
                Some(key),
            )
            .await?;
        Ok(rows.first().map(to_result))
    }

    /// Reads one keyset page: `limit + 1` rows are fetched to learn whether
    /// another page exists. `at` as for [`Database::get`].
    pub async fn list(
        &self,
        query: ListQuery,
        at: Option<Lsn>,
    ) -> Result<(Vec<ExamResult>, bool), DbError> {
        let fetch = query.limit + 1;
        let rows = self
            .run_at(
                Operation::ListResults,
                at,
                LIST_RESULTS,
                &[
                    (&query.exam_year, Type::INT4),
                    (&query.after, Type::INT8),
                    (&fetch, Type::INT8),
                ],
                None,
            )
            .await?;
        let more = rows.len() as i64 > query.limit;
        Ok((
            rows.iter()
                .take(query.limit as usize)
                .map(to_result)
                .collect(),
            more,
        ))
    }

    /// Runs a read; with `at`, first checks (in the same read-only
    /// transaction, so on the same server even behind a pooler or a load
    /// balanced replica Service) that the server has replayed `at`. The read
    /// is a later statement, so its snapshot includes everything replayed.
    async fn run_at(
        &self,
        operation: Operation,
        at: Option<Lsn>,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        key: Option<ResultKey>,
    ) -> Result<Vec<Row>, DbError> {
        match at {
            None => self.run(operation, sql, params, key).await,
            // Boxed: the rarer path's transaction futures would otherwise
            // make every read's future larger (and every move of it dearer).
            Some(lsn) => Box::pin(self.run_replayed(operation, lsn, sql, params, key)).await,
        }
    }

    /// [`Database::run_at`] with a position: the check and the read in one
    /// read-only transaction.
    async fn run_replayed(
        &self,
        operation: Operation,
        lsn: Lsn,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        key: Option<ResultKey>,
    ) -> Result<Vec<Row>, DbError> {
        let mut conn = self.checkout().await?;
        let cancel = conn.cancel_token();
        let work = async {
            let tx = conn
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .map_err(|err| classify(err, None))?;
            let text = lsn.to_string();
            let replayed: bool = tx
                .query_typed(REPLAYED, &[(&text, Type::TEXT)])
                .await
                .map_err(|err| classify(err, None))?
                .first()
                .is_some_and(|row| row.get(0));
            if !replayed {
                return Err(DbError::NotReplayed(lsn));
            }
            let rows = tx
                .query_typed(sql, params)
                .await
                .map_err(|err| classify(err, key))?;
            tx.commit().await.map_err(|err| classify(err, None))?;
            Ok(rows)
        };
        self.timed(operation, cancel, work).await
    }

    /// Performs one write in one statement (autocommit).
    pub async fn write(&self, write: Write<'_>) -> Result<Written, DbError> {
        let conn = self.checkout().await?;
        let cancel = conn.cancel_token();
        self.timed(write.operation(), cancel, execute(&*conn, write))
            .await
    }

    /// Performs one write under an idempotency key, in one transaction with
    /// the record of its response:
    ///
    /// - another request holding the key right now: [`DbError::KeyInProgress`];
    /// - the key recorded (not expired) for the same request: that response,
    ///   replayed, and nothing runs; for another request: [`DbError::KeyReused`];
    /// - otherwise the write runs and `reply` turns its outcome into the
    ///   response. A response (`Ok`) is recorded and committed with the
    ///   write; a refusal (`Err`: absent, precondition) is returned, nothing
    ///   is recorded and nothing was written, so a retry is judged afresh.
    pub async fn write_once<E>(
        &self,
        write: Write<'_>,
        once: &Once,
        reply: impl FnOnce(Written) -> Result<Recorded, E>,
    ) -> Result<Result<Keyed, E>, DbError> {
        let mut conn = self.checkout().await?;
        let cancel = conn.cancel_token();
        let work = async {
            let tx = conn
                .transaction()
                .await
                .map_err(|err| classify(err, None))?;
            let outcome = async {
                if let Some(recorded) = claim(&tx, once).await? {
                    return Ok(Ok(Keyed::Replayed(recorded)));
                }
                let recorded = match reply(execute(&tx, write).await?) {
                    Ok(recorded) => recorded,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                record(&tx, once, &recorded).await?;
                Ok(Ok(Keyed::Fresh(recorded)))
            }
            .await;
            // Commit a fresh write; otherwise end the transaction before
            // answering, so the key's lock is free when the client retries.
            match outcome {
                Ok(Ok(Keyed::Fresh(_))) => tx.commit().await.map_err(|err| classify(err, None))?,
                _ => {
                    let _ = tx.rollback().await;
                }
            }
            outcome
        };
        self.timed(write.operation(), cancel, work).await
    }

    /// The primary's current WAL position: at or after the commit of every
    /// transaction that has already committed (the consistency token of a write).
    pub async fn current_lsn(&self) -> Result<Lsn, DbError> {
        let rows = self
            .run(Operation::CurrentLsn, CURRENT_LSN, &[], None)
            .await?;
        rows.first()
            .and_then(|row| row.get::<_, Option<String>>(0))
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| DbError::Other("pg_current_wal_lsn() returned no position".into()))
    }

    /// Every scheduled year's publication time (`None`: withdrawn).
    pub async fn publications(&self) -> Result<Vec<(i32, Option<OffsetDateTime>)>, DbError> {
        let rows = self
            .run(
                Operation::SelectPublications,
                SELECT_PUBLICATIONS,
                &[],
                None,
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// Sets `exam_year`'s publication time (`None` withdraws it) and appends
    /// the change, made by `changed_by` (a token fingerprint), to the audit
    /// trail, in one statement; returns the stored time.
    pub async fn set_publication(
        &self,
        exam_year: i32,
        publish_at: Option<OffsetDateTime>,
        changed_by: &str,
    ) -> Result<Option<OffsetDateTime>, DbError> {
        let rows = self
            .run(
                Operation::SetPublication,
                SET_PUBLICATION,
                &[
                    (&exam_year, Type::INT4),
                    (&publish_at, Type::TIMESTAMPTZ),
                    (&changed_by, Type::TEXT),
                ],
                None,
            )
            .await?;
        rows.first()
            .map(|row| row.get(1))
            .ok_or_else(|| DbError::Other("publication upsert returned no row".into()))
    }

    /// `exam_year`'s `(marks, results)` counts, marks ascending: one index
    /// range read of at most 101 rows.
    pub async fn mark_counts(&self, exam_year: i32) -> Result<Vec<(i32, i64)>, DbError> {
        let rows = self
            .run(
                Operation::SelectMarkCounts,
                SELECT_MARK_COUNTS,
                &[(&exam_year, Type::INT4)],
                None,
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// One trivial query: is the database reachable through the pool?
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(Operation::Readiness, "SELECT 1", &[], None)
            .await
            .map(|_| ())
    }

    /// Where the replica's WAL stands: received and replayed positions (bytes
    /// from 0/0), or `None` on a primary.
    pub async fn wal_positions(&self) -> Result<Option<WalPositions>, DbError> {
        let rows = self
            .run(
                Operation::ReplicaLag,
                "SELECT pg_is_in_recovery(), \
                 pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::float8, \
                 pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::float8",
                &[],
                None,
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| DbError::Other("WAL position query returned no row".into()))?;
        if !row.get::<_, bool>(0) {
            return Ok(None);
        }
        let replayed: Option<f64> = row.get(2);
        Ok(Some(WalPositions {
            received: row.get::<_, Option<f64>>(1).or(replayed).unwrap_or(0.0),
            replayed: replayed.unwrap_or(0.0),
        }))
    }
}

/// A write of one result.
#[derive(Clone, Copy, Debug)]
pub enum Write<'a> {
    /// Insert a new result ([`DbError::Exists`] if its key is taken).
    Insert(&'a ExamResult),
    /// Set a result's marks if its current marks are among `expected`
    /// (`None`: whatever they are).
    Update {
        /// Which result.
        key: ResultKey,
        /// The new marks.
        marks: i32,
        /// The marks the client's condition allows (`If-Match`).
        expected: Option<&'a [i32]>,
    },
    /// Delete a result if its current marks are among `expected`.
    Delete {
        /// Which result.
        key: ResultKey,
        /// The marks the client's condition allows (`If-Match`).
        expected: Option<&'a [i32]>,
    },
}

impl Write<'_> {
    fn operation(&self) -> Operation {
        match self {
            Self::Insert(_) => Operation::InsertResult,
            Self::Update { .. } => Operation::UpdateResult,
            Self::Delete { .. } => Operation::DeleteResult,
        }
    }
}

/// What a write did.
#[derive(Debug, PartialEq)]
pub enum Written {
    /// Inserted or updated: the result as stored now.
    Stored(ExamResult),
    /// Deleted.
    Deleted,
    /// No result with this key: nothing changed.
    Absent,
    /// The result exists but its current marks (here) were not among those
    /// expected: nothing changed.
    Mismatch(ExamResult),
}

/// Runs one write on `client` (a connection or a transaction).
async fn execute<C: GenericClient + Sync>(
    client: &C,
    write: Write<'_>,
) -> Result<Written, DbError> {
    let (key, expected) = match write {
        Write::Insert(result) => {
            let params: [(&(dyn ToSql + Sync), Type); 3] = [
                (&result.roll_number, Type::INT8),
                (&result.exam_year, Type::INT4),
                (&result.marks, Type::INT4),
            ];
            let rows = client
                .query_typed(INSERT_RESULT, &params)
                .await
                .map_err(|err| classify(err, Some(result.key())))?;
            return rows
                .first()
                .map(|row| Written::Stored(to_result(row)))
                .ok_or_else(|| DbError::Other("INSERT returned no row".into()));
        }
        Write::Update {
            key,
            marks,
            expected,
        } => {
            let params: [(&(dyn ToSql + Sync), Type); 4] = [
                (&key.exam_year, Type::INT4),
                (&key.roll_number, Type::INT8),
                (&marks, Type::INT4),
                (&expected, Type::INT4_ARRAY),
            ];
            let rows = client
                .query_typed(UPDATE_RESULT, &params)
                .await
                .map_err(|err| classify(err, Some(key)))?;
            if let Some(row) = rows.first() {
                return Ok(Written::Stored(to_result(row)));
            }
            (key, expected)
        }
        Write::Delete { key, expected } => {
            let params: [(&(dyn ToSql + Sync), Type); 3] = [
                (&key.exam_year, Type::INT4),
                (&key.roll_number, Type::INT8),
                (&expected, Type::INT4_ARRAY),
            ];
            let rows = client
                .query_typed(DELETE_RESULT, &params)
                .await
                .map_err(|err| classify(err, Some(key)))?;
            if !rows.is_empty() {
                return Ok(Written::Deleted);
            }
            (key, expected)
        }
    };
    // Nothing changed: absent, or present with other marks (read now: what
    // a retry would be compared with).
    if expected.is_none() {
        return Ok(Written::Absent);
    }
    let current = client
        .query_typed(
            SELECT_RESULT,
            &[(&key.exam_year, Type::INT4), (&key.roll_number, Type::INT8)],
        )
        .await
        .map_err(|err| classify(err, Some(key)))?;
    Ok(match current.first() {
        Some(row) => Written::Mismatch(to_result(row)),
        None => Written::Absent,
    })
}

/// An idempotency key and the request it was sent with.
#[derive(Clone, Debug)]
pub struct Once {
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// A digest of the request (method, path, canonical body, conditions).
    pub request: String,
    /// How long the key is remembered after the write.
    pub ttl: Duration,
}

/// A response as recorded for an idempotency key: plain data, replayed as is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    /// A 2xx status.
    pub status: u16,
    /// The headers that belong to the response (`ETag`, `Location`, `Content-Type`).
    pub headers: Vec<(String, String)>,
    /// The body (empty for a 204).
    pub body: Vec<u8>,
}

/// What a keyed write answered.
#[derive(Debug)]
pub enum Keyed {
    /// The write ran now; this is its response, recorded.
    Fresh(Recorded),
    /// The key's earlier response; nothing ran.
    Replayed(Recorded),
}

// Idempotency keys (sql/migrations/0006_idempotency_keys.sql). The
// transaction-scoped advisory lock marks a key as in progress: it is held by
// the transaction that runs the write and is released when it ends, and
// trying it never waits. The lookup is a later statement than the lock, so
// it sees a response the previous holder committed.
const TRY_LOCK_KEY: &str = "SELECT pg_try_advisory_xact_lock($1)";
const FIND_KEY: &str = "SELECT request, status::int4, headers::text, body FROM idempotency_keys \
                        WHERE idempotency_key = $1 AND expires_at > now()";
const RECORD_KEY: &str = "INSERT INTO idempotency_keys \
                          (idempotency_key, request, status, headers, body, expires_at) \
                          VALUES ($1, $2, $3::int4::int2, $4::text::jsonb, $5, \
                                  now() + make_interval(secs => $6)) \
                          ON CONFLICT (idempotency_key) DO UPDATE SET \
                          request = EXCLUDED.request, status = EXCLUDED.status, \
                          headers = EXCLUDED.headers, body = EXCLUDED.body, \
                          created_at = now(), expires_at = EXCLUDED.expires_at";

/// Takes the key for this transaction: the recorded response when there is
/// one for this request, `None` when the write is to run.
pub(crate) async fn claim<C: GenericClient + Sync>(
    client: &C,
    once: &Once,
) -> Result<Option<Recorded>, DbError> {
    lock_key(client, &once.key).await?;
    find_key(client, once).await
}

/// Holds `key` for this transaction, or [`DbError::KeyInProgress`] when
/// another transaction holds it.
async fn lock_key<C: GenericClient + Sync>(client: &C, key: &str) -> Result<(), DbError> {
    let lock = lock_id(key);
    let locked: bool = client
        .query_typed(TRY_LOCK_KEY, &[(&lock, Type::INT8)])
        .await
        .map_err(|err| classify(err, None))?
        .first()
        .is_some_and(|row| row.get(0));
    if locked {
        Ok(())
    } else {
        Err(DbError::KeyInProgress)
    }
}

/// The response recorded under the key for this request, if any;
/// [`DbError::KeyReused`] when recorded for another request.
async fn find_key<C: GenericClient + Sync>(
    client: &C,
    once: &Once,
) -> Result<Option<Recorded>, DbError> {
    let rows = client
        .query_typed(FIND_KEY, &[(&once.key, Type::TEXT)])
        .await
        .map_err(|err| classify(err, None))?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    if row.get::<_, String>(0) != once.request {
        return Err(DbError::KeyReused);
    }
    let headers: String = row.get(2);
    Ok(Some(Recorded {
        status: u16::try_from(row.get::<_, i32>(1)).unwrap_or(200),
        headers: serde_json::from_str(&headers)
            .map_err(|err| DbError::Other(format!("recorded headers: {err}")))?,
        body: row.get(3),
    }))
}

/// Records the response of the write this transaction made under `once`.
pub(crate) async fn record<C: GenericClient + Sync>(
    client: &C,
    once: &Once,
    recorded: &Recorded,
) -> Result<(), DbError> {
    let status = i32::from(recorded.status);
    let headers = serde_json::to_string(&recorded.headers)
        .map_err(|err| DbError::Other(format!("recording headers: {err}")))?;
    let ttl = once.ttl.as_secs_f64();
    client
        .query_typed(
            RECORD_KEY,
            &[
                (&once.key, Type::TEXT),
                (&once.request, Type::TEXT),
                (&status, Type::INT4),
                (&headers, Type::TEXT),
                (&recorded.body, Type::BYTEA),
                (&ttl, Type::FLOAT8),
            ],
        )
        .await
        .map_err(|err| classify(err, None))?;
    Ok(())
}

// Batch loads. Rows are streamed with COPY into a temporary table that
// lives only as long as the transaction (ON COMMIT DROP; a rollback undoes
// its creation), checked there, then inserted in one statement in key order
// (two batches touching the same keys lock them in the same order and
// cannot deadlock). COPY's statement is a named one that tokio-postgres
// prepares, uses and closes inside the transaction, so it never meets
// another client on a PgBouncer server connection.
const BATCH_TIMEOUT: &str = "SELECT set_config('statement_timeout', $1, true)";
const STAGE_BATCH: &str = "CREATE TEMP TABLE batch_rows \
                           (line int8 NOT NULL, roll_number int8 NOT NULL, marks int4 NOT NULL) \
                           ON COMMIT DROP";
const COPY_BATCH: &str = "COPY batch_rows (line, roll_number, marks) FROM STDIN";
const BATCH_DUPLICATES: &str = "SELECT line, roll_number, first_line, count(*) OVER () \
                                FROM (SELECT line, roll_number, \
                                      min(line) OVER (PARTITION BY roll_number) AS first_line \
                                      FROM batch_rows) numbered \
                                WHERE line > first_line ORDER BY line LIMIT $1";
const BATCH_EXISTING: &str = "SELECT b.line, b.roll_number, count(*) OVER () \
                              FROM batch_rows b JOIN student_results s \
                              ON s.exam_year = $1 AND s.roll_number = b.roll_number \
                              ORDER BY b.line LIMIT $2";
const INSERT_BATCH: &str =
    "WITH done AS (INSERT INTO student_results (roll_number, exam_year, marks) \
                            SELECT roll_number, $1, marks FROM batch_rows ORDER BY roll_number \
                            ON CONFLICT DO NOTHING RETURNING 1) \
                            SELECT count(*), 0::int8 FROM done";
// `replaced` counts the rows whose result the statement's snapshot shows
// (RETURNING cannot read xmax from a partitioned table).
const UPSERT_BATCH: &str = "WITH present AS (SELECT count(*) AS n FROM batch_rows b JOIN student_results s \
                            ON s.exam_year = $1 AND s.roll_number = b.roll_number), \
                            done AS (INSERT INTO student_results (roll_number, exam_year, marks) \
                            SELECT roll_number, $1, marks FROM batch_rows ORDER BY roll_number \
                            ON CONFLICT (exam_year, roll_number) DO UPDATE SET marks = EXCLUDED.marks \
                            RETURNING 1) \
                            SELECT (SELECT count(*) FROM done) - n, n FROM present";

/// How a batch's rows meet the results that exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExisting {
    /// A row whose result exists rejects the batch.
    Reject,
    /// A row whose result exists replaces its marks.
    Replace,
}

/// What applying a staged batch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Every row was written: `inserted` new results, `replaced` existing ones.
    Done {
        /// New results.
        inserted: i64,
        /// Existing results whose marks were replaced.
        replaced: i64,
    },
    /// Some rows' results exist (perhaps committed by a concurrent batch
    /// meanwhile): nothing was written.
    Existing,
}

/// One batch load: a transaction on its own connection, with the batch's
/// rows staged in a temporary table. Dropped before [`BatchTx::commit`], it
/// aborts the COPY if one is running and rolls the transaction back before
/// the connection is used again, so a client that goes away mid-body
/// leaves nothing behind.
pub struct BatchTx {
    conn: Option<bb8::PooledConnection<'static, Manager>>,
    copy: Option<std::pin::Pin<Box<tokio_postgres::CopyInSink<bytes::Bytes>>>>,
    cancel: tokio_postgres::CancelToken,
    cancel_to: Option<CancelTarget>,
}

impl Database {
    /// Opens a batch load's transaction, with `timeout` as its statement
    /// timeout on the server (`SET LOCAL`, overriding the pooler's backstop
    /// for this transaction only).
    pub async fn begin_batch(&self, timeout: Duration) -> Result<BatchTx, DbError> {
        let waited = Instant::now();
        let conn = self.pool.get_owned().await.map_err(pool_error)?;
        telemetry::record_pool_wait(waited.elapsed());
        let cancel = conn.cancel_token();
        conn.batch_execute("BEGIN")
            .await
            .map_err(|err| classify(err, None))?;
        let batch = BatchTx {
            conn: Some(conn),
            copy: None,
            cancel,
            cancel_to: self.cancel_to.clone(),
        };
        let timeout = format!("{}ms", timeout.as_millis());
        batch
            .client()
            .query_typed(BATCH_TIMEOUT, &[(&timeout, Type::TEXT)])
            .await
            .map_err(|err| classify(err, None))?;
        Ok(batch)
    }
}

impl BatchTx {
    fn client(&self) -> &Client {
        self.conn.as_ref().expect("open until committed or dropped")
    }

    /// Cancels the statement running now (past the batch's deadline).
    pub fn cancel(&self) {
        send_cancel(self.cancel.clone(), self.cancel_to.clone());
    }

    /// Holds the idempotency key for this transaction
    /// ([`DbError::KeyInProgress`] when another request holds it).
    pub async fn lock_key(&self, key: &str) -> Result<(), DbError> {
        lock_key(self.client(), key).await
    }

    /// The response recorded for this key and request, if any
    /// ([`DbError::KeyReused`] for another request).
    pub async fn find_key(&self, once: &Once) -> Result<Option<Recorded>, DbError> {
        find_key(self.client(), once).await
    }

    /// Records the batch's response under its key.
    pub async fn record(&self, once: &Once, recorded: &Recorded) -> Result<(), DbError> {
        record(self.client(), once, recorded).await
    }

    /// Creates the staging table and starts the COPY into it.
    pub async fn stage(&mut self) -> Result<(), DbError> {
        let client = self.client();
        client
            .batch_execute(STAGE_BATCH)
            .await
            .map_err(|err| classify(err, None))?;
        let sink = client
            .copy_in(COPY_BATCH)
            .await
            .map_err(|err| classify(err, None))?;
        self.copy = Some(Box::pin(sink));
        Ok(())
    }

    /// Sends rows in COPY's text format (`line\troll_number\tmarks\n`).
    pub async fn send(&mut self, rows: bytes::Bytes) -> Result<(), DbError> {
        use futures_util::SinkExt;
        let copy = self
            .copy
            .as_mut()
            .ok_or_else(|| DbError::Other("no COPY in progress".into()))?;
        copy.send(rows).await.map_err(|err| classify(err, None))
    }

    /// Ends the COPY; how many rows were staged.
    pub async fn staged(&mut self) -> Result<u64, DbError> {
        let mut copy = self
            .copy
            .take()
            .ok_or_else(|| DbError::Other("no COPY in progress".into()))?;
        copy.as_mut()
            .finish()
            .await
            .map_err(|err| classify(err, None))
    }

    /// Rows repeating an earlier row's roll number: how many, and the first
    /// `limit` as (line, roll number, the earlier line).
    pub async fn duplicates(&self, limit: i64) -> Result<(i64, Vec<(i64, i64, i64)>), DbError> {
        let rows = self
            .client()
            .query_typed(BATCH_DUPLICATES, &[(&limit, Type::INT8)])
            .await
            .map_err(|err| classify(err, None))?;
        let count = rows.first().map_or(0, |row| row.get(3));
        Ok((
            count,
            rows.iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect(),
        ))
    }

    /// Rows whose result exists in `exam_year`: how many, and the first
    /// `limit` as (line, roll number).
    pub async fn existing(
        &self,
        exam_year: i32,
        limit: i64,
    ) -> Result<(i64, Vec<(i64, i64)>), DbError> {
        let rows = self
            .client()
            .query_typed(
                BATCH_EXISTING,
                &[(&exam_year, Type::INT4), (&limit, Type::INT8)],
            )
            .await
            .map_err(|err| classify(err, None))?;
        let count = rows.first().map_or(0, |row| row.get(2));
        Ok((
            count,
            rows.iter().map(|row| (row.get(0), row.get(1))).collect(),
        ))
    }

    /// Writes the staged rows into `exam_year` in one statement. With
    /// [`OnExisting::Reject`], a row whose result exists (or is committed by
    /// a concurrent batch while this one waits for it) undoes the statement
    /// and answers [`Applied::Existing`]; the transaction stays usable.
    pub async fn apply(&self, exam_year: i32, on_existing: OnExisting) -> Result<Applied, DbError> {
        let client = self.client();
        let key = Some(ResultKey {
            exam_year,
            roll_number: 0,
        });
        let (sql, staged) = match on_existing {
            OnExisting::Reject => (INSERT_BATCH, Some(self.count().await?)),
            OnExisting::Replace => (UPSERT_BATCH, None),
        };
        client
            .batch_execute("SAVEPOINT apply_batch")
            .await
            .map_err(|err| classify(err, None))?;
        let rows = client
            .query_typed(sql, &[(&exam_year, Type::INT4)])
            .await
            .map_err(|err| classify(err, key))?;
        let row = rows
            .first()
            .ok_or_else(|| DbError::Other("the batch insert returned no row".into()))?;
        let (inserted, replaced): (i64, i64) = (row.get(0), row.get(1));
        if staged.is_some_and(|staged| inserted < staged) {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT apply_batch")
                .await
                .map_err(|err| classify(err, None))?;
            return Ok(Applied::Existing);
        }
        Ok(Applied::Done { inserted, replaced })
    }

    async fn count(&self) -> Result<i64, DbError> {
        let rows = self
            .client()
            .query_typed("SELECT count(*) FROM batch_rows", &[])
            .await
            .map_err(|err| classify(err, None))?;
        Ok(rows.first().map_or(0, |row| row.get(0)))
    }

    /// Rolls the batch back now (rather than on drop), so its idempotency
    /// key is free before the client hears back.
    pub async fn rollback(mut self) {
        drop(self.copy.take());
        if let Some(conn) = self.conn.take() {
            let _ = conn.batch_execute("ROLLBACK").await;
        }
    }

    /// Commits the batch.
    pub async fn commit(mut self) -> Result<(), DbError> {
        let conn = self.conn.take().expect("open until committed or dropped");
        conn.batch_execute("COMMIT")
            .await
            .map_err(|err| classify(err, None))
    }
}

impl Drop for BatchTx {
    fn drop(&mut self) {
        // Dropping the COPY sink aborts the COPY (CopyFail); the ROLLBACK is
        // queued after it on the same connection, which returns to the pool
        // only once it has run.
        drop(self.copy.take());
        if let Some(conn) = self.conn.take() {
            tokio::spawn(async move {
                let _ = conn.batch_execute("ROLLBACK").await;
            });
        }
    }
}

/// The advisory lock id of a key: 64 bits of its SHA-256, so two keys
/// share a lock (and one briefly sees the other as in progress) only by a
/// 2^-64 chance.
fn lock_id(key: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("idempotency-key:{key}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// A WAL position (PostgreSQL's `pg_lsn`): bytes from `0/0`. Written as
/// PostgreSQL writes it, `X/Y` (two hexadecimal halves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl std::str::FromStr for Lsn {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (high, low) = text.split_once('/').ok_or(())?;
        let half = |part: &str| {
            (!part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(part, 16).ok())
                .flatten()
                .ok_or(())
        };
        Ok(Self((half(high)? << 32) | half(low)?))
    }
}

/// A replica's WAL positions, in bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WalPositions {
    /// `pg_last_wal_receive_lsn()`: streamed from the primary and flushed.
    pub received: f64,
    /// `pg_last_wal_replay_lsn()`: applied, visible to queries.
    pub replayed: f64,
}

fn to_result(row: &Row) -> ExamResult {
    ExamResult {
        roll_number: row.get(0),
        exam_year: row.get(1),
        marks: row.get(2),
    }
}

/// Why the pool gave no connection, as the client should see it.
/// Where a pool's cancel requests go: the one TCP address it connects to.
#[derive(Clone, Debug)]
struct CancelTarget {
    host: std::sync::Arc<str>,
    port: u16,
}

impl CancelTarget {
    /// The address of a configuration naming one TCP host (the pooler);
    /// `None` for anything else (a Unix socket, several hosts).
    fn of(config: &tokio_postgres::Config) -> Option<Self> {
        let [tokio_postgres::config::Host::Tcp(host)] = config.get_hosts() else {
            return None;
        };
        let port = match config.get_ports() {
            [] => 5432,
            [port] => *port,
            _ => return None,
        };
        Some(Self {
            host: host.as_str().into(),
            port,
        })
    }
}

/// The longest a cancel request waits for the other end to close its
/// connection before closing it anyway.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Asks the server to stop the statement `token`'s connection is running,
/// in the background. The request's socket is closed only once the other end
/// has closed it (it has then passed the request on), as libpq does:
/// tokio-postgres's own `cancel_query` closes its socket right after writing,
/// and PgBouncer 1.18 exits (`disconnect_client(): bad client state: 0`,
/// pgbouncer/pgbouncer issue 801) when a cancel request's client hangs up
/// before PgBouncer has passed the request on.
fn send_cancel(token: tokio_postgres::CancelToken, target: Option<CancelTarget>) {
    tokio::spawn(async move {
        match target {
            Some(target) => {
                let _ = tokio::time::timeout(CANCEL_WAIT, cancel_and_wait(&token, &target)).await;
            }
            None => {
                let _ = token.cancel_query(NoTls).await;
            }
        }
    });
}

async fn cancel_and_wait(
    token: &tokio_postgres::CancelToken,
    target: &CancelTarget,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut socket = tokio::net::TcpStream::connect((&*target.host, target.port)).await?;
    token
        .cancel_query_raw(KeepOpen(&mut socket), NoTls)
        .await
        .map_err(std::io::Error::other)?;
    let mut scratch = [0u8; 64];
    while socket.read(&mut scratch).await? > 0 {}
    Ok(())
}

/// A cancel request's socket that stays open when tokio-postgres shuts it
/// down after writing the request.
struct KeepOpen<'a>(&'a mut tokio::net::TcpStream);

impl tokio::io::AsyncRead for KeepOpen<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for KeepOpen<'_> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn pool_error(err: RunError<ManagerError>) -> DbError {
    match err {
        RunError::TimedOut => {
            DbError::Unavailable("timed out waiting for a pooled connection".into())
        }
        RunError::User(ManagerError::Connect(err)) => classify(err, None),
        RunError::User(ManagerError::LoginTimedOut(limit)) => DbError::Unavailable(format!(
            "connecting and logging in took longer than the connect timeout of {limit:?}"
        )),
        RunError::User(ManagerError::Closed) => {
            DbError::Unavailable("pooled connection was closed".into())
        }
    }
}

/// Sorts a driver error into what the client should see; `key` is the row
/// the statement was about (a unique violation or a missing partition names it).
fn classify(err: tokio_postgres::Error, key: Option<ResultKey>) -> DbError {
    if err.is_closed() {
        return DbError::Unavailable(format!("connection closed: {err}"));
    }
    let Some(db) = err.as_db_error() else {
        // I/O, TLS, timeout while connecting: the pooler or database is not there.
        return DbError::Unavailable(err.to_string());
    };
    let code = db.code();
    if let Some(key) = key {
        if code == &SqlState::UNIQUE_VIOLATION {
            return DbError::Exists(key);
        }
        if code == &SqlState::CHECK_VIOLATION
            && db.constraint().is_none()
            && db.message().starts_with("no partition")
        {
            return DbError::NoPartition(key.exam_year);
        }
    }
    let class = &code.code()[..2];
    let unavailable = class == "08" // connection exception (PgBouncer reports its own failures as 08P01)
        || class == "53" // insufficient resources: too many connections
        || class == "57" // operator intervention: shutdown, cannot connect now, query canceled
        || code == &SqlState::T_R_SERIALIZATION_FAILURE
        || code == &SqlState::T_R_DEADLOCK_DETECTED
        || code == &SqlState::READ_ONLY_SQL_TRANSACTION;
    if unavailable {
        DbError::Unavailable(format!("{}: {}", code.code(), db.message()))
    } else {
        DbError::Other(format!("{}: {}", code.code(), db.message()))
    }
}
