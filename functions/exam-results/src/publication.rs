//! Publication: when a year's results become public, and who may read a
//! year before that.
//!
//! The times live in the `publications` table (one row per scheduled year;
//! a year without a row is public as soon as its results are written).
//! Each read function keeps the whole table in memory and re-reads it when
//! its copy is older than `PUBLICATION_REFRESH_SECONDS` (one query, made by
//! one request while the others wait for it). The comparison with the
//! clock happens on every request, so a year becomes public at its exact
//! minute without a refresh; a *change* (a time moved back, a withdrawal)
//! takes effect within the refresh interval.
//!
//! Staff (a request carrying one of the function's read or write tokens)
//! read unpublished years; their responses are never cached publicly.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use warp::http::{header, HeaderMap, HeaderValue};
use warp::reply::Response;
use warp::Filter;

use crate::error::ApiError;
use crate::http::authorize;
use crate::state::AppState;

/// A year's publication state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publication {
    /// No row: public as soon as results are written.
    Unscheduled,
    /// Public from this instant on.
    At(OffsetDateTime),
    /// Withdrawn: not public, no time announced.
    Withdrawn,
}

impl Publication {
    /// Whether the public may read the year at `now`.
    pub fn is_public(self, now: OffsetDateTime) -> bool {
        match self {
            Self::Unscheduled => true,
            Self::At(at) => now >= at,
            Self::Withdrawn => false,
        }
    }

    /// The publication time, if one is set.
    pub fn time(self) -> Option<OffsetDateTime> {
        match self {
            Self::At(at) => Some(at),
            _ => None,
        }
    }

    /// The 404 the public gets for `exam_year` at `now`: the time it will be
    /// published and `Retry-After` until then; `None` when it is public.
    pub fn refusal(self, exam_year: i32, now: OffsetDateTime) -> Option<ApiError> {
        if self.is_public(now) {
            return None;
        }
        let at = self.time();
        Some(ApiError::NotPublished {
            exam_year,
            publish_at: at.map(rfc3339),
            retry_after: at.map(|at| seconds_until(at, now).max(1)),
        })
    }
}

/// Whole seconds from `now` until `at`, rounded up; 0 when past.
pub fn seconds_until(at: OffsetDateTime, now: OffsetDateTime) -> u64 {
    let millis = (at - now).whole_milliseconds();
    if millis <= 0 {
        0
    } else {
        u64::try_from((millis + 999) / 1000).unwrap_or(u64::MAX)
    }
}

/// An instant in RFC 3339, in UTC (`2027-08-13T08:00:00Z`).
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// Who is reading: the public, or staff with a valid token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// No (valid) token: sees published years only.
    Public,
    /// A valid read or write token: sees every year, never cached publicly.
    Staff,
}

/// The tokens that make a reader staff: the function's read and write tokens.
#[derive(Clone)]
pub struct StaffTokens(Arc<Vec<String>>);

impl StaffTokens {
    /// The read and write tokens of `state`.
    pub fn of(state: &AppState) -> Self {
        Self(Arc::new(
            state
                .read_tokens
                .iter()
                .chain(state.write_tokens.iter())
                .cloned()
                .collect(),
        ))
    }

    /// Who is reading, from the request's `Authorization` values: staff when
    /// they are one of these tokens (see [`authorize`]). Anything else,
    /// including a wrong token, reads as the public; a public operation
    /// never answers 401.
    pub fn viewer(&self, headers: &HeaderMap) -> Viewer {
        let values = headers.get_all(header::AUTHORIZATION);
        if self.0.is_empty() || values.iter().next().is_none() {
            return Viewer::Public;
        }
        match authorize(values.iter().map(HeaderValue::as_bytes), &self.0) {
            Ok(()) => Viewer::Staff,
            Err(_) => Viewer::Public,
        }
    }
}

/// Who is reading (see [`StaffTokens::viewer`]).
pub fn viewer(
    state: &AppState,
) -> impl Filter<Extract = (Viewer,), Error = std::convert::Infallible> + Clone {
    let staff = StaffTokens::of(state);
    warp::header::headers_cloned().map(move |headers: HeaderMap| staff.viewer(&headers))
}

/// Who the response is for, which decides how it may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Published data read by anyone: cacheable by shared caches.
    Public,
    /// Staff: `private, no-store`.
    Private,
}

/// May `viewer` read `exam_year` now? Staff always may (privately); the
/// public only once it is published, else a 404 `results_not_published`
/// that says nothing about which results exist.
pub async fn admit(state: &AppState, viewer: Viewer, exam_year: i32) -> Result<Audience, ApiError> {
    if viewer == Viewer::Staff {
        return Ok(Audience::Private);
    }
    let publication = state.publications.of(state, exam_year).await?;
    match publication.refusal(exam_year, OffsetDateTime::now_utc()) {
        None => Ok(Audience::Public),
        Some(refusal) => Err(refusal),
    }
}

/// Every scheduled year's publication.
type Years = Arc<HashMap<i32, Publication>>;

