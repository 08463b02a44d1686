//! `GET /results/{exam_year}/{roll_number}`: the results-day hot path.
//! Public once the year is published (staff with a read or write token
//! before); served from a replica, through the in-process cache for
//! published data; `ETag`, `If-None-Match` and `Cache-Control` (see
//! [`crate::read_cache`]). A read presenting a write's consistency token
//! sees that write (see [`AppState::read`]) and skips the in-process cache.

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{etag, result_key, result_reply, with_state, Function, RESULT};
use crate::config::{Access, Auth};
use crate::db::Lsn;
use crate::error::ApiError;
use crate::http::{consistency_token, raw_header};
use crate::model::{ExamResult, ResultKey};
use crate::publication::{serve_read, viewer, Audience, Viewer};
use crate::state::AppState;

/// The get-result function.
pub const FUNCTION: Function = Function {
    name: "get-result",
    access: Access::Read,
    auth: Auth::Public,
    method: &Method::GET,
    route: RESULT,
    routes,
};

/// GET /results/{exam_year}/{roll_number}
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    FUNCTION
        .route
        .filter()
        .and(FUNCTION.allowed())
        .and(result_key(state.years))
        .and(raw_header(header::IF_NONE_MATCH.as_str()))
        .and(consistency_token())
        .and(viewer(&state))
        .and(with_state(state))
        .then(get_result)
        .boxed()
}

async fn get_result(
    key: ResultKey,
    if_none_match: Option<HeaderValue>,
    at: Option<Lsn>,
    viewer: Viewer,
    state: AppState,
) -> Response {
    let state = &state;
    serve_read(state, viewer, key.exam_year, |audience| async move {
        let result = read(state, key, audience, at)
            .await?
            .ok_or(ApiError::NoResult(key))?;
        Ok(conditional_reply(&result, if_none_match))
    })
    .await
}

/// The result: published data through the in-process cache, staff reads
/// and reads at a consistency token straight from the database.
async fn read(
    state: &AppState,
    key: ResultKey,
    audience: Audience,
    at: Option<Lsn>,
) -> Result<Option<ExamResult>, ApiError> {
    let query = || state.read(|db| async move { db.get(key, at).await });
    match audience {
        Audience::Public if at.is_none() => {
            state
                .read_cache
                .result((key.exam_year, key.roll_number), query)
                .await
        }
        Audience::Public | Audience::Private => query().await,
    }
}

/// 304 when `If-None-Match` names the current tag, else the result.
fn conditional_reply(result: &ExamResult, if_none_match: Option<HeaderValue>) -> Response {
    let tag = etag(result);
    if if_none_match.is_some_and(|header| matches_etag(header.as_bytes(), &tag)) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = tag.parse() {
            response.headers_mut().insert(header::ETAG, value);
        }
        return response;
    }
    result_reply(result, StatusCode::OK)
}

/// `If-None-Match` uses weak comparison: `W/` prefixes are ignored, `*`
/// matches. Compared as bytes: a value that is not ASCII (RFC 9110 allows
/// obs-text in entity tags) simply matches none of ours.
fn matches_etag(header: &[u8], tag: &str) -> bool {
    header.split(|b| *b == b',').map(<[u8]>::trim_ascii).any(|candidate| {
        candidate == b"*" || candidate.strip_prefix(b"W/").unwrap_or(candidate) == tag.as_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::matches_etag;

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let tag = "\"00ff\"";
        assert!(matches_etag(b"\"00ff\"", tag));
        assert!(matches_etag(b"\"aaaa\", W/\"00ff\"", tag));
        assert!(matches_etag(b"*", tag));
        assert!(!matches_etag(b"\"aaaa\"", tag));
        assert!(!matches_etag(b"\"\xff\"", tag));
    }
}
