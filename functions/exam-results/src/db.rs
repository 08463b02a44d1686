//! The connection pool and the queries.
//!
//! Every query is sent with [`tokio_postgres::Client::query_typed`]: an
//! unnamed statement whose parameter types are given up front, so Parse,
//! Bind, Execute and Sync travel in one message and the answer comes back in
//! one round trip. No named prepared statement ever exists, which is what
//! PgBouncer in transaction pooling mode (1.18 has no protocol-level
//! prepared statements) requires.
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
use tokio_postgres::{Client, NoTls, Row};

use crate::model::{ExamResult, ListQuery, ResultKey};
use crate::telemetry;

/// What a query can fail with, already sorted by what the client should see.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The pooler or database could not be reached in time, the pool was
    /// exhausted, or the query ran past the statement timeout.
    #[error("database unavailable: {0}")]
    Unavailable(String),
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
        }
    }
}

/// Wraps bb8-postgres's manager so the checkout test costs no round trip.
#[derive(Debug)]
pub struct Manager(PostgresConnectionManager<NoTls>);

/// Why the pool could not provide a connection.
#[derive(Debug)]
pub enum ManagerError {
    /// Connecting (or logging in) failed.
    Connect(tokio_postgres::Error),
    /// A pooled connection's socket was found closed at checkout.
    Closed,
}

impl ManageConnection for Manager {
    type Connection = Client;
    type Error = ManagerError;

    async fn connect(&self) -> Result<Client, ManagerError> {
        self.0.connect().await.map_err(ManagerError::Connect)
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
}

// The result statements, fixed at compile time (parameters are always bound, never interpolated).
const INSERT_RESULT: &str =
    "INSERT INTO student_results (roll_number, exam_year, marks) VALUES ($1, $2, $3) \
                             RETURNING roll_number, exam_year, marks";
const SELECT_RESULT: &str = "SELECT roll_number, exam_year, marks FROM student_results \
                             WHERE exam_year = $1 AND roll_number = $2";
const LIST_RESULTS: &str = "SELECT roll_number, exam_year, marks FROM student_results \
                            WHERE exam_year = $1 AND roll_number > $2 ORDER BY roll_number LIMIT $3";
const UPDATE_RESULT: &str =
    "UPDATE student_results SET marks = $3 WHERE exam_year = $1 AND roll_number = $2 \
                             RETURNING roll_number, exam_year, marks";
const DELETE_RESULT: &str =
    "DELETE FROM student_results WHERE exam_year = $1 AND roll_number = $2 RETURNING roll_number";

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
        let pool = Pool::builder()
            .max_size(size)
            .min_idle(None)
            .connection_timeout(wait)
            .test_on_check_out(true)
            .idle_timeout(Some(Duration::from_secs(300)))
            .max_lifetime(Some(Duration::from_secs(1800)))
            .build_unchecked(Manager(PostgresConnectionManager::new(config, NoTls)));
        Self {
            pool,
            statement_timeout,
            max_size: size,
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
        let waited = Instant::now();
        let conn = self.pool.get().await.map_err(|err| match err {
            RunError::TimedOut => {
                DbError::Unavailable("timed out waiting for a pooled connection".into())
            }
            RunError::User(ManagerError::Connect(err)) => classify(err, None),
            RunError::User(ManagerError::Closed) => {
                DbError::Unavailable("pooled connection was closed".into())
            }
        })?;
        telemetry::record_pool_wait(waited.elapsed());
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(self.statement_timeout, conn.query_typed(sql, params)).await;
        telemetry::record_query(operation.as_str(), started.elapsed());
        match outcome {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(err)) => Err(classify(err, key)),
            Err(_) => {
                // Try to stop the server-side work too. PgBouncer forwards cancel
                // requests it can match; behind a Service with several PgBouncer pods
                // the cancel may land on another pod and be dropped, so the chart also
                // sets a server-side statement_timeout as the backstop.
                let token = conn.cancel_token();
                tokio::spawn(async move {
                    let _ = token.cancel_query(NoTls).await;
                });
                Err(DbError::Unavailable(format!(
                    "{} exceeded the statement timeout of {:?}",
                    operation.as_str(),
                    self.statement_timeout
                )))
            }
        }
    }

    /// Inserts a new result.
    pub async fn insert(&self, result: &ExamResult) -> Result<ExamResult, DbError> {
        let rows = self
            .run(
                Operation::InsertResult,
                INSERT_RESULT,
                &[
                    (&result.roll_number, Type::INT8),
                    (&result.exam_year, Type::INT4),
                    (&result.marks, Type::INT4),
                ],
                Some(result.key()),
            )
            .await?;
        rows.first()
            .map(to_result)
            .ok_or_else(|| DbError::Other("INSERT returned no row".into()))
    }

    /// Reads one result.
    pub async fn get(&self, key: ResultKey) -> Result<Option<ExamResult>, DbError> {
        let rows = self
            .run(
                Operation::SelectResult,
                SELECT_RESULT,
                &[(&key.exam_year, Type::INT4), (&key.roll_number, Type::INT8)],
                Some(key),
            )
            .await?;
        Ok(rows.first().map(to_result))
    }

    /// Reads one keyset page: `limit + 1` rows are fetched to learn whether another page exists.
    pub async fn list(&self, query: ListQuery) -> Result<(Vec<ExamResult>, bool), DbError> {
        let fetch = query.limit + 1;
        let rows = self
            .run(
                Operation::ListResults,
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

    /// Sets a result's marks; `None` when absent.
    pub async fn update(&self, key: ResultKey, marks: i32) -> Result<Option<ExamResult>, DbError> {
        let rows = self
            .run(
                Operation::UpdateResult,
                UPDATE_RESULT,
                &[
                    (&key.exam_year, Type::INT4),
                    (&key.roll_number, Type::INT8),
                    (&marks, Type::INT4),
                ],
                Some(key),
            )
            .await?;
        Ok(rows.first().map(to_result))
    }

    /// Deletes a result; whether it existed.
    pub async fn delete(&self, key: ResultKey) -> Result<bool, DbError> {
        let rows = self
            .run(
                Operation::DeleteResult,
                DELETE_RESULT,
                &[(&key.exam_year, Type::INT4), (&key.roll_number, Type::INT8)],
                Some(key),
            )
            .await?;
        Ok(!rows.is_empty())
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
        || code == &SqlState::READ_ONLY_SQL_TRANSACTION;
    if unavailable {
        DbError::Unavailable(format!("{}: {}", code.code(), db.message()))
    } else {
        DbError::Other(format!("{}: {}", code.code(), db.message()))
    }
}
