//! `GET /results/{exam_year}/statistics`: number of results, mean, median,
//! pass rate and grade bands of a year. Public once the year is published
//! (staff with a token before); served from a replica as one indexed read
//! of the year's mark counts (see [`crate::statistics`]), cached in process
//! for published years.

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{with_state, year_param, Function, STATISTICS};
use crate::config::{Access, Auth};
use crate::error::ApiError;
use crate::publication::{serve_read, viewer, Audience, Viewer};
use crate::state::AppState;

/// The get-statistics function.
pub const FUNCTION: Function = Function {
    name: "get-statistics",
    access: Access::Read,
    auth: Auth::Public,
    method: &Method::GET,
    route: STATISTICS,
    routes,
};

/// GET /results/{exam_year}/statistics
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    FUNCTION
        .route
        .filter()
        .and(FUNCTION.allowed())
        .and(year_param(FUNCTION.route, state.years))
        .and(viewer(&state))
        .and(with_state(state))
        .then(get_statistics)
        .boxed()
}

async fn get_statistics(exam_year: i32, viewer: Viewer, state: AppState) -> Response {
    let state = &state;
    serve_read(state, viewer, exam_year, |audience| async move {
        let counts = counts(state, exam_year, audience).await?;
        Ok(warp::reply::json(&state.grading.statistics(exam_year, &counts)).into_response())
    })
    .await
}

async fn counts(
    state: &AppState,
    exam_year: i32,
    audience: Audience,
) -> Result<Arc<Vec<(i32, i64)>>, ApiError> {
    let query = || async {
        state
            .read(|db| async move { db.mark_counts(exam_year).await })
            .await
            .map(Arc::new)
    };
    match audience {
        Audience::Public => state.read_cache.mark_counts(exam_year, query).await,
        Audience::Private => query().await,
    }
}
