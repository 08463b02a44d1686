//! `DELETE /results/{exam_year}/{roll_number}`: removes a result.
//! Token-protected; writes to the primary. 204, or 404 when absent.

use warp::filters::BoxedFilter;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::respond;
use crate::error::ApiError;
use crate::http::{allow, authorize};
use crate::model::ResultKey;
use crate::state::AppState;

/// Route template (the `http_route` label).
pub const ROUTE: &str = super::ITEM_ROUTE;
/// Methods this route accepts.
pub const ALLOWED: &str = "DELETE";

/// DELETE /results/{exam_year}/{roll_number}
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("results" / String / String)
        .and(warp::method())
        .and(warp::header::optional::<String>(header::AUTHORIZATION.as_str()))
        .and(warp::any().map(move || state.clone()))
        .then(|year: String, roll: String, method: Method, auth: Option<String>, state: AppState| async move {
            respond(delete_result(year, roll, method, auth, state).await)
        })
        .boxed()
}

async fn delete_result(
    year: String,
    roll: String,
    method: Method,
    authorization: Option<String>,
    state: AppState,
) -> Result<Response, ApiError> {
    allow(&method, ALLOWED)?;
    authorize(authorization.as_deref(), &state.tokens)?;
    let key = ResultKey::from_path(&year, &roll, state.years)?;
    if state.db.delete(key).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "no result for roll number {} in {}",
            key.roll_number, key.exam_year
        )))
    }
}
