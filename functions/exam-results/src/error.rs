//! The one error type every handler returns, and its JSON form.
//!
//! Each variant's doc names its HTTP status and stable `code`. The reply body
//! is always `{"error": {"code": "...", "message": "..."}}`; causes of server
//! errors are logged (in the request's log line), never sent to the client.
//!
//! This is the only place where a domain error ([`InputError`]) or a
//! database error ([`DbError`]) becomes an HTTP status.

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::batch::Report;
use crate::db::DbError;
use crate::model::{InputError, ResultKey};

/// Everything that can go wrong while serving a request.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: a path or query value is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 400 `invalid_json`: the body is not well-formed JSON.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// 401 `unauthorized`: missing or unknown bearer token where one is required.
    #[error("a valid bearer token is required: send `Authorization: Bearer <token>`")]
    Unauthorized,
    /// 404 `not_found`: no such route, or a result URL that is not canonical.
    #[error("{0}")]
    NotFound(String),
    /// 404 `not_found`: no result with this key.
    #[error("no result for roll number {} in {}", .0.roll_number, .0.exam_year)]
    NoResult(ResultKey),
    /// 404 `results_not_published` (with `Retry-After` until the
    /// publication time, when one is set; `Cache-Control: private,
    /// no-store`): the year is not public yet. Says nothing about which
    /// results exist.
    #[error("results for {exam_year} are not published yet{}", publish_at.as_ref().map(|at| format!("; they will be published at {at}")).unwrap_or_default())]
    NotPublished {
        /// The year asked for.
        exam_year: i32,
        /// Its publication time (RFC 3339), if one is set.
        publish_at: Option<String>,
        /// Seconds until then.
        retry_after: Option<u64>,
    },
    /// 405 `method_not_allowed`: the path exists but not with this method.
    #[error("method {method} is not allowed here; allowed: {allowed}")]
    MethodNotAllowed {
        /// The method the client used.
        method: String,
        /// The methods this route accepts, for the `Allow` header.
        allowed: &'static str,
    },
    /// 409 `conflict`: a result with this key already exists.
    #[error("{0}")]
    Conflict(String),
    /// 409 `idempotency_key_in_progress` (with `Retry-After`): a request
    /// with this `Idempotency-Key` is still being processed.
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    KeyInProgress,
    /// 412 `precondition_failed` (with the current `ETag`): `If-Match`
    /// names none of the result's current entity tags.
    #[error("the result has changed: If-Match does not match its current ETag {0}")]
    PreconditionFailed(String),
    /// 413 `payload_too_large`: the body exceeds the limit.
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// 415 `unsupported_media_type`: the body is not of the media type the
    /// function takes (named here).
    #[error("Content-Type must be {0}")]
    UnsupportedMediaType(&'static str),
    /// 422 `validation_failed`: well-formed but invalid values.
    #[error("{0}")]
    Validation(String),
    /// 422 `idempotency_key_reused`: this `Idempotency-Key` was used for
    /// a different request (another body, path, method or condition).
    #[error("this Idempotency-Key was already used for a different request; use a new key")]
    KeyReused,
    /// 422 `batch_rejected`: a batch with invalid rows, duplicates within
    /// it, or results that exist; nothing was written. The body's `error`
    /// carries the report.
    #[error("the batch was rejected: {} of {} rows", .0.rejected, .0.rows)]
    BatchRejected(Box<Report>),
    /// 422 `partition_missing`: the exam year is valid but has no partition yet.
    #[error("exam year {0} is not open for results yet (no partition exists for it)")]
    PartitionMissing(i32),
    /// 503 `database_unavailable` (with `Retry-After`): the pooler or
    /// database cannot be reached in time, or the pool is exhausted.
    #[error("the results database is unavailable, retry shortly")]
    Unavailable(String),
    /// 503 `replica_lagging` (with `Retry-After`): the read replica is too far behind.
    #[error("results are being synchronised, retry shortly (replica is {0:.1}s behind)")]
    ReplicaLagging(f64),
    /// 503 `replica_lagging` (with `Retry-After`): a read presented a
    /// consistency token that no database in reach had replayed in time.
    #[error("this read must include a write the replica has not replayed yet, retry shortly")]
    NotReplayed,
    /// 500 `internal_error`: anything unexpected; the cause is logged only.
    #[error("internal error")]
    Internal(String),
    /// 429 `rate_limited` (with `Retry-After`): this client made too many
    /// requests to a public route; see `RATE_LIMIT_PER_SECOND`.
    #[error("too many requests from this client, retry after {retry_after_seconds}s")]
    RateLimited {
        /// Whole seconds until the client's next request would be accepted.
        retry_after_seconds: u64,
    },
    /// 431 `headers_too_large`: too many header fields, or a request head
    /// over `HTTP_MAX_HEADER_BYTES` (answered by the serving layer).
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// 503 `overloaded` (with `Retry-After`): the process serves
    /// `HTTP_MAX_CONNECTIONS` connections already; this one is closed.
    #[error("too many open connections, retry shortly")]
    Overloaded,
}

