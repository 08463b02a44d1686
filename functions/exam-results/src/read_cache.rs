//! The read path's caches: HTTP caching headers for shared caches in front
//! (a CDN or an ingress cache) and a bounded in-process cache with request
//! coalescing.
//!
//! - **Headers** ([`HttpCaching`]): published data is `public, max-age,
//!   stale-while-revalidate`; an absent result of a published year is
//!   `public, max-age` (short), so a crowd guessing roll numbers meets the
//!   cache; staff responses are `private, no-store`. Every response varies
//!   on `Authorization`, so a shared cache never answers staff with a
//!   public copy.
//! - **In-process** ([`ReadCache`]): moka's future cache, bounded in entries
//!   and with a time to live. Concurrent misses for one key wait for one
//!   database query (`try_get_with`). Only published data enters it (the
//!   publication check comes first, see [`crate::publication::admit`]).
//!   Lookups are counted as hits, misses and coalesced waits
//!   ([`telemetry::READ_CACHE_LOOKUPS`]).

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::error::ApiError;
use crate::model::ExamResult;
use crate::publication::Audience;
use crate::telemetry;

/// `Cache-Control` values, from configuration.
#[derive(Clone, Debug)]
pub struct HttpCaching {
    /// For published data (200, 304).
    pub published: HeaderValue,
    /// For an absent result of a published year (404 `not_found`).
    pub not_found: HeaderValue,
}

/// Staff responses and anything about an unpublished year.
pub const PRIVATE: HeaderValue = HeaderValue::from_static("private, no-store");

impl HttpCaching {
    /// `max_age` and `stale_while_revalidate` for published data,
    /// `not_found_max_age` for absent results, all in seconds.
    pub fn new(max_age: u64, stale_while_revalidate: u64, not_found_max_age: u64) -> Self {
        let value = |text: String| HeaderValue::from_str(&text).unwrap_or(PRIVATE);
        Self {
            published: value(format!(
                "public, max-age={max_age}, stale-while-revalidate={stale_while_revalidate}"
            )),
            not_found: value(format!("public, max-age={not_found_max_age}")),
        }
    }

    /// Sets `Cache-Control` and `Vary` on a read's response. `audience` is
    /// `None` when the read was refused before its audience was known.
    pub fn apply(&self, response: &mut Response, audience: Option<Audience>) {
        let status = response.status();
        let value = match audience {
            Some(Audience::Public) if status == StatusCode::OK => Some(self.published.clone()),
            Some(Audience::Public) if status == StatusCode::NOT_MODIFIED => {
                Some(self.published.clone())
            }
            Some(Audience::Public) if status == StatusCode::NOT_FOUND => {
                Some(self.not_found.clone())
            }
            Some(Audience::Private) => Some(PRIVATE),
            _ => None,
        };
        let headers = response.headers_mut();
        if let Some(value) = value {
            headers.insert(header::CACHE_CONTROL, value);
        } else if !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
    }
}

/// A year's `(marks, results)` counts.
pub type MarkCounts = Arc<Vec<(i32, i64)>>;

/// The in-process caches of the read functions; off when built with
/// capacity 0.
pub struct ReadCache {
    results: Option<Cache<(i32, i64), Option<ExamResult>>>,
    mark_counts: Option<Cache<i32, MarkCounts>>,
}

impl ReadCache {
    /// Caches of at most `capacity` results (and as many years' mark
    /// counts), each entry living `ttl`; capacity 0 turns them off.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            results: build(capacity, ttl),
            mark_counts: build(capacity.min(256), ttl),
        }
    }

    /// Whether results are cached (capacity above 0).
    pub fn caches_results(&self) -> bool {
        self.results.is_some()
    }

    /// One result (or its absence), from the cache or from `load`.
    pub async fn result<F, Fut>(
        &self,
        key: (i32, i64),
        load: F,
    ) -> Result<Option<ExamResult>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<ExamResult>, ApiError>>,
    {
        lookup(self.results.as_ref(), "result", key, load).await
    }

    /// One year's mark counts, from the cache or from `load`.
    pub async fn mark_counts<F, Fut>(&self, exam_year: i32, load: F) -> Result<MarkCounts, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<MarkCounts, ApiError>>,
    {
        lookup(self.mark_counts.as_ref(), "statistics", exam_year, load).await
    }
}

fn build<K, V>(capacity: u64, ttl: Duration) -> Option<Cache<K, V>>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    (capacity > 0).then(|| {
        Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .build()
    })
}

/// A cached value, or `load`'s: a miss runs `load` once however many
/// requests wait for the same key (moka's `try_get_with`); errors are not
/// cached.
async fn lookup<K, V, F, Fut>(
    cache: Option<&Cache<K, V>>,
    name: &'static str,
    key: K,
    load: F,
) -> Result<V, ApiError>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<V, ApiError>>,
{
    let Some(cache) = cache else {
        return load().await;
    };
    if let Some(value) = cache.get(&key).await {
        telemetry::record_cache_lookup(name, "hit");
        return Ok(value);
    }
    let loaded = AtomicBool::new(false);
    let outcome = cache
        .try_get_with(key, async {
            loaded.store(true, Ordering::Relaxed);
            load().await
        })
        .await;
    let outcome_label = if loaded.load(Ordering::Relaxed) {
        "miss"
    } else {
        "coalesced"
    };
    telemetry::record_cache_lookup(name, outcome_label);
    telemetry::record_cache_entries(name, cache.entry_count());
    outcome.map_err(|err| (*err).clone())
}
