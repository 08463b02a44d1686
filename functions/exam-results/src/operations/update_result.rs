//! `PUT /results/{exam_year}/{roll_number}` with `{"marks"}`: corrects a
//! result. Token-protected; writes to the primary. 404 when absent.

use bytes::Buf;
use futures_util::Stream;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{respond, result_reply};
use crate::error::ApiError;
use crate::http::{allow, authorize, json_body, write_request};
use crate::model::{MarksUpdate, ResultKey};
use crate::state::AppState;

/// Route template (the `http_route` label).
pub const ROUTE: &str = super::ITEM_ROUTE;
/// Methods this route accepts.
pub const ALLOWED: &str = "PUT";

/// PUT /results/{exam_year}/{roll_number} with a JSON body `{"marks"}`
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("results" / String / String)
        .and(warp::method())
        .and(write_request())
        .and(warp::any().map(move || state.clone()))
        .then(
            |year, roll, method, auth, content_type, length, body, state| async move {
                respond(
                    update_result(year, roll, method, auth, content_type, length, body, state)
                        .await,
                )
            },
        )
        .boxed()
}

#[allow(clippy::too_many_arguments)]
async fn update_result<S, B>(
    year: String,
    roll: String,
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
    let key = ResultKey::from_path(&year, &roll, state.years)?;
    let update: MarksUpdate = json_body(content_type.as_deref(), content_length, body).await?;
    let marks = update.validate()?;
    let updated = state.db.update(key, marks).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no result for roll number {} in {}",
            key.roll_number, key.exam_year
        ))
    })?;
    Ok(result_reply(&updated, StatusCode::OK))
}
