//! The operations, one module each, and the health probes.
//!
//! Each operation module exposes `FUNCTION`, its [`Function`]: name, access,
//! auth, method, route and `routes(state)`, the warp filter its binary
//! serves. `functions/<name>/src/main.rs` is `server::run(<module>::FUNCTION)`
//! and the integration tests use the same values. [`ALL`] is made from the
//! module list below, and a test (`tests/api/manifest.rs`) holds it equal to
//! `knative/exam-results/functions.yaml`, the one list of the functions.
//!
//! A route is composed of typed filters, in this order: the path
//! ([`Route::filter`], 404), the method ([`Function::allowed`], 405), the
//! token ([`authorized_writer`](crate::http::authorized_writer), 401), the
//! path values ([`result_key`], 400/404/422), the body
//! ([`json_body`](crate::http::json_body), 415/413/400/422), then the
//! handler, which takes only its domain inputs and returns domain errors as
//! replies, never as rejections, so they never fall through to another
//! branch (warp #77).

use std::convert::Infallible;
use std::sync::OnceLock;

use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::config::{Access, Auth};
use crate::db::{Keyed, Once, Recorded, Write, Written};
use crate::error::ApiError;
use crate::http;
use crate::model::{ExamResult, ResultKey, YearRange, MAX_MARKS};
use crate::route::Route;
use crate::state::AppState;

pub mod health;

/// Declares the operation modules and [`ALL`], their functions, from one list.
macro_rules! operations {
    ($($module:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// Every function, one per operation module.
        pub const ALL: &[Function] = &[$($module::FUNCTION),+];
    };
}

operations!(
    create_result,
    get_result,
    list_results,
    update_result,
    delete_result,
    create_results_batch,
    set_publication,
    get_publication,
    get_statistics,
    results_page
);

/// One result: `/results/{exam_year}/{roll_number}`.
pub const RESULT: Route = Route::new("/results/{exam_year}/{roll_number}");
/// The collection of results: `/results`.
pub const RESULTS: Route = Route::new("/results");
/// Batch loads of results: `/results/batches`.
pub const BATCHES: Route = Route::new("/results/batches");
/// A year's publication time: `/publications/{exam_year}`.
pub const PUBLICATION: Route = Route::new("/publications/{exam_year}");
/// A year's statistics: `/results/{exam_year}/statistics`.
pub const STATISTICS: Route = Route::new("/results/{exam_year}/statistics");

/// One function: its own binary and Knative Service. Its fields are the ones
/// of its entry in `knative/exam-results/functions.yaml`.
#[derive(Clone, Copy)]
pub struct Function {
    /// The binary and Knative Service name, e.g. `get-result`.
    pub name: &'static str,
    /// Which database serves it: a replica (read) or the primary (write).
    pub access: Access,
    /// Which bearer token it requires, if any.
    pub auth: Auth,
    /// Its one HTTP method (`HEAD` is also accepted where this is `GET`).
    pub method: &'static Method,
    /// Its route template.
    pub route: Route,
    /// Builds its warp filter.
    pub routes: fn(AppState) -> BoxedFilter<(Response,)>,
}

impl Function {
    /// The routes this function's binary answers: its own and the probes
    /// (what a request is labelled with).
    pub fn served_routes(&self) -> [Route; 3] {
        [self.route, health::HEALTHZ, health::READYZ]
    }

    /// 405 unless the request uses this function's method; `Allow` lists
    /// every method any function has on this route (see [`allow_header`]).
    pub fn allowed(&self) -> impl Filter<Extract = (), Error = Rejection> + Clone {
        http::allowed(self.method.clone(), allow_header(self.route))
    }
}

/// The `Allow` value of a route: the methods of every function in [`ALL`]
/// on it, in that order, with `HEAD` after `GET`; `GET, HEAD` for a route
/// no function has (the probes).
pub fn allow_header(route: Route) -> &'static str {
    static TABLE: OnceLock<Vec<(Route, String)>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table: Vec<(Route, String)> = Vec::new();
        for function in ALL {
            let methods = match table.iter_mut().find(|(r, _)| *r == function.route) {
                Some((_, methods)) => methods,
                None => {
                    table.push((function.route, String::new()));
                    &mut table.last_mut().expect("just pushed").1
                }
            };
            for method in std::iter::once(function.method.as_str())
                .chain((*function.method == Method::GET).then_some("HEAD"))
            {
                if !methods.split(", ").any(|m| m == method) {
                    if !methods.is_empty() {
                        methods.push_str(", ");
                    }
                    methods.push_str(method);
                }
            }
        }
        table
    });
    table
        .iter()
        .find(|(r, _)| *r == route)
        .map_or("GET, HEAD", |(_, methods)| methods.as_str())
}

