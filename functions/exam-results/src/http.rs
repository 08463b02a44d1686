//! Filters every function shares: the request envelope (request id, timing,
//! the log line and metrics) and the typed filters each route is composed
//! of, as warp's own examples compose them:
//!
//! - [`allowed`]: 405 with `Allow` unless the method is the route's;
//! - [`authorized_writer`] / [`authorized_reader`]: 401 unless the request
//!   carries one of the function's bearer tokens;
//! - [`json_body`]: a JSON object of at most [`MAX_BODY_BYTES`], typed.
//!
//! A filter that refuses a request rejects with a [`Problem`] (an
//! [`ApiError`]); [`handle_rejection`] turns it into the JSON reply. Every
//! header is read as raw bytes: a value that is not UTF-8 is an invalid
//! credential, a wrong media type or an ignored id, never a server error.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::de::{DeserializeOwned, IgnoredAny};
use warp::http::{header, HeaderMap, HeaderValue, Method};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::db::Lsn;
use crate::error::{ApiError, ErrorCause, ErrorCode, Problem};
use crate::route::{classify, Route};
use crate::state::AppState;
use crate::telemetry::{self, InFlight, RequestRecord};

/// The largest request body accepted (16 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The request id header, taken from the client or generated, and echoed.
pub const REQUEST_ID: &str = "x-request-id";

/// The consistency token header: set on every write response (the commit's
/// WAL position), presented on a read that must include that write.
pub const CONSISTENCY_TOKEN: &str = "x-consistency-token";

/// Per-request context created before routing.
pub struct RequestContext {
    started: Instant,
    method: &'static str,
    route: &'static str,
    path: RequestPath,
    request_id: RequestId,
    _in_flight: InFlight,
}

impl RequestContext {
    /// A request's context, from now, labelled with `route`.
    fn new(
        route: &'static str,
        method: &Method,
        path: RequestPath,
        id: Option<HeaderValue>,
    ) -> Self {
        let method = method_label(method);
        Self {
            started: Instant::now(),
            method,
            route,
            path,
            request_id: RequestId::from_header(id),
            _in_flight: InFlight::start(method, route),
        }
    }

    /// The context of a request served without warp's filters (see
    /// [`crate::server`]) whose path matched `route`: the same as
    /// [`context`] extracts.
    pub fn of_request<B>(route: Route, request: &warp::http::Request<B>) -> Self {
        Self::new(
            route.template(),
            request.method(),
            RequestPath::Uri(request.uri().clone()),
            request.headers().get(REQUEST_ID).cloned(),
        )
    }
}

/// The request's path, as warp extracted it or from its URI.
enum RequestPath {
    Warp(warp::path::FullPath),
    Uri(warp::http::Uri),
}

impl RequestPath {
    fn as_str(&self) -> &str {
        match self {
            Self::Warp(path) => path.as_str(),
            Self::Uri(uri) => uri.path(),
        }
    }
}

/// A request's id: the client's own (a valid `x-request-id`, kept as sent)
/// or a generated UUID, formatted without an allocation.
enum RequestId {
    Client(HeaderValue),
    Generated([u8; uuid::fmt::Hyphenated::LENGTH]),
}

impl RequestId {
    /// The client's `x-request-id` when it is a sane id, else a new one.
    fn from_header(id: Option<HeaderValue>) -> Self {
        match id {
            Some(id) if id.to_str().is_ok_and(is_valid_request_id) => Self::Client(id),
            _ => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
                Self::Generated(text)
            }
        }
    }

    fn as_str(&self) -> &str {
        let bytes = match self {
            Self::Client(id) => id.as_bytes(),
            Self::Generated(text) => text,
        };
        // Both are ASCII: checked, or hex digits and hyphens.
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    fn into_header(self) -> Option<HeaderValue> {
        match self {
            Self::Client(id) => Some(id),
            Self::Generated(text) => HeaderValue::from_bytes(&text).ok(),
        }
    }
}

