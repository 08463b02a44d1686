//! `GET /results?exam_year=Y&after=R&limit=N`: keyset pagination by roll
//! number within one exam year. Read token (bulk listing is for staff and
//! institutions, not the public); served from a replica.

use warp::filters::BoxedFilter;
use warp::http::{header, Method};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::{respond, with_state, Function, RESULTS};
use crate::config::{Access, Auth};
use crate::error::ApiError;
use crate::db::Lsn;
use crate::http::{authorized_reader, consistency_token};
use crate::model::{ListQuery, Page, YearRange};
use crate::state::AppState;

/// The list-results function.
pub const FUNCTION: Function = Function {
    name: "list-results",
    access: Access::Read,
    auth: Auth::ReadToken,
    method: &Method::GET,
    route: RESULTS,
    routes,
};

/// GET /results?exam_year=Y&after=R&limit=N
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    FUNCTION
        .route
        .filter()
        .and(FUNCTION.allowed())
        .and(authorized_reader(&state))
        .and(list_query(state.years))
        .and(consistency_token())
        .and(with_state(state))
        .then(list_results)
        .map(respond)
        .boxed()
}

/// The validated query string: 400 if malformed, unknown or repeated, 422 if out of range.
fn list_query(years: YearRange) -> impl Filter<Extract = (ListQuery,), Error = Rejection> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(move |raw: String| {
            let query = ListQuery::parse(&raw, years).map_err(Rejection::from);
            async move { query }
        })
}

async fn list_results(
    query: ListQuery,
    at: Option<Lsn>,
    state: AppState,
) -> Result<Response, ApiError> {
    let (items, more) = state
        .read(|db| async move { db.list(query, at).await })
        .await?;
    let next_after = if more {
        items.last().map(|r| r.roll_number)
    } else {
        None
    };
    // Only staff list, so a listing is never stored by a shared cache.
    let mut response = warp::reply::json(&Page { items, next_after }).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, crate::read_cache::PRIVATE);
    Ok(response)
}
