//! `DELETE /results/{exam_year}/{roll_number}`: removes a result.
//! Write token; writes to the primary. 204 with the write's consistency
//! token, 404 when absent, 412 with the current `ETag` when `If-Match`
//! names none of its tags.

use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{
    etag, expected_marks, if_match, perform, respond, result_key, with_state, Function, IfMatch,
    RESULT,
};
use crate::config::{Access, Auth};
use crate::db::{Recorded, Write, Written};
use crate::error::ApiError;
use crate::http::{authorized_writer, idempotency_key};
use crate::model::ResultKey;
use crate::state::AppState;

/// The delete-result function.
pub const FUNCTION: Function = Function {
    name: "delete-result",
    access: Access::Write,
    auth: Auth::WriteToken,
    method: &Method::DELETE,
    route: RESULT,
    routes,
};

/// DELETE /results/{exam_year}/{roll_number}
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    FUNCTION
        .route
        .filter()
        .and(FUNCTION.allowed())
        .and(authorized_writer(&state))
        .and(result_key(state.years))
        .and(if_match())
        .and(idempotency_key())
        .and(with_state(state))
        .then(delete_result)
        .map(respond)
        .boxed()
}

async fn delete_result(
    key: ResultKey,
    condition: Option<IfMatch>,
    idempotency_key: Option<String>,
    state: AppState,
) -> Result<Response, ApiError> {
    let expected = expected_marks(key, condition.as_ref());
    let write = Write::Delete {
        key,
        expected: expected.as_deref(),
    };
    let request = || format!("DELETE {} {condition:?}", key.location());
    perform(&state, write, idempotency_key, request, |written| match written {
        Written::Deleted => Ok(Recorded {
            status: StatusCode::NO_CONTENT.as_u16(),
            headers: vec![],
            body: vec![],
        }),
        Written::Mismatch(current) => Err(ApiError::PreconditionFailed(etag(&current))),
        Written::Absent | Written::Stored(_) => Err(ApiError::NoResult(key)),
    })
    .await
}
