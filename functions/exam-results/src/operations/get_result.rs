//! `GET /results/{exam_year}/{roll_number}`: the results-day hot path.
//! Public; served from a replica; `ETag` and `If-None-Match` supported.

use warp::filters::BoxedFilter;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{etag, respond, result_reply};
use crate::error::ApiError;
use crate::http::allow;
use crate::model::ResultKey;
use crate::state::AppState;

/// Route template (the `http_route` label).
pub const ROUTE: &str = super::ITEM_ROUTE;
/// Methods this route accepts.
pub const ALLOWED: &str = "GET";

/// GET /results/{exam_year}/{roll_number}
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("results" / String / String)
        .and(warp::method())
        .and(warp::header::optional::<String>(
            header::IF_NONE_MATCH.as_str(),
        ))
        .and(warp::any().map(move || state.clone()))
        .then(
            |year: String,
             roll: String,
             method: Method,
             if_none_match: Option<String>,
             state: AppState| async move {
                respond(get_result(year, roll, method, if_none_match, state).await)
            },
        )
        .boxed()
}

async fn get_result(
    year: String,
    roll: String,
    method: Method,
    if_none_match: Option<String>,
    state: AppState,
) -> Result<Response, ApiError> {
    allow(&method, ALLOWED)?;
    let key = ResultKey::from_path(&year, &roll, state.years)?;
    let result = state
        .read(|db| async move { db.get(key).await })
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no result for roll number {} in {}",
                key.roll_number, key.exam_year
            ))
        })?;
    let tag = etag(&result);
    if if_none_match
        .as_deref()
        .is_some_and(|header| matches_etag(header, &tag))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = tag.parse() {
            response.headers_mut().insert(header::ETAG, value);
        }
        return Ok(response);
    }
    Ok(result_reply(&result, StatusCode::OK))
}

/// `If-None-Match` uses weak comparison: `W/` prefixes are ignored, `*` matches.
fn matches_etag(header: &str, tag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
}

#[cfg(test)]
mod tests {
    use super::matches_etag;

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let tag = "\"00ff\"";
        assert!(matches_etag("\"00ff\"", tag));
        assert!(matches_etag("\"aaaa\", W/\"00ff\"", tag));
        assert!(matches_etag("*", tag));
        assert!(!matches_etag("\"aaaa\"", tag));
    }
}
