//! `POST /results`: creates a result. Token-protected; writes to the primary.
//! 201 with `Location`, 409 if the key exists, 422 naming the year if the
//! year has no partition yet.

use bytes::Buf;
use futures_util::Stream;
use warp::filters::BoxedFilter;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{respond, result_reply};
use crate::db::DbError;
use crate::error::ApiError;
use crate::http::{allow, authorize, json_body, write_request};
use crate::model::NewResult;
use crate::state::AppState;

/// Route template (the `http_route` label).
pub const ROUTE: &str = super::COLLECTION_ROUTE;
/// Methods this route accepts.
pub const ALLOWED: &str = "POST";

/// POST /results with a JSON body `{"roll_number", "exam_year", "marks"}`
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path("results")
        .and(warp::path::end())
        .and(warp::method())
        .and(write_request())
        .and(warp::any().map(move || state.clone()))
        .then(
            |method, auth, content_type, length, body, state| async move {
                respond(create_result(method, auth, content_type, length, body, state).await)
            },
        )
        .boxed()
}

async fn create_result<S, B>(
    method: Method,
    authorization: Option<String>,
    content_type: Option<String>,
    content_length: Option<u64>,
    body: S,
    state: AppState,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    allow(&method, ALLOWED)?;
    authorize(authorization.as_deref(), &state.tokens)?;
    let new: NewResult = json_body(content_type.as_deref(), content_length, body).await?;
    let result = new.validate(state.years)?;
    let stored = state.db.insert(&result).await.map_err(|err| match err {
        DbError::NoPartition => ApiError::PartitionMissing(result.exam_year),
        DbError::UniqueViolation => ApiError::Conflict(format!(
            "a result for roll number {} in {} already exists",
            result.roll_number, result.exam_year
        )),
        other => other.into(),
    })?;
    let mut response = result_reply(&stored, StatusCode::CREATED);
    let location = format!("/results/{}/{}", stored.exam_year, stored.roll_number);
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}