/// Extracts the request context. The path is labelled with the template of
/// the first of `routes` it matches (or `unmatched`) so labels stay bounded.
pub fn context<const N: usize>(
    routes: [Route; N],
) -> impl Filter<Extract = (RequestContext,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(raw_header(REQUEST_ID))
        .map(
            move |method: Method, path: warp::path::FullPath, id: Option<HeaderValue>| {
                let route = classify(&routes, path.as_str());
                RequestContext::new(route, &method, RequestPath::Warp(path), id)
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
        path: logged_path(ctx.path.as_str()),
        status,
        elapsed: ctx.started.elapsed(),
        request_id: ctx.request_id.as_str(),
        error_code,
        error_cause: cause.as_ref().map(|c| c.0.as_str()),
    });
    if let Some(value) = ctx.request_id.into_header() {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The path as logged: its first 256 characters.
fn logged_path(path: &str) -> &str {
    const LOGGED_CHARS: usize = 256;
    if path.len() <= LOGGED_CHARS {
        return path;
    }
    path.char_indices()
        .nth(LOGGED_CHARS)
        .map_or(path, |(end, _)| &path[..end])
}

/// Turns the rejection left after routing into a JSON error: the
/// [`Problem`] a filter raised, or "no such route".
pub async fn handle_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    // Routes check methods themselves (405 with the right `Allow`), so a
    // warp method rejection can only come from a path no route claims: a 404.
    let error = if let Some(Problem(error)) = rejection.find::<Problem>() {
        error.clone()
    } else if rejection.is_not_found()
        || rejection.find::<warp::reject::MethodNotAllowed>().is_some()
    {
        ApiError::NotFound("no such route".into())
    } else {
        ApiError::Internal(format!("unhandled rejection: {rejection:?}"))
    };
    Ok(error.into_response())
}

/// A header's raw value, whatever its bytes; `None` when absent.
pub fn raw_header(
    name: &'static str,
) -> impl Filter<Extract = (Option<HeaderValue>,), Error = Infallible> + Clone {
    warp::header::value(name)
        .map(Some)
        .or(warp::any().map(|| None))
        .unify()
}

/// 405 unless the request's method is `method` (`HEAD` counts as `GET`);
/// the reply's `Allow` header is `allow`.
pub fn allowed(
    method: Method,
    allow: &'static str,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and_then(move |used: Method| {
            let outcome = check_method(&used, &method, allow).map_err(Rejection::from);
            async move { outcome }
        })
        .untuple_one()
}

fn check_method(used: &Method, method: &Method, allow: &'static str) -> Result<(), ApiError> {
    if used == method || (used == Method::HEAD && method == Method::GET) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed {
            method: used.as_str().chars().take(16).collect(),
            allowed: allow,
        })
    }
}

/// 401 unless the request carries one of the write tokens (`WRITE_TOKENS`).
pub fn authorized_writer(state: &AppState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    bearer(state.write_tokens.clone())
}

/// 401 unless the request carries one of the read tokens (`READ_TOKENS`).
pub fn authorized_reader(state: &AppState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    bearer(state.read_tokens.clone())
}

fn bearer(tokens: Arc<Vec<String>>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and_then(move |headers: HeaderMap| {
            let outcome = authorize(
                headers
                    .get_all(header::AUTHORIZATION)
                    .iter()
                    .map(HeaderValue::as_bytes),
                &tokens,
            )
            .map_err(Rejection::from);
            async move { outcome }
        })
        .untuple_one()
}

/// Checks the `Authorization` header values against `tokens`: exactly one
/// value (400 for several), scheme `Bearer` in any case (RFC 9110 §11.1),
/// then the token, compared in constant time as bytes (401 otherwise).
pub fn authorize<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
    tokens: &[String],
) -> Result<(), ApiError> {
    let value = values.next().ok_or(ApiError::Unauthorized)?;
    if values.next().is_some() {
        return Err(ApiError::BadRequest(
            "send one Authorization header, not several".into(),
        ));
    }
    let space = value
        .iter()
        .position(|b| *b == b' ')
        .ok_or(ApiError::Unauthorized)?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(ApiError::Unauthorized);
    }
    let presented = rest.trim_ascii();
    // Compare against every token without stopping early.
    let matched = tokens.iter().fold(false, |found, token| {
        found | constant_time_eq(presented, token.as_bytes())
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

/// The request body as a `T`: a JSON object of at most [`MAX_BODY_BYTES`]
/// (see [`read_json`] for each refusal).
pub fn json_body<T>() -> impl Filter<Extract = (T,), Error = Rejection> + Clone
where
    T: DeserializeOwned + Send + 'static,
{
    raw_header(header::CONTENT_TYPE.as_str())
        .and(raw_header(header::CONTENT_LENGTH.as_str()))
        .and(warp::body::stream())
        .and_then(
            |content_type: Option<HeaderValue>, length: Option<HeaderValue>, body| async move {
                let length = length
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                read_json(
                    content_type.as_ref().map(HeaderValue::as_bytes),
                    length,
                    Box::pin(body),
                )
                .await
                .map_err(Rejection::from)
            },
        )
}

/// Reads a JSON body: 415 unless the media type is `application/json`,
/// 413 if too big (by header or by actual size), 400 if malformed or not an
/// object, 422 if an object of the wrong shape (missing or unknown fields,
/// wrong types).
pub async fn read_json<T, S, B>(
    content_type: Option<&[u8]>,
    content_length: Option<u64>,
    mut body: S,
) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let is_json = content_type
        .and_then(|ct| ct.split(|b| *b == b';').next())
        .is_some_and(|mime| mime.trim_ascii().eq_ignore_ascii_case(b"application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType("application/json"));
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
    // serde reads a struct from an array too (`[1, 2024, 50]`): only an
    // object is a body here.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(match serde_json::from_slice::<IgnoredAny>(&bytes) {
            Ok(_) => ApiError::BadRequest("the request body must be a JSON object".into()),
            Err(err) => ApiError::InvalidJson(err.to_string()),
        });
    }
    serde_json::from_slice(&bytes).map_err(|err| {
        if err.is_data() {
            ApiError::Validation(err.to_string())
        } else {
            ApiError::InvalidJson(err.to_string())
        }
    })
}

