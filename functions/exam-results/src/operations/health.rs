//! `GET /healthz` (the process is alive) and `GET /readyz` (the database
//! answers through the pool within the pool and statement timeouts; for a
//! read function with a fallback, either the replica or the primary).

use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{allow_header, with_state};
use crate::error::ApiError;
use crate::http::allowed;
use crate::route::Route;
use crate::state::AppState;

/// Liveness.
pub const HEALTHZ: Route = Route::new("/healthz");
/// Readiness.
pub const READYZ: Route = Route::new("/readyz");

/// Both probe routes.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let healthz = HEALTHZ
        .filter()
        .and(allowed(Method::GET, allow_header(HEALTHZ)))
        .map(|| status_reply("ok"));
    let readyz = READYZ
        .filter()
        .and(allowed(Method::GET, allow_header(READYZ)))
        .and(with_state(state))
        .then(readyz);
    healthz.or(readyz).unify().boxed()
}

async fn readyz(state: AppState) -> Response {
    // A read function with a fallback can serve while its replica is down,
    // so it stays ready as long as either database answers.
    let outcome = match (state.db.ping().await, &state.fallback) {
        (Err(_), Some(fallback)) => fallback.ping().await,
        (outcome, _) => outcome,
    };
    match outcome {
        Ok(()) => status_reply("ready"),
        Err(err) => ApiError::from(err).into_response(),
    }
}

fn status_reply(status: &str) -> Response {
    warp::reply::json(&serde_json::json!({ "status": status })).into_response()
}
