//! `PUT /results/{exam_year}/{roll_number}` with `{"marks"}`: corrects a
//! result. Write token; writes to the primary. 404 when absent; 412 with the
//! current `ETag` when `If-Match` names none of its tags. The reply carries
//! the new `ETag` and the write's consistency token.

use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{
    etag, expected_marks, if_match, perform, recorded_result, respond, result_key, with_state,
    Function, IfMatch, RESULT,
};
use crate::config::{Access, Auth};
use crate::db::{Write, Written};
use crate::error::ApiError;
use crate::http::{authorized_writer, idempotency_key, json_body};
use crate::model::{MarksUpdate, ResultKey};
use crate::state::AppState;

/// The update-result function.
pub const FUNCTION: Function = Function {
    name: "update-result",
    access: Access::Write,
    auth: Auth::WriteToken,
    method: &Method::PUT,
    route: RESULT,
    routes,
};

/// PUT /results/{exam_year}/{roll_number} with a JSON body `{"marks"}`
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    FUNCTION
        .route
        .filter()
        .and(FUNCTION.allowed())
        .and(authorized_writer(&state))
        .and(result_key(state.years))
        .and(json_body::<MarksUpdate>())
        .and(if_match())
        .and(idempotency_key())
        .and(with_state(state))
        .then(update_result)
        .map(respond)
        .boxed()
}

async fn update_result(
    key: ResultKey,
    update: MarksUpdate,
    condition: Option<IfMatch>,
    idempotency_key: Option<String>,
    state: AppState,
) -> Result<Response, ApiError> {
    let marks = update.validate()?;
    let expected = expected_marks(key, condition.as_ref());
    let write = Write::Update {
        key,
        marks,
        expected: expected.as_deref(),
    };
    let request = || format!("PUT {} {marks} {condition:?}", key.location());
    perform(&state, write, idempotency_key, request, |written| match written {
        Written::Stored(updated) => Ok(recorded_result(&updated, StatusCode::OK)),
        Written::Mismatch(current) => Err(ApiError::PreconditionFailed(etag(&current))),
        Written::Absent | Written::Deleted => Err(ApiError::NoResult(key)),
    })
    .await
}
