//! Filters every function shares: the request envelope (request id, timing,
//! the log line and metrics), the bounded JSON body, and bearer auth.

use std::convert::Infallible;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use warp::http::{header, HeaderValue, Method};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::error::{ApiError, ErrorCause, ErrorCode};
use crate::telemetry::{self, InFlight, RequestRecord};

/// The largest request body accepted (16 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The request id header, taken from the client or generated, and echoed.
pub const REQUEST_ID: &str = "x-request-id";

/// Per-request context created before routing.
pub struct RequestContext {
    started: Instant,
    method: &'static str,
    route: &'static str,
    path: String,
    request_id: String,
    _in_flight: InFlight,
}

/// Extracts the request context. `classify` maps a path to its route template
/// (or `unmatched`) so labels stay bounded.
pub fn context(
    classify: fn(&str) -> &'static str,
) -> impl Filter<Extract = (RequestContext,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(
            warp::header::optional::<String>(REQUEST_ID)
                .or(warp::any().map(|| None))
                .unify(),
        )
        .map(
            move |method: Method, path: warp::path::FullPath, id: Option<String>| {
                let method = method_label(&method);
                let route = classify(path.as_str());
                RequestContext {
                    started: Instant::now(),
                    method,
                    route,
                    path: path.as_str().chars().take(256).collect(),
                    request_id: id
                        .filter(|id| is_valid_request_id(id))
                        .unwrap_or_else(new_request_id),
                    _in_flight: InFlight::start(method, route),
                }
            },
        )
}

/// Completes a request: echoes the request id, records metrics, logs one line.
pub fn finish(ctx: RequestContext, mut response: Response) -> Response {
    let status = response.status().as_u16();
    let error_code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    let cause = response.extensions_mut().remove::<ErrorCause>();
    telemetry::record_request(RequestRecord {
        method: ctx.method,
        route: ctx.route,
        path: &ctx.path,
        status,
        elapsed: ctx.started.elapsed(),
        request_id: &ctx.request_id,
        error_code,
        error_cause: cause.as_ref().map(|c| c.0.as_str()),
    });
    if let Ok(value) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Turns any rejection left after routing into a JSON error. Routes return
/// domain errors as replies, so what reaches here is "no route matched".
pub async fn handle_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    // Routes check methods themselves (405 with the right `Allow`), so a
    // method rejection can only come from a path no route claims: a 404.
    let error = if rejection.is_not_found()
        || rejection.find::<warp::reject::MethodNotAllowed>().is_some()
    {
        ApiError::NotFound("no such route".into())
    } else {
        ApiError::Internal(format!("unhandled rejection: {rejection:?}"))
    };
    Ok(error.into_response())
}

/// Checks the method against what a route allows; `HEAD` is allowed wherever `GET` is.
pub fn allow(method: &Method, allowed: &'static str) -> Result<(), ApiError> {
    let name = method.as_str();
    let ok = allowed.split(", ").any(|m| m == name)
        || (method == Method::HEAD && allowed.contains("GET"));
    if ok {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed {
            method: name.chars().take(16).collect(),
            allowed,
        })
    }
}

/// Everything a write handler needs from the request before touching the body.
pub fn write_request() -> impl Filter<
    Extract = (
        Option<String>,
        Option<String>,
        Option<u64>,
        impl Stream<Item = Result<impl Buf, warp::Error>> + Send + Unpin + 'static,
    ),
    Error = Rejection,
> + Clone {
    warp::header::optional::<String>(header::AUTHORIZATION.as_str())
        .and(warp::header::optional::<String>(
            header::CONTENT_TYPE.as_str(),
        ))
        .and(warp::header::optional::<u64>(
            header::CONTENT_LENGTH.as_str(),
        ))
        .and(warp::body::stream().map(Box::pin))
}

