//! `GET /results/{exam_year}/{roll_number}`: the results-day hot path.
//! Public once the year is published (staff with a read or write token
//! before); served from a replica, through the in-process cache for
//! published data; `ETag`, `If-None-Match` and `Cache-Control` (see
//! [`crate::read_cache`]). A read presenting a write's consistency token
//! sees that write (see [`AppState::read`]) and skips the in-process cache.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, Request, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{etag_bytes, result_key, tagged_reply, with_state, Function, RESULT};
use crate::config::{Access, Auth};
use crate::db::Lsn;
use crate::error::ApiError;
use crate::http::{
    consistency_token, finish, parse_consistency_token, raw_header, RequestContext,
    CONSISTENCY_TOKEN,
};
use crate::model::{ExamResult, ResultKey};
use crate::publication::{serve_read, viewer, Audience, StaffTokens, Viewer};
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
        .then(
            |key, if_none_match, at, viewer, state: AppState| async move {
                get_result(key, if_none_match, at, viewer, &state).await
            },
        )
        .boxed()
}

/// The hot route served without warp's filter chain, straight from the
/// connection's service (see [`crate::server`]): the same handler, reached
/// without composing and unwinding a dozen filters per request.
pub struct Direct {
    state: AppState,
    staff: StaffTokens,
}

impl Direct {
    /// For `state`'s function (get-result).
    pub fn new(state: AppState) -> Arc<Self> {
        let staff = StaffTokens::of(&state);
        Arc::new(Self { state, staff })
    }

    /// The response to `request` when it is a read that every filter of
    /// [`routes`] passes (a `GET` of a result, canonical numbers in range,
    /// no query string, no consistency token or a valid one); `None` for
    /// anything else, which the filters answer (including every error).
    ///
    /// The future is boxed where it is made: hyper moves the service's
    /// future several times per request, and this one is kilobytes in size.
    pub fn serve<B>(
        self: &Arc<Self>,
        request: &Request<B>,
    ) -> Option<Pin<Box<dyn Future<Output = Response> + Send + 'static>>> {
        if request.method() != Method::GET || request.uri().query().is_some() {
            return None;
        }
        let [year, roll] = FUNCTION.route.params::<2>(request.uri().path())?;
        let key = ResultKey::from_path(year, roll, self.state.years).ok()?;
        let headers = request.headers();
        let at = match headers.get(CONSISTENCY_TOKEN) {
            None => None,
            Some(value) => Some(parse_consistency_token(value).ok()?),
        };
        let if_none_match = headers.get(header::IF_NONE_MATCH).cloned();
        let viewer = self.staff.viewer(headers);
        let cors = crate::web::cors_origin_of(FUNCTION.auth, &self.state.web, headers);
        let context = RequestContext::of_request(FUNCTION.route, request);
        let this = Arc::clone(self);
        Some(Box::pin(async move {
            let response = get_result(key, if_none_match, at, viewer, &this.state).await;
            finish(context, crate::web::with_cors(cors, response))
        }))
    }
}

async fn get_result(
    key: ResultKey,
    if_none_match: Option<HeaderValue>,
    at: Option<Lsn>,
    viewer: Viewer,
    state: &AppState,
) -> Response {
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
        // Boxed: the cache's future would otherwise make every read's
        // future larger (and every move of it dearer), cache or not.
        Audience::Public if at.is_none() && state.read_cache.caches_results() => {
            Box::pin(
                state
                    .read_cache
                    .result((key.exam_year, key.roll_number), query),
            )
            .await
        }
        Audience::Public | Audience::Private => query().await,
    }
}

/// 304 when `If-None-Match` names the current tag, else the result.
fn conditional_reply(result: &ExamResult, if_none_match: Option<HeaderValue>) -> Response {
    let tag = etag_bytes(result);
    if if_none_match.is_some_and(|header| matches_etag(header.as_bytes(), &tag)) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = HeaderValue::from_bytes(&tag) {
            response.headers_mut().insert(header::ETAG, value);
        }
        return response;
    }
    tagged_reply(result, &tag, StatusCode::OK)
}

/// `If-None-Match` uses weak comparison: `W/` prefixes are ignored, `*`
/// matches. Compared as bytes: a value that is not ASCII (RFC 9110 allows
/// obs-text in entity tags) simply matches none of ours.
fn matches_etag(header: &[u8], tag: &[u8]) -> bool {
    header.split(|b| *b == b',').map(<[u8]>::trim_ascii).any(|candidate| {
        candidate == b"*" || candidate.strip_prefix(b"W/").unwrap_or(candidate) == tag
    })
}

#[cfg(test)]
mod tests {
    use super::matches_etag;

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let tag = b"\"00ff\"";
        assert!(matches_etag(b"\"00ff\"", tag));
        assert!(matches_etag(b"\"aaaa\", W/\"00ff\"", tag));
        assert!(matches_etag(b"*", tag));
        assert!(!matches_etag(b"\"aaaa\"", tag));
        assert!(!matches_etag(b"\"\xff\"", tag));
    }
}