/// The application state, for a handler.
pub fn with_state(
    state: AppState,
) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// The [`ResultKey`] in the path of [`RESULT`]: 400 if a value is not a
/// number, 404 if it is not written canonically (sign, leading zeros), 422
/// if out of range; 400 if the URL has a query string.
pub fn result_key(
    years: YearRange,
) -> impl Filter<Extract = (ResultKey,), Error = Rejection> + Clone {
    http::no_query()
        .and(warp::path::full())
        .and_then(move |path: warp::path::FullPath| {
            let key = match RESULT.params::<2>(path.as_str()) {
                Some([year, roll]) => {
                    ResultKey::from_path(year, roll, years).map_err(Rejection::from)
                }
                None => Err(warp::reject::not_found()),
            };
            async move { key }
        })
}

/// The exam year in the path of a one-parameter `route` such as
/// [`PUBLICATION`]: 400 if not a number, 404 if not canonical, 422 if out
/// of range; 400 if the URL has a query string.
pub fn year_param(
    route: Route,
    years: YearRange,
) -> impl Filter<Extract = (i32,), Error = Rejection> + Clone {
    http::no_query()
        .and(warp::path::full())
        .and_then(move |path: warp::path::FullPath| {
            let year = match route.params::<1>(path.as_str()) {
                Some([year]) => years.from_path(year).map_err(Rejection::from),
                None => Err(warp::reject::not_found()),
            };
            async move { year }
        })
}

/// Collapses a handler's outcome into a response.
pub fn respond(outcome: Result<Response, ApiError>) -> Response {
    outcome.unwrap_or_else(ApiError::into_response)
}

/// A result as JSON with its `ETag`.
pub fn result_reply(result: &ExamResult, status: StatusCode) -> Response {
    tagged_reply(result, &etag_bytes(result), status)
}

/// A result as JSON with `tag` (its [`etag_bytes`]) as `ETag`: the body
/// written once into a buffer of its final size.
pub fn tagged_reply(result: &ExamResult, tag: &[u8], status: StatusCode) -> Response {
    let mut body = Vec::with_capacity(RESULT_JSON_CAPACITY);
    if serde_json::to_writer(&mut body, result).is_err() {
        return ApiError::Internal("a result could not be written as JSON".into()).into_response();
    }
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = warp::http::HeaderValue::from_bytes(tag) {
        headers.insert(warp::http::header::ETAG, value);
    }
    response
}

/// The longest JSON of a result: three field names and the widest numbers.
const RESULT_JSON_CAPACITY: usize =
    r#"{"roll_number":-9223372036854775808,"exam_year":-2147483648,"marks":-2147483648}"#.len();

/// Performs a write and answers it: with `key` (an `Idempotency-Key`) once
/// per key and request (see [`Database::write_once`](crate::db::Database::write_once)),
/// a repeat replaying the first response with `Idempotent-Replayed: true`.
/// `request` describes the request canonically (method, path, validated
/// body, conditions): a key sent again with another request is a 422.
/// `reply` turns what the write did into the response, or a refusal.
pub async fn perform(
    state: &AppState,
    write: Write<'_>,
    key: Option<String>,
    request: impl FnOnce() -> String,
    reply: impl FnOnce(Written) -> Result<Recorded, ApiError>,
) -> Result<Response, ApiError> {
    let (recorded, replayed) = match key {
        None => (reply(state.db.write(write).await?)?, false),
        Some(key) => {
            let once = Once {
                key,
                request: digest(&request()),
                ttl: state.idempotency_ttl,
            };
            match state.db.write_once(write, &once, reply).await?? {
                Keyed::Fresh(recorded) => (recorded, false),
                Keyed::Replayed(recorded) => (recorded, true),
            }
        }
    };
    let mut response = replay(recorded);
    if replayed {
        response.headers_mut().insert(
            http::IDEMPOTENT_REPLAYED,
            warp::http::HeaderValue::from_static("true"),
        );
    }
    Ok(committed(response, state).await)
}

