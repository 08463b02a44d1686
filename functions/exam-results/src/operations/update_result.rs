//! `PUT /results/{exam_year}/{roll_number}` with `{"marks"}`: corrects a
//! result. Write token; writes to the primary. 404 when absent.

use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{respond, result_key, result_reply, with_state, Function, RESULT};
use crate::config::{Access, Auth};
use crate::error::ApiError;
use crate::http::{authorized_writer, json_body};
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
        .and(with_state(state))
        .then(update_result)
        .map(respond)
        .boxed()
}

async fn update_result(
    key: ResultKey,
    update: MarksUpdate,
    state: AppState,
) -> Result<Response, ApiError> {
    let marks = update.validate()?;
    let updated = state
        .db
        .update(key, marks)
        .await?
        .ok_or(ApiError::NoResult(key))?;
    Ok(result_reply(&updated, StatusCode::OK))
}
