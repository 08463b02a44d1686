//! The five operations, one module each: a route filter and its handler.
//!
//! Each module exposes `ROUTE` (the template used as the `http_route` label),
//! `ALLOWED` (methods for the `Allow` header) and `routes(state)`, the warp
//! filter that a function binary serves. Handlers return domain errors as
//! replies, never as rejections, so one route's error never falls through to
//! another branch (warp #77).

pub mod create_result;
pub mod delete_result;
pub mod get_result;
pub mod health;
pub mod list_results;
pub mod update_result;

use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use crate::error::ApiError;
use crate::model::ExamResult;

/// The template of `/results/{exam_year}/{roll_number}`.
pub const ITEM_ROUTE: &str = "/results/{exam_year}/{roll_number}";
/// The template of `/results`.
pub const COLLECTION_ROUTE: &str = "/results";

/// Maps a request path to its route template for labels (never the raw path).
pub fn classify(path: &str) -> &'static str {
    match path {
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/results" | "/results/" => COLLECTION_ROUTE,
        _ => {
            let mut parts = path.trim_start_matches('/').split('/');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("results"), Some(_), Some(_), None) => ITEM_ROUTE,
                _ => "unmatched",
            }
        }
    }
}

/// Collapses a handler's outcome into a response.
pub fn respond(outcome: Result<Response, ApiError>) -> Response {
    outcome.unwrap_or_else(ApiError::into_response)
}

/// A result as JSON with its `ETag`.
pub fn result_reply(result: &ExamResult, status: StatusCode) -> Response {
    let mut response = warp::reply::with_status(warp::reply::json(result), status).into_response();
    if let Ok(value) = etag(result).parse() {
        response
            .headers_mut()
            .insert(warp::http::header::ETAG, value);
    }
    response
}

/// A strong entity tag over the result's content (FNV-1a, stable across builds and pods).
pub fn etag(result: &ExamResult) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!(
        "{}:{}:{}",
        result.exam_year, result.roll_number, result.marks
    );
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_bounded_route_templates() {
        assert_eq!(classify("/results/2024/1"), ITEM_ROUTE);
        assert_eq!(classify("/results/anything/else"), ITEM_ROUTE);
        assert_eq!(classify("/results"), COLLECTION_ROUTE);
        assert_eq!(classify("/results/2024"), "unmatched");
        assert_eq!(classify("/results/2024/1/x"), "unmatched");
        assert_eq!(classify("/admin"), "unmatched");
        assert_eq!(classify("/healthz"), "/healthz");
    }

    #[test]
    fn the_etag_changes_with_the_marks() {
        let a = ExamResult {
            roll_number: 1,
            exam_year: 2024,
            marks: 50,
        };
        let b = ExamResult {
            marks: 51,
            ..a.clone()
        };
        assert_ne!(etag(&a), etag(&b));
        assert_eq!(etag(&a), etag(&a.clone()));
        assert!(etag(&a).starts_with('"'));
    }
}
