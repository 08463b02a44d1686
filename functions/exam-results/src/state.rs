//! What every handler gets: the pools, the accepted tokens, the limits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Auth, Config};
use crate::db::{Database, DbError};
use crate::error::ApiError;
use crate::model::YearRange;
use crate::publication::Schedule;
use crate::read_cache::{HttpCaching, ReadCache};
use crate::statistics::Grading;

/// Shared, cheap-to-clone application state.
#[derive(Clone)]
pub struct AppState {
    /// The function's own database (replica for reads, primary for writes).
    pub db: Database,
    /// Reads only: the primary, used while the replica is down or lagging.
    pub fallback: Option<Database>,
    /// Bearer tokens accepted where a write token is required (`WRITE_TOKENS`).
    pub write_tokens: Arc<Vec<String>>,
    /// Bearer tokens accepted where a read token is required (`READ_TOKENS`).
    pub read_tokens: Arc<Vec<String>>,
    /// Exam years the API accepts.
    pub years: YearRange,
    /// Reads only: the replica's last measured lag, if lag checking is on.
    pub lag: Option<Arc<ReplicaLag>>,
    /// Reads only: how long a read with a consistency token waits for the
    /// replica to replay it when there is no fallback (`CONSISTENCY_WAIT_MS`).
    pub consistency_wait: Duration,
    /// Writes only: how long an idempotency key is remembered
    /// (`IDEMPOTENCY_KEY_TTL_SECONDS`).
    pub idempotency_ttl: Duration,
    /// create-results-batch only: the largest body accepted (`BATCH_MAX_BYTES`).
    pub batch_max_bytes: u64,
    /// create-results-batch only: how long one load may take
    /// (`BATCH_STATEMENT_TIMEOUT_MS`).
    pub batch_timeout: Duration,
    /// Reads only: the publication times as last read (see [`crate::publication`]).
    pub publications: Arc<Schedule>,
    /// Reads only: `Cache-Control` values for published data.
    pub http_caching: Arc<HttpCaching>,
    /// Reads only: the in-process cache (off unless `READ_CACHE_CAPACITY` > 0).
    pub read_cache: Arc<ReadCache>,
    /// The pass mark and grade bands of the statistics.
    pub grading: Arc<Grading>,
    /// What browsers get: CORS on public replies, the results page's settings.
    pub web: Arc<crate::web::Web>,
}

/// How often a read waiting for the replica to replay its token asks again.
const REPLAY_POLL: Duration = Duration::from_millis(10);

/// The replica lag as last measured by the background probe.
pub struct ReplicaLag {
    /// Above this many seconds the replica counts as lagging.
    pub max_seconds: f64,
    millis: AtomicU64,
}

impl ReplicaLag {
    /// A new tracker that starts at "no lag".
    pub fn new(max_seconds: f64) -> Self {
        Self {
            max_seconds,
            millis: AtomicU64::new(0),
        }
    }

    /// Stores a measurement.
    pub fn set(&self, seconds: f64) {
        self.millis
            .store((seconds.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
    }

    /// The last measurement, in seconds.
    pub fn seconds(&self) -> f64 {
        self.millis.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Whether the replica is too far behind.
    pub fn is_lagging(&self) -> bool {
        self.seconds() > self.max_seconds
    }
}

impl AppState {
    /// Builds the pools (without connecting) from configuration.
    pub fn from_config(config: &Config) -> Self {
        let pool = |pg| {
            Database::new(
                pg,
                config.database_pool_size,
                Duration::from_millis(config.database_pool_timeout_ms),
                Duration::from_millis(config.database_statement_timeout_ms),
            )
        };
        Self {
            db: pool(config.database()),
            fallback: config.read_fallback_database().map(pool),
            write_tokens: Arc::new(config.tokens(Auth::WriteToken)),
            read_tokens: Arc::new(config.tokens(Auth::ReadToken)),
            years: YearRange {
                min: config.exam_year_min,
                max: config.exam_year_max,
            },
            lag: config
                .max_replica_lag_seconds
                .map(|max| Arc::new(ReplicaLag::new(max))),
            consistency_wait: Duration::from_millis(config.consistency_wait_ms),
            idempotency_ttl: Duration::from_secs(config.idempotency_key_ttl_seconds),
            batch_max_bytes: config.batch_max_bytes,
            batch_timeout: Duration::from_millis(config.batch_statement_timeout_ms),
            publications: Arc::new(Schedule::new(Duration::from_secs(
                config.publication_refresh_seconds,
            ))),
            http_caching: Arc::new(HttpCaching::new(
                config.http_cache_max_age_seconds,
                config.http_cache_stale_while_revalidate_seconds,
                config.http_cache_not_found_max_age_seconds,
            )),
            read_cache: Arc::new(ReadCache::new(
                config.read_cache_capacity,
                Duration::from_millis(config.read_cache_ttl_ms),
            )),
            grading: Arc::new(
                Grading::new(config.pass_mark, &config.grade_bands).expect("validated at start-up"),
            ),
            web: crate::web::Web::from_config(config),
        }
    }

    /// Runs a read against the replica, or the fallback when the replica is
    /// lagging or unreachable; without a fallback a lagging replica is a 503.
    ///
    /// A read that carries a consistency token (its query answers
    /// [`DbError::NotReplayed`] where that position is not replayed yet) is
    /// served by the replica once it has replayed the position, else by the
    /// fallback; without a fallback the replica is asked again for up to
    /// [`AppState::consistency_wait`], then the answer is a 503.
    pub async fn read<T, F, Fut>(&self, query: F) -> Result<T, ApiError>
    where
        F: Fn(Database) -> Fut,
        Fut: std::future::Future<Output = Result<T, DbError>>,
    {
        if let Some(lag) = &self.lag {
            if lag.is_lagging() {
                return match &self.fallback {
                    Some(primary) => query(primary.clone()).await.map_err(ApiError::from),
                    None => Err(ApiError::ReplicaLagging(lag.seconds())),
                };
            }
        }
        let started = Instant::now();
        loop {
            match (query(self.db.clone()).await, &self.fallback) {
                (Err(DbError::Unavailable(_) | DbError::NotReplayed(_)), Some(primary)) => {
                    return query(primary.clone()).await.map_err(ApiError::from);
                }
                (Err(DbError::NotReplayed(_)), None)
                    if started.elapsed() < self.consistency_wait =>
                {
                    tokio::time::sleep(REPLAY_POLL).await;
                }
                (outcome, _) => return outcome.map_err(ApiError::from),
            }
        }
    }
}
