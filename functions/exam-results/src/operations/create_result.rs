//! `POST /results`: creates a result. Write token; writes to the primary.
//! 201 with `Location`, `ETag` and the write's consistency token, 409 if the key exists, 422 naming the year if the
//! year has no partition yet.

use warp::filters::BoxedFilter;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{perform, recorded_result, respond, with_state, Function, RESULTS};
use crate::config::{Access, Auth};
use crate::error::ApiError;
use crate::db::{Write, Written};
use crate::http::{authorized_writer, idempotency_key, json_body};
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
        .and(idempotency_key())
        .and(with_state(state))
        .then(create_result)
        .map(respond)
        .boxed()
}

async fn create_result(
    new: NewResult,
    idempotency_key: Option<String>,
    state: AppState,
) -> Result<Response, ApiError> {
    let result = new.validate(state.years)?;
    let request = || {
        format!(
            "POST {} {}",
            RESULTS.template(),
            serde_json::to_string(&result).unwrap_or_default()
        )
    };
    perform(&state, Write::Insert(&result), idempotency_key, request, |written| match written {
        Written::Stored(stored) => {
            let mut recorded = recorded_result(&stored, StatusCode::CREATED);
            recorded
                .headers
                .push((header::LOCATION.to_string(), stored.key().location()));
            Ok(recorded)
        }
        other => Err(ApiError::Internal(format!("an insert answered {other:?}"))),
    })
    .await
}