/// Serves a read of `exam_year` for `viewer`: refused with
/// `results_not_published` while the public may not see it, else `read`
/// for the audience; `Cache-Control` and `Vary` set for the outcome (see
/// [`HttpCaching::apply`](crate::read_cache::HttpCaching::apply)).
pub async fn serve_read<F, Fut>(
    state: &AppState,
    viewer: Viewer,
    exam_year: i32,
    read: F,
) -> Response
where
    F: FnOnce(Audience) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let (audience, outcome) = match admit(state, viewer, exam_year).await {
        Ok(audience) => (Some(audience), read(audience).await),
        Err(refusal) => (None, Err(refusal)),
    };
    let mut response = outcome.unwrap_or_else(ApiError::into_response);
    state.http_caching.apply(&mut response, audience);
    response
}

/// The publication times as this process last read them.
pub struct Schedule {
    refresh: Duration,
    snapshot: RwLock<Option<(Instant, Years)>>,
    /// Held while the table is read; the last failed read, if any.
    loading: tokio::sync::Mutex<Option<(Instant, ApiError)>>,
}

impl Schedule {
    /// An empty schedule, read from the database at first use and again
    /// whenever the copy is older than `refresh`.
    pub fn new(refresh: Duration) -> Self {
        Self {
            refresh,
            snapshot: RwLock::new(None),
            loading: tokio::sync::Mutex::new(None),
        }
    }

    /// The longest a change takes to reach this process.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// `exam_year`'s publication, re-reading the table if the copy is stale
    /// (one reader queries; concurrent callers wait for its answer).
    pub async fn of(&self, state: &AppState, exam_year: i32) -> Result<Publication, ApiError> {
        let years = match self.fresh() {
            Some(years) => years,
            // Boxed: the reload is rare, and its future would otherwise
            // make every read's future larger (and every move of it dearer).
            None => Box::pin(self.load(state)).await?,
        };
        Ok(years
            .get(&exam_year)
            .copied()
            .unwrap_or(Publication::Unscheduled))
    }

    /// Re-reads the table: one query at a time; callers that waited for it
    /// take its answer, including a failure less than a second old (so a
    /// database outage costs one query per second, not one per request).
    async fn load(&self, state: &AppState) -> Result<Years, ApiError> {
        let mut last_failure = self.loading.lock().await;
        if let Some(years) = self.fresh() {
            return Ok(years);
        }
        if let Some((at, err)) = last_failure.as_ref() {
            if at.elapsed() < Duration::from_secs(1) {
                return Err(err.clone());
            }
        }
        let rows = match state
            .read(|db| async move { db.publications().await })
            .await
        {
            Ok(rows) => rows,
            Err(err) => {
                *last_failure = Some((Instant::now(), err.clone()));
                return Err(err);
            }
        };
        *last_failure = None;
        let years: Years = Arc::new(
            rows.into_iter()
                .map(|(year, at)| (year, at.map_or(Publication::Withdrawn, Publication::At)))
                .collect(),
        );
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), years.clone()));
        Ok(years)
    }

    fn fresh(&self) -> Option<Years> {
        let snapshot = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        snapshot
            .as_ref()
            .filter(|(loaded, _)| loaded.elapsed() < self.refresh)
            .map(|(_, years)| years.clone())
    }
}

/// A token's fingerprint for the audit trail (`sha256:` and the first 16
/// hex digits of its SHA-256): names which token acted without storing it.
pub fn fingerprint(token: &[u8]) -> String {
    let digest = Sha256::digest(token);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The bearer token in an `Authorization` value (after the scheme).
pub fn bearer_token(value: &[u8]) -> &[u8] {
    value
        .iter()
        .position(|b| *b == b' ')
        .map_or(&[][..], |space| value[space..].trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_scheduled_year_is_public_from_its_instant_on() {
        let at = datetime!(2027-08-13 08:00 UTC);
        let publication = Publication::At(at);
        assert!(!publication.is_public(at - time::Duration::milliseconds(1)));
        assert!(publication.is_public(at));
        assert!(Publication::Unscheduled.is_public(at));
        assert!(!Publication::Withdrawn.is_public(at));
    }

    #[test]
    fn the_refusal_names_the_time_and_when_to_retry() {
        let at = datetime!(2027-08-13 08:00 UTC);
        let refusal = Publication::At(at)
            .refusal(2027, at - time::Duration::milliseconds(2500))
            .unwrap();
        assert_eq!(refusal.code(), "results_not_published");
        assert!(refusal.to_string().contains("2027-08-13T08:00:00Z"));
        assert!(matches!(
            refusal,
            ApiError::NotPublished {
                retry_after: Some(3),
                ..
            }
        ));
        let withdrawn = Publication::Withdrawn.refusal(2027, at).unwrap();
        assert!(matches!(
            withdrawn,
            ApiError::NotPublished {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn a_fingerprint_names_a_token_without_containing_it() {
        let print = fingerprint(b"test-token-0123456789abcdef");
        assert!(print.starts_with("sha256:") && print.len() == 23, "{print}");
        assert_ne!(print, fingerprint(b"another-token-0123456789"));
        assert_eq!(bearer_token(b"Bearer  abc "), b"abc");
    }
}
