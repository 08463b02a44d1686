//! `PUT /publications/{exam_year}` with `{"publish_at": RFC 3339 | null}`:
//! sets, moves or (with `null`) withdraws a year's publication time. Write
//! token; writes to the primary; every change is appended to
//! `publication_audit` with the token's fingerprint.

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::get_publication::PublicationBody;
use super::{respond, with_state, year_param, Function, PUBLICATION};
use crate::config::{Access, Auth};
use crate::error::ApiError;
use crate::http::{authorized_writer, json_body, raw_header};
use crate::publication::{bearer_token, fingerprint, Publication};
use crate::read_cache::PRIVATE;
use crate::state::AppState;

/// The set-publication function.
pub const FUNCTION: Function = Function {
    name: "set-publication",
    access: Access::Write,
    auth: Auth::WriteToken,
    method: &Method::PUT,
    route: PUBLICATION,
    routes,
};

/// The request body. `publish_at` is required; `null` withdraws.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicationUpdate {
    /// An RFC 3339 instant, or `null`.
    #[serde(deserialize_with = "Option::deserialize")]
    pub publish_at: Option<String>,
}

/// PUT /publications/{exam_year} with a JSON body `{"publish_at"}`
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    FUNCTION
        .route
        .filter()
        .and(FUNCTION.allowed())
        .and(authorized_writer(&state))
        .and(raw_header(header::AUTHORIZATION.as_str()))
        .and(year_param(FUNCTION.route, state.years))
        .and(json_body::<PublicationUpdate>())
        .and(with_state(state))
        .then(set_publication)
        .map(respond)
        .boxed()
}

async fn set_publication(
    authorization: Option<HeaderValue>,
    exam_year: i32,
    update: PublicationUpdate,
    state: AppState,
) -> Result<Response, ApiError> {
    let publish_at = update
        .publish_at
        .as_deref()
        .map(|text| {
            // In UTC here: an instant whose UTC date falls outside the years
            // the database driver can encode (9999-12-31T23:59:59-23:59) is
            // the client's mistake, not a panic while writing it.
            OffsetDateTime::parse(text, &Rfc3339)
                .ok()
                .and_then(|at| at.checked_to_offset(UtcOffset::UTC))
                .ok_or_else(|| {
                    ApiError::Validation(format!(
                        "publish_at must be an RFC 3339 date-time such as 2027-08-13T08:00:00Z, or null; got `{}`",
                        text.chars().take(64).collect::<String>()
                    ))
                })
        })
        .transpose()?;
    // Checked by authorized_writer: one Authorization value carrying a valid token.
    let changed_by = fingerprint(bearer_token(
        authorization.as_ref().map_or(&[][..], HeaderValue::as_bytes),
    ));
    let stored = state
        .db
        .set_publication(exam_year, publish_at, &changed_by)
        .await?;
    let publication = stored.map_or(Publication::Withdrawn, Publication::At);
    let mut response =
        warp::reply::json(&PublicationBody::new(exam_year, publication)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, PRIVATE);
    Ok(response)
}
