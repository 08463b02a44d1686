//! `DELETE /results/{exam_year}/{roll_number}`: removes a result.
//! Write token; writes to the primary. 204, or 404 when absent.

use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{respond, result_key, with_state, Function, RESULT};
use crate::config::{Access, Auth};
use crate::error::ApiError;
use crate::http::authorized_writer;
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
        .and(with_state(state))
        .then(delete_result)
        .map(respond)
        .boxed()
}

async fn delete_result(key: ResultKey, state: AppState) -> Result<Response, ApiError> {
    if state.db.delete(key).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NoResult(key))
    }
}
