//! `GET /results?exam_year=Y&after=R&limit=N`: keyset pagination by roll
//! number within one exam year. Public; served from a replica.

use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use super::respond;
use crate::error::ApiError;
use crate::http::allow;
use crate::model::{ListQuery, Page};
use crate::state::AppState;

/// Route template (the `http_route` label).
pub const ROUTE: &str = super::COLLECTION_ROUTE;
/// Methods this route accepts.
pub const ALLOWED: &str = "GET";

/// GET /results?exam_year=Y&after=R&limit=N
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path("results")
        .and(warp::path::end())
        .and(warp::method())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::any().map(move || state.clone()))
        .then(
            |method: Method, query: String, state: AppState| async move {
                respond(list_results(method, query, state).await)
            },
        )
        .boxed()
}

async fn list_results(
    method: Method,
    raw_query: String,
    state: AppState,
) -> Result<Response, ApiError> {
    allow(&method, ALLOWED)?;
    let query = ListQuery::parse(&raw_query, state.years)?;
    let (items, more) = state.read(|db| async move { db.list(query).await }).await?;
    let next_after = if more {
        items.last().map(|r| r.roll_number)
    } else {
        None
    };
    Ok(warp::reply::Reply::into_response(warp::reply::json(
        &Page { items, next_after },
    )))
}
