//! `GET /healthz` (the process is alive) and `GET /readyz` (the database
//! answers through the pool within the pool and statement timeouts; for a
//! read function with a fallback, either the replica or the primary).

use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::respond;
use crate::http::allow;
use crate::state::AppState;

/// Both probe routes.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let healthz = warp::path!("healthz")
        .and(warp::method())
        .map(|method: Method| {
            respond(allow(&method, "GET").map(|()| status_reply("ok", StatusCode::OK)))
        });
    let readyz = warp::path!("readyz")
        .and(warp::method())
        .and(warp::any().map(move || state.clone()))
        .then(readyz);
    healthz.or(readyz).unify().boxed()
}

async fn readyz(method: Method, state: AppState) -> Response {
    if let Err(err) = allow(&method, "GET") {
        return err.into_response();
    }
    // A read function with a fallback can serve while its replica is down,
    // so it stays ready as long as either database answers.
    let outcome = match (state.db.ping().await, &state.fallback) {
        (Err(_), Some(fallback)) => fallback.ping().await,
        (outcome, _) => outcome,
    };
    match outcome {
        Ok(()) => status_reply("ready", StatusCode::OK),
        Err(err) => crate::error::ApiError::from(err).into_response(),
    }
}

fn status_reply(status: &str, code: StatusCode) -> Response {
    warp::reply::with_status(
        warp::reply::json(&serde_json::json!({ "status": status })),
        code,
    )
    .into_response()
}
