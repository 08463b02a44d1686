//! `POST /results`: creates a result. Write token; writes to the primary.
//! 201 with `Location`, 409 if the key exists, 422 naming the year if the
//! year has no partition yet.

use warp::filters::BoxedFilter;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{respond, result_reply, with_state, Function, RESULTS};
use crate::config::{Access, Auth};
use crate::error::ApiError;
use crate::http::{authorized_writer, json_body};
use crate::model::NewResult;
use crate::state::AppState;

/// The create-result function.
pub const FUNCTION: Function = Function {
    name: "create-result",
    access: Access::Write,
    auth: Auth::WriteToken,
    method: &Method::POST,
    route: RESULTS,
    routes,
};

/// POST /results with a JSON body `{"roll_number", "exam_year", "marks"}`
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    FUNCTION
        .route
        .filter()
        .and(FUNCTION.allowed())
        .and(authorized_writer(&state))
        .and(json_body::<NewResult>())
        .and(with_state(state))
        .then(create_result)
        .map(respond)
        .boxed()
}

async fn create_result(new: NewResult, state: AppState) -> Result<Response, ApiError> {
    let result = new.validate(state.years)?;
    let stored = state.db.insert(&result).await?;
    let mut response = result_reply(&stored, StatusCode::CREATED);
    if let Ok(value) = stored.key().location().parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}