/// Every stable error code, as documented in docs/openapi.yaml.
pub const ERROR_CODES: [&str; 21] = [
    "bad_request",
    "invalid_json",
    "unauthorized",
    "not_found",
    "results_not_published",
    "method_not_allowed",
    "conflict",
    "idempotency_key_in_progress",
    "precondition_failed",
    "payload_too_large",
    "unsupported_media_type",
    "validation_failed",
    "idempotency_key_reused",
    "batch_rejected",
    "partition_missing",
    "database_unavailable",
    "replica_lagging",
    "internal_error",
    "rate_limited",
    "headers_too_large",
    "overloaded",
];

/// The cause of a server-side error, carried in the response's extensions so
/// the request log line can include it. Never serialised to the client.
#[derive(Clone, Debug)]
pub struct ErrorCause(pub String);

/// The stable error code carried in a response's extensions, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) | Self::NoResult(_) | Self::NotPublished { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) | Self::KeyInProgress => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_)
            | Self::PartitionMissing(_)
            | Self::KeyReused
            | Self::BatchRejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) | Self::ReplicaLagging(_) | Self::NotReplayed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable, snake_case code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::InvalidJson(_) => "invalid_json",
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) | Self::NoResult(_) => "not_found",
            Self::NotPublished { .. } => "results_not_published",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::KeyInProgress => "idempotency_key_in_progress",
            Self::KeyReused => "idempotency_key_reused",
            Self::BatchRejected(_) => "batch_rejected",
            Self::PreconditionFailed(_) => "precondition_failed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Validation(_) => "validation_failed",
            Self::PartitionMissing(_) => "partition_missing",
            Self::Unavailable(_) => "database_unavailable",
            Self::ReplicaLagging(_) | Self::NotReplayed => "replica_lagging",
            Self::Internal(_) => "internal_error",
            Self::RateLimited { .. } => "rate_limited",
            Self::HeadersTooLarge => "headers_too_large",
            Self::Overloaded => "overloaded",
        }
    }

    /// The reply: JSON body, status, and the headers some statuses need.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        let mut body = serde_json::json!({"error": {"code": code, "message": self.to_string()}});
        if let Self::BatchRejected(report) = &self {
            body["error"]["report"] = serde_json::to_value(report).unwrap_or_default();
        }
        let mut response =
            warp::reply::with_status(warp::reply::json(&body), status).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::MethodNotAllowed { allowed, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
            }
            Self::Unavailable(_)
            | Self::ReplicaLagging(_)
            | Self::NotReplayed
            | Self::KeyInProgress
            | Self::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::RateLimited {
                retry_after_seconds,
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
            }
            Self::PreconditionFailed(etag) => {
                if let Ok(value) = HeaderValue::from_str(etag) {
                    headers.insert(header::ETAG, value);
                }
            }
            Self::NotPublished { retry_after, .. } => {
                if let Some(seconds) = retry_after {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
                }
                headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, no-store"),
                );
            }
            _ => {}
        }
        if let Self::Unavailable(cause) | Self::Internal(cause) = self {
            response.extensions_mut().insert(ErrorCause(cause));
        }
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

use warp::Reply as _;

impl warp::Reply for ApiError {
    fn into_response(self) -> Response {
        ApiError::into_response(self)
    }
}

/// An [`ApiError`] raised by a filter (method, token, path, body) as a warp
/// rejection; the rejection handler turns it back into its reply.
#[derive(Debug)]
pub struct Problem(pub ApiError);

impl warp::reject::Reject for Problem {}

impl From<ApiError> for warp::Rejection {
    fn from(err: ApiError) -> Self {
        warp::reject::custom(Problem(err))
    }
}