/// SHA-256 of a canonical request description, in hex.
pub fn digest(request: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(request.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A result as JSON with its `ETag`, as recorded for an idempotency key.
pub fn recorded_result(result: &ExamResult, status: StatusCode) -> Recorded {
    Recorded {
        status: status.as_u16(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("etag".into(), etag(result)),
        ],
        body: serde_json::to_vec(result).unwrap_or_default(),
    }
}

/// The response a recorded one stands for.
pub fn replay(recorded: Recorded) -> Response {
    let mut response = Response::new(recorded.body.into());
    *response.status_mut() = StatusCode::from_u16(recorded.status).unwrap_or(StatusCode::OK);
    for (name, value) in recorded.headers {
        if let (Ok(name), Ok(value)) = (
            warp::http::HeaderName::from_bytes(name.as_bytes()),
            warp::http::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A write's reply, with the consistency token of its commit (a position at
/// or after it, read from the primary once the write has committed). If the
/// position cannot be read the write still stands: the reply goes without a
/// token, and the cause is logged.
pub async fn committed(mut response: Response, state: &AppState) -> Response {
    match state.db.current_lsn().await {
        Ok(lsn) => http::set_consistency_token(&mut response, lsn),
        Err(err) => tracing::warn!(error = %err, "write committed; its WAL position is unknown"),
    }
    response
}

/// An `If-Match` condition (RFC 9110 §13.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current representation.
    Any,
    /// A list of entity tags, compared strongly (a weak tag never matches).
    Tags(Vec<Vec<u8>>),
}

/// The request's `If-Match` condition, every field line combined; `None`
/// when absent. A value that is not a list of entity tags matches nothing.
pub fn if_match() -> impl Filter<Extract = (Option<IfMatch>,), Error = Infallible> + Clone {
    warp::header::headers_cloned().map(|headers: warp::http::HeaderMap| {
        let mut tags = Vec::new();
        let mut any = false;
        let mut present = false;
        for value in headers.get_all(warp::http::header::IF_MATCH) {
            present = true;
            for tag in value
                .as_bytes()
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
            {
                match tag {
                    b"*" => any = true,
                    b"" => {}
                    tag => tags.push(tag.to_vec()),
                }
            }
        }
        match (present, any) {
            (false, _) => None,
            (true, true) => Some(IfMatch::Any),
            (true, false) => Some(IfMatch::Tags(tags)),
        }
    })
}

/// The marks a result with `key` may currently have for `condition` to
/// hold: `None` for no condition or `*` (any existing result), otherwise
/// the marks whose entity tag is listed (possibly none). The tag is a
/// function of the content, and the key is fixed, so this set is exact.
pub fn expected_marks(key: ResultKey, condition: Option<&IfMatch>) -> Option<Vec<i32>> {
    let Some(IfMatch::Tags(tags)) = condition else {
        return None;
    };
    Some(
        (0..=MAX_MARKS)
            .filter(|marks| {
                let tag = etag(&ExamResult {
                    roll_number: key.roll_number,
                    exam_year: key.exam_year,
                    marks: *marks,
                });
                tags.iter().any(|listed| listed == tag.as_bytes())
            })
            .collect(),
    )
}

/// A strong entity tag over the result's content (FNV-1a, stable across builds and pods).
pub fn etag(result: &ExamResult) -> String {
    String::from_utf8_lossy(&etag_bytes(result)).into_owned()
}

/// The length of an entity tag: 16 hex digits in double quotes.
pub const ETAG_LEN: usize = 18;

/// [`etag`] without an allocation: FNV-1a over `exam_year:roll_number:marks`
/// in decimal, as 16 lower-case hex digits in double quotes.
pub fn etag_bytes(result: &ExamResult) -> [u8; ETAG_LEN] {
    fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    hash = fnv1a(
        hash,
        itoa::Buffer::new().format(result.exam_year).as_bytes(),
    );
    hash = fnv1a(hash, b":");
    hash = fnv1a(
        hash,
        itoa::Buffer::new().format(result.roll_number).as_bytes(),
    );
    hash = fnv1a(hash, b":");
    hash = fnv1a(hash, itoa::Buffer::new().format(result.marks).as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut tag = [b'"'; ETAG_LEN];
    for (i, digit) in tag[1..ETAG_LEN - 1].iter_mut().enumerate() {
        *digit = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_every_method_a_route_has_across_the_functions() {
        for function in ALL {
            let allow = allow_header(function.route);
            assert!(
                allow.split(", ").any(|m| m == function.method.as_str()),
                "{allow}"
            );
        }
        assert_eq!(allow_header(health::HEALTHZ), "GET, HEAD");
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

    #[test]
    fn the_etag_is_fnv1a_of_the_fields_in_decimal() {
        let result = ExamResult {
            roll_number: 100_116_224,
            exam_year: 2024,
            marks: -7,
        };
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in "2024:100116224:-7".bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(etag(&result), format!("\"{hash:016x}\""));
    }

    #[test]
    fn a_result_reply_is_its_json_and_its_tag() {
        let result = ExamResult {
            roll_number: -9_223_372_036_854_775_808,
            exam_year: i32::MIN,
            marks: i32::MIN,
        };
        let json = serde_json::to_vec(&result).unwrap();
        assert_eq!(json.len(), RESULT_JSON_CAPACITY);
        let response = result_reply(&result, StatusCode::CREATED);
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["etag"], etag(&result).as_str());
    }

    #[test]
    fn if_match_names_exactly_the_marks_whose_tag_it_lists() {
        let key = ResultKey {
            exam_year: 2024,
            roll_number: 7,
        };
        let tag = |marks| {
            etag(&ExamResult {
                roll_number: 7,
                exam_year: 2024,
                marks,
            })
            .into_bytes()
        };
        assert_eq!(expected_marks(key, None), None);
        assert_eq!(expected_marks(key, Some(&IfMatch::Any)), None);
        let listed = IfMatch::Tags(vec![tag(40), b"\"nope\"".to_vec(), tag(90)]);
        assert_eq!(expected_marks(key, Some(&listed)), Some(vec![40, 90]));
        let weak = [b"W/".as_slice(), &tag(40)].concat();
        assert_eq!(
            expected_marks(key, Some(&IfMatch::Tags(vec![weak]))),
            Some(vec![])
        );
    }
}