/// 401 unless `authorization` is `Bearer <one of tokens>`; compared in constant time.
pub fn authorize(authorization: Option<&str>, tokens: &[String]) -> Result<(), ApiError> {
    let presented = authorization
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    // Compare against every token without stopping early.
    let matched = tokens.iter().fold(false, |found, token| {
        found | constant_time_eq(presented.as_bytes(), token.as_bytes())
    });
    if matched {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, byte) in b.iter().enumerate() {
        diff |= byte ^ a.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`]: 415 if not JSON, 413 if too
/// big (by header or by actual size), 400 if malformed, 422 if well-formed but
/// the wrong shape (missing or unknown fields, wrong types).
pub async fn json_body<T, S, B>(
    content_type: Option<&str>,
    content_length: Option<u64>,
    mut body: S,
) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let is_json = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    if content_length.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|err| {
            ApiError::BadRequest(format!("could not read the request body: {err}"))
        })?;
        if bytes.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            bytes.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    serde_json::from_slice(&bytes).map_err(|err| {
        if err.is_data() {
            ApiError::Validation(err.to_string())
        } else {
            ApiError::InvalidJson(err.to_string())
        }
    })
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<String> {
        vec![
            "first-token-0123456789".into(),
            "second-token-0123456789".into(),
        ]
    }

    #[test]
    fn a_listed_bearer_token_is_accepted() {
        assert!(authorize(Some("Bearer second-token-0123456789"), &tokens()).is_ok());
    }

    #[test]
    fn a_missing_wrong_or_malformed_token_is_refused() {
        for header in [
            None,
            Some("Bearer nope"),
            Some("Basic Zm9vOmJhcg=="),
            Some("first-token-0123456789"),
        ] {
            assert_eq!(
                authorize(header, &tokens()).unwrap_err().code(),
                "unauthorized"
            );
        }
    }

    #[test]
    fn a_prefix_of_a_token_is_refused() {
        assert!(authorize(Some("Bearer first-token"), &tokens()).is_err());
        assert!(authorize(Some("Bearer first-token-0123456789x"), &tokens()).is_err());
    }

    #[test]
    fn head_is_allowed_wherever_get_is() {
        assert!(allow(&Method::HEAD, "GET").is_ok());
        assert_eq!(
            allow(&Method::POST, "GET").unwrap_err().code(),
            "method_not_allowed"
        );
    }

    #[test]
    fn client_request_ids_are_kept_only_when_sane() {
        assert!(is_valid_request_id("abc-123"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("has space"));
        assert!(!is_valid_request_id(&"x".repeat(129)));
    }

    fn stream_of(
        parts: Vec<&'static [u8]>,
    ) -> impl Stream<Item = Result<bytes::Bytes, warp::Error>> + Unpin {
        futures_util::stream::iter(parts.into_iter().map(|p| Ok(bytes::Bytes::from_static(p))))
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        marks: i32,
    }

    #[tokio::test]
    async fn a_body_is_parsed_only_when_it_is_json() {
        let ok: Body = json_body(
            Some("application/json; charset=utf-8"),
            None,
            stream_of(vec![b"{\"marks\":", b"5}"]),
        )
        .await
        .unwrap();
        assert_eq!(ok.marks, 5);
        let err = json_body::<Body, _, _>(Some("text/plain"), None, stream_of(vec![b"{}"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "unsupported_media_type");
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_and_the_wrong_shape_a_422() {
        let err = json_body::<Body, _, _>(
            Some("application/json"),
            None,
            stream_of(vec![b"{\"marks\":"]),
        )
        .await;
        assert_eq!(err.unwrap_err().code(), "invalid_json");
        let err = json_body::<Body, _, _>(
            Some("application/json"),
            None,
            stream_of(vec![b"{\"marks\":\"a\"}"]),
        )
        .await;
        assert_eq!(err.unwrap_err().code(), "validation_failed");
        let err = json_body::<Body, _, _>(
            Some("application/json"),
            None,
            stream_of(vec![b"{\"marks\":1,\"x\":2}"]),
        )
        .await;
        assert_eq!(err.unwrap_err().code(), "validation_failed");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_even_without_a_length_header() {
        let big: &'static [u8] = Box::leak(vec![b' '; MAX_BODY_BYTES + 1].into_boxed_slice());
        let err =
            json_body::<Body, _, _>(Some("application/json"), None, stream_of(vec![big])).await;
        assert_eq!(err.unwrap_err().code(), "payload_too_large");
        let err = json_body::<Body, _, _>(
            Some("application/json"),
            Some(1 << 20),
            stream_of(vec![b"{}"]),
        )
        .await;
        assert_eq!(err.unwrap_err().code(), "payload_too_large");
    }
}
