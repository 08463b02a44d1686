//! `GET /publications/{exam_year}`: a year's publication time and whether
//! it is public now. Public; served from a replica through the same copy of
//! the publication times the read functions enforce.

use serde::Serialize;
use time::OffsetDateTime;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{respond, with_state, year_param, Function, PUBLICATION};
use crate::config::{Access, Auth};
use crate::error::ApiError;
use crate::publication::{rfc3339, seconds_until, Publication};
use crate::state::AppState;

/// The get-publication function.
pub const FUNCTION: Function = Function {
    name: "get-publication",
    access: Access::Read,
    auth: Auth::Public,
    method: &Method::GET,
    route: PUBLICATION,
    routes,
};

/// A year's publication, as both publication functions return it.
#[derive(Debug, Serialize)]
pub struct PublicationBody {
    /// The exam year.
    pub exam_year: i32,
    /// When it becomes (or became) public; `null` when no time is set
    /// (withdrawn, or never scheduled and public as written).
    pub publish_at: Option<String>,
    /// Whether the public can read it now.
    pub published: bool,
}

impl PublicationBody {
    /// The body for `publication` as of now.
    pub fn new(exam_year: i32, publication: Publication) -> Self {
        Self {
            exam_year,
            publish_at: publication.time().map(rfc3339),
            published: publication.is_public(OffsetDateTime::now_utc()),
        }
    }
}

/// GET /publications/{exam_year}
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    FUNCTION
        .route
        .filter()
        .and(FUNCTION.allowed())
        .and(year_param(FUNCTION.route, state.years))
        .and(with_state(state))
        .then(get_publication)
        .map(respond)
        .boxed()
}

async fn get_publication(exam_year: i32, state: AppState) -> Result<Response, ApiError> {
    let publication = state.publications.of(&state, exam_year).await?;
    let mut response =
        warp::reply::json(&PublicationBody::new(exam_year, publication)).into_response();
    // Cacheable for as long as this process keeps its copy, and never past
    // the publication instant (when `published` turns true).
    let mut max_age = state.publications.refresh().as_secs();
    if let Some(at) = publication.time() {
        let until = seconds_until(at, OffsetDateTime::now_utc());
        if until > 0 {
            max_age = max_age.min(until);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    Ok(response)
}