/// The consistency token a read presents, if any: 400 when it is not one
/// this service issued (the token is opaque to clients; it is a WAL position).
pub fn consistency_token() -> impl Filter<Extract = (Option<Lsn>,), Error = Rejection> + Clone {
    raw_header(CONSISTENCY_TOKEN).and_then(|value: Option<HeaderValue>| async move {
        value
            .as_ref()
            .map(parse_consistency_token)
            .transpose()
            .map_err(Rejection::from)
    })
}

/// A presented consistency token: 400 unless it is one this service issued.
pub fn parse_consistency_token(value: &HeaderValue) -> Result<Lsn, ApiError> {
    std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|text| text.trim().parse::<Lsn>().ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{CONSISTENCY_TOKEN} is not a token this service issued"
            ))
        })
}

/// Adds the consistency token of a write that has committed at or before `lsn`.
pub fn set_consistency_token(response: &mut Response, lsn: Lsn) {
    if let Ok(value) = HeaderValue::from_str(&lsn.to_string()) {
        response.headers_mut().insert(CONSISTENCY_TOKEN, value);
    }
}

/// The idempotency key header of a write (IETF httpapi
/// draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Set to `true` on a response replayed for a repeated idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// The request's idempotency key, if any: 1 to
/// [`MAX_IDEMPOTENCY_KEY_BYTES`] visible ASCII characters, bare or as a
/// quoted string (the draft's sf-string); anything else is a 400.
pub fn idempotency_key() -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    raw_header(IDEMPOTENCY_KEY).and_then(|value: Option<HeaderValue>| async move {
        match value {
            None => Ok(None),
            Some(value) => parse_idempotency_key(value.as_bytes())
                .map(Some)
                .map_err(Rejection::from),
        }
    })
}

fn parse_idempotency_key(raw: &[u8]) -> Result<String, ApiError> {
    let raw = raw.trim_ascii();
    let key = raw
        .strip_prefix(b"\"")
        .and_then(|rest| rest.strip_suffix(b"\""))
        .unwrap_or(raw);
    let valid = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES
        && key
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\');
    match std::str::from_utf8(key) {
        Ok(key) if valid => Ok(key.to_owned()),
        _ => Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"
        ))),
    }
}