impl From<InputError> for warp::Rejection {
    fn from(err: InputError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<InputError> for ApiError {
    fn from(err: InputError) -> Self {
        let message = err.to_string();
        match err {
            InputError::Malformed(_) => Self::BadRequest(message),
            InputError::OutOfRange(_) => Self::Validation(message),
            InputError::NotCanonical(_) => Self::NotFound(message),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(cause) => Self::Unavailable(cause),
            DbError::Exists(key) => Self::Conflict(format!(
                "a result for roll number {} in {} already exists",
                key.roll_number, key.exam_year
            )),
            DbError::NoPartition(year) => Self::PartitionMissing(year),
            DbError::NotReplayed(_) => Self::NotReplayed,
            DbError::KeyInProgress => Self::KeyInProgress,
            DbError::KeyReused => Self::KeyReused,
            DbError::Other(cause) => Self::Internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn an_internal_error_hides_its_cause_from_the_client() {
        let response = ApiError::Internal("relation \"student_results\" does not exist".into())
            .into_response();
        assert_eq!(response.status(), 500);
        let cause = response.extensions().get::<ErrorCause>().unwrap().0.clone();
        assert!(cause.contains("student_results"));
        let body = body_of(response).await;
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(!body.to_string().contains("relation"));
    }

    #[tokio::test]
    async fn unavailable_carries_retry_after() {
        let response = ApiError::Unavailable("pool timed out".into()).into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            body_of(response).await["error"]["code"],
            "database_unavailable"
        );
    }

    #[tokio::test]
    async fn method_not_allowed_lists_the_allowed_methods() {
        let response = ApiError::MethodNotAllowed {
            method: "PATCH".into(),
            allowed: "GET, HEAD",
        }
        .into_response();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET, HEAD");
    }

    #[tokio::test]
    async fn unauthorized_asks_for_a_bearer_token() {
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }

    #[test]
    fn every_status_matches_its_documented_class() {
        let cases = [
            (ApiError::BadRequest("x".into()), 400, "bad_request"),
            (ApiError::InvalidJson("x".into()), 400, "invalid_json"),
            (ApiError::NotFound("x".into()), 404, "not_found"),
            (
                ApiError::NoResult(ResultKey {
                    exam_year: 2024,
                    roll_number: 1,
                }),
                404,
                "not_found",
            ),
            (ApiError::Conflict("x".into()), 409, "conflict"),
            (ApiError::PayloadTooLarge(16), 413, "payload_too_large"),
            (
                ApiError::UnsupportedMediaType("application/json"),
                415,
                "unsupported_media_type",
            ),
            (ApiError::Validation("x".into()), 422, "validation_failed"),
            (ApiError::PartitionMissing(2031), 422, "partition_missing"),
            (ApiError::ReplicaLagging(3.0), 503, "replica_lagging"),
            (ApiError::NotReplayed, 503, "replica_lagging"),
            (ApiError::KeyInProgress, 409, "idempotency_key_in_progress"),
            (ApiError::KeyReused, 422, "idempotency_key_reused"),
            (
                ApiError::BatchRejected(Box::default()),
                422,
                "batch_rejected",
            ),
            (
                ApiError::PreconditionFailed("\"00\"".into()),
                412,
                "precondition_failed",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status().as_u16(), err.code()), (status, code));
            assert!(
                ERROR_CODES.contains(&code),
                "{code} missing from ERROR_CODES"
            );
        }
    }

    #[test]
    fn each_domain_error_has_one_status() {
        let cases = [
            (InputError::Malformed("x".into()), 400),
            (InputError::OutOfRange("x".into()), 422),
            (InputError::NotCanonical("+1".into()), 404),
        ];
        for (err, status) in cases {
            assert_eq!(ApiError::from(err).status().as_u16(), status);
        }
        let key = ResultKey {
            exam_year: 2024,
            roll_number: 9,
        };
        let conflict = ApiError::from(DbError::Exists(key));
        assert_eq!(conflict.status().as_u16(), 409);
        assert!(conflict.to_string().contains("roll number 9 in 2024"));
        assert_eq!(
            ApiError::from(DbError::NoPartition(2035)).code(),
            "partition_missing"
        );
    }

    #[test]
    fn partition_missing_names_the_year() {
        assert!(ApiError::PartitionMissing(2031)
            .to_string()
            .contains("2031"));
    }
}