/// 400 when the URL has a query string (even an empty one): a result has
/// exactly one URL, so cache-busting variants are refused, not served.
pub fn no_query() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::query::raw()
        .map(Some)
        .or(warp::any().map(|| None))
        .unify()
        .and_then(|query: Option<String>| async move {
            match query {
                None => Ok(()),
                Some(_) => Err(Rejection::from(ApiError::BadRequest(
                    "this URL takes no query string".into(),
                ))),
            }
        })
        .untuple_one()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<String> {
        vec![
            "first-token-0123456789".into(),
            "second-token-0123456789".into(),
        ]
    }

    fn auth(values: &[&str]) -> Result<(), ApiError> {
        authorize(values.iter().map(|v| v.as_bytes()), &tokens())
    }

    #[test]
    fn a_listed_bearer_token_is_accepted_with_the_scheme_in_any_case() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert!(auth(&[&format!("{scheme} second-token-0123456789")]).is_ok());
        }
    }

    #[test]
    fn a_missing_wrong_or_malformed_token_is_refused() {
        for values in [
            &[][..],
            &["Bearer nope"],
            &["Basic Zm9vOmJhcg=="],
            &["first-token-0123456789"],
            &["Bearer"],
        ] {
            assert_eq!(auth(values).unwrap_err().code(), "unauthorized");
        }
        let invalid_utf8: &[u8] = b"Bearer \xfffirst-token-0123456789";
        assert!(authorize([invalid_utf8].into_iter(), &tokens()).is_err());
    }

    #[test]
    fn two_authorization_headers_are_a_bad_request() {
        let one = "Bearer first-token-0123456789";
        assert_eq!(auth(&[one, one]).unwrap_err().code(), "bad_request");
    }

    #[test]
    fn a_prefix_of_a_token_is_refused() {
        assert!(auth(&["Bearer first-token"]).is_err());
        assert!(auth(&["Bearer first-token-0123456789x"]).is_err());
    }

    #[test]
    fn head_is_allowed_wherever_get_is() {
        assert!(check_method(&Method::HEAD, &Method::GET, "GET, HEAD").is_ok());
        assert_eq!(
            check_method(&Method::POST, &Method::GET, "GET, HEAD")
                .unwrap_err()
                .code(),
            "method_not_allowed"
        );
    }

    #[test]
    fn idempotency_keys_are_bare_or_quoted_visible_ascii() {
        assert_eq!(parse_idempotency_key(b"abc-123").unwrap(), "abc-123");
        assert_eq!(parse_idempotency_key(b" \"abc\" ").unwrap(), "abc");
        let longest = "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES);
        assert!(parse_idempotency_key(longest.as_bytes()).is_ok());
        for bad in [
            &b""[..],
            b"\"\"",
            b"has space",
            b"caf\xc3\xa9",
            b"\xff",
            longest.repeat(2).as_bytes(),
        ] {
            assert_eq!(
                parse_idempotency_key(bad).unwrap_err().code(),
                "bad_request"
            );
        }
    }

    #[test]
    fn client_request_ids_are_kept_only_when_sane() {
        assert!(is_valid_request_id("abc-123"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("has space"));
        assert!(!is_valid_request_id(&"x".repeat(129)));
    }

    #[test]
    fn a_request_id_is_the_clients_when_sane_else_a_new_uuid() {
        let kept = RequestId::from_header(Some(HeaderValue::from_static("abc-123")));
        assert_eq!(kept.as_str(), "abc-123");
        for refused in [None, Some(HeaderValue::from_static("has space"))] {
            let id = RequestId::from_header(refused);
            assert!(
                uuid::Uuid::parse_str(id.as_str()).is_ok(),
                "{}",
                id.as_str()
            );
            assert_eq!(id.as_str().len(), 36);
            let text = id.as_str().to_owned();
            assert_eq!(id.into_header().unwrap(), text.as_str());
        }
    }

    #[test]
    fn the_logged_path_is_at_most_256_characters() {
        assert_eq!(logged_path("/results/2024/1"), "/results/2024/1");
        let long = "é".repeat(300);
        assert_eq!(logged_path(&long).chars().count(), 256);
        assert_eq!(logged_path(&long), "é".repeat(256));
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
        let ok: Body = read_json(
            Some(b"application/json; charset=utf-8"),
            None,
            stream_of(vec![b"{\"marks\":", b"5}"]),
        )
        .await
        .unwrap();
        assert_eq!(ok.marks, 5);
        let err = read_json::<Body, _, _>(Some(b"text/plain"), None, stream_of(vec![b"{}"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "unsupported_media_type");
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_and_the_wrong_shape_a_422() {
        let err = read_json::<Body, _, _>(
            Some(b"application/json"),
            None,
            stream_of(vec![b"{\"marks\":"]),
        )
        .await;
        assert_eq!(err.unwrap_err().code(), "invalid_json");
        let err = read_json::<Body, _, _>(
            Some(b"application/json"),
            None,
            stream_of(vec![b"{\"marks\":\"a\"}"]),
        )
        .await;
        assert_eq!(err.unwrap_err().code(), "validation_failed");
        let err = read_json::<Body, _, _>(
            Some(b"application/json"),
            None,
            stream_of(vec![b"{\"marks\":1,\"x\":2}"]),
        )
        .await;
        assert_eq!(err.unwrap_err().code(), "validation_failed");
    }

    #[tokio::test]
    async fn only_an_object_is_a_body() {
        for (body, code) in [
            (&b"[5]"[..], "bad_request"),
            (&b" 5"[..], "bad_request"),
            (&b"\"x\""[..], "bad_request"),
            (&b""[..], "invalid_json"),
            (&b"[5"[..], "invalid_json"),
        ] {
            let err =
                read_json::<Body, _, _>(Some(b"application/json"), None, stream_of(vec![body]))
                    .await
                    .unwrap_err();
            assert_eq!(err.code(), code, "{}", String::from_utf8_lossy(body));
        }
        let err = read_json::<Body, _, _>(Some(b"\xffjson"), None, stream_of(vec![b"{}"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "unsupported_media_type");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_even_without_a_length_header() {
        let big: &'static [u8] = Box::leak(vec![b' '; MAX_BODY_BYTES + 1].into_boxed_slice());
        let err =
            read_json::<Body, _, _>(Some(b"application/json"), None, stream_of(vec![big])).await;
        assert_eq!(err.unwrap_err().code(), "payload_too_large");
        let err = read_json::<Body, _, _>(
            Some(b"application/json"),
            Some(1 << 20),
            stream_of(vec![b"{}"]),
        )
        .await;
        assert_eq!(err.unwrap_err().code(), "payload_too_large");
    }
}
