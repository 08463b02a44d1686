//! `GET /`: the public results page, and the answer to its form without
//! JavaScript (`GET /?exam_year=Y&roll_number=R`), rendered by the server.
//!
//! The page itself is the same for everyone of one language, so it is
//! cacheable for `PAGE_CACHE_SECONDS` (browsers and CDNs; `Vary:
//! Accept-Language`). Its script reads results from get-result's JSON
//! endpoint. A form answer reads the result itself, from a replica like
//! get-result, behind the same publication gate
//! ([`crate::publication::admit`]) and in-process cache, with the same
//! `Cache-Control`. See [`crate::web`].

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{with_state, Function};
use crate::config::{Access, Auth};
use crate::error::ApiError;
use crate::http::raw_header;
use crate::model::ResultKey;
use crate::publication::{admit, Viewer};
use crate::route::Route;
use crate::state::AppState;
use crate::web::{choose_lang, content_security_policy, render, Outcome};

/// The page: `/`.
pub const PAGE: Route = Route::new("/");

/// The results-page function.
pub const FUNCTION: Function = Function {
    name: "results-page",
    access: Access::Read,
    auth: Auth::Public,
    method: &Method::GET,
    route: PAGE,
    routes,
};

/// GET / with an optional form query
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    FUNCTION
        .route
        .filter()
        .and(FUNCTION.allowed())
        .and(
            warp::query::raw()
                .map(Some)
                .or(warp::any().map(|| None))
                .unify(),
        )
        .and(raw_header(header::ACCEPT_LANGUAGE.as_str()))
        .and(with_state(state))
        .then(page)
        .boxed()
}

/// The form's fields; anything else is refused.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Form {
    exam_year: Option<String>,
    roll_number: Option<String>,
    lang: Option<String>,
}

async fn page(
    query: Option<String>,
    accept_language: Option<HeaderValue>,
    state: AppState,
) -> Response {
    let form = serde_urlencoded::from_str::<Form>(query.as_deref().unwrap_or(""));
    let lang = choose_lang(
        form.as_ref().ok().and_then(|f| f.lang.as_deref()),
        accept_language.as_ref().map(HeaderValue::as_bytes),
    );
    let mut response = match &form {
        Err(_) => {
            let body = render(&state.web, &state.grading, lang, "", "", Outcome::Message("invalid", &[]));
            let mut response = page_reply(StatusCode::BAD_REQUEST, body, &state);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Ok(Form {
            exam_year: None,
            roll_number: None,
            ..
        }) => {
            let body = render(&state.web, &state.grading, lang, "", "", Outcome::Empty);
            let mut response = page_reply(StatusCode::OK, body, &state);
            if let Ok(value) = format!("public, max-age={}", state.web.cache_seconds).parse() {
                response.headers_mut().insert(header::CACHE_CONTROL, value);
            }
            response
        }
        Ok(form) => {
            let year = form.exam_year.as_deref().unwrap_or("").trim();
            let roll = form.roll_number.as_deref().unwrap_or("").trim();
            answer(&state, lang, year, roll).await
        }
    };
    if form.as_ref().is_ok_and(|f| f.lang.is_none()) {
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept-language"));
    }
    response
}

/// The form's answer, through the same publication gate as get-result: a
/// year the public may not read yet shows when it will be published and
/// nothing about which roll numbers exist; a published year shows the
/// result or that there is none. Cached like get-result's replies.
async fn answer(state: &AppState, lang: &str, year: &str, roll: &str) -> Response {
    let key = match ResultKey::from_path(canonical(year), canonical(roll), state.years) {
        Ok(key) if year.len() == 4 => key,
        _ => {
            let invalid = Outcome::Message("invalid", &[]);
            let body = render(&state.web, &state.grading, lang, year, roll, invalid);
            let mut response = page_reply(StatusCode::BAD_REQUEST, body, state);
            state.http_caching.apply(&mut response, None);
            return response;
        }
    };
    let found = match admit(state, Viewer::Public, key.exam_year).await {
        Ok(audience) => state
            .read_cache
            .result((key.exam_year, key.roll_number), || {
                state.read(|db| async move { db.get(key, None).await })
            })
            .await
            .map(|found| (audience, found)),
        Err(refusal) => Err(refusal),
    };
    let (year, roll) = (key.exam_year.to_string(), key.roll_number.to_string());
    let render_with = |status, outcome| {
        let body = render(&state.web, &state.grading, lang, &year, &roll, outcome);
        page_reply(status, body, state)
    };
    let (audience, mut response) = match found {
        Ok((audience, Some(result))) => (
            Some(audience),
            render_with(StatusCode::OK, Outcome::Found(&result)),
        ),
        Ok((audience, None)) => {
            let values = [("year", year.clone()), ("roll", roll.clone())];
            (
                Some(audience),
                render_with(
                    StatusCode::NOT_FOUND,
                    Outcome::Message("not_found", &values),
                ),
            )
        }
        Err(ref refusal @ ApiError::NotPublished { ref publish_at, .. }) => {
            let mut response = match publish_at {
                Some(at) => {
                    let values = [("year", year.clone()), ("time", readable_time(at))];
                    render_with(
                        StatusCode::NOT_FOUND,
                        Outcome::Message("not_published", &values),
                    )
                }
                None => {
                    let values = [("year", year.clone())];
                    render_with(
                        StatusCode::NOT_FOUND,
                        Outcome::Message("not_published_later", &values),
                    )
                }
            };
            // get-result's Retry-After and Cache-Control for the same refusal.
            let json = refusal.clone().into_response();
            for name in [header::RETRY_AFTER, header::CACHE_CONTROL] {
                if let Some(value) = json.headers().get(&name) {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            (None, response)
        }
        Err(err) => {
            tracing::warn!(error = %err, "results page could not read a result");
            (None, render_with(err.status(), Outcome::Message("gave_up", &[])))
        }
    };
    state.http_caching.apply(&mut response, audience);
    response
}

/// `2027-08-13T08:00:00Z` as `2027-08-13 08:00 UTC` (what [`crate::publication::rfc3339`] writes).
fn readable_time(rfc3339: &str) -> String {
    match rfc3339.get(..16) {
        Some(minute) if rfc3339.ends_with('Z') => format!("{} UTC", minute.replacen('T', " ", 1)),
        _ => rfc3339.to_owned(),
    }
}

/// What a person types, in the API's form: leading zeros dropped.
fn canonical(value: &str) -> &str {
    let trimmed = value.trim_start_matches('0');
    if trimmed.is_empty() && !value.is_empty() {
        "0"
    } else {
        trimmed
    }
}

/// The page with its security headers.
fn page_reply(status: StatusCode, body: String, state: &AppState) -> Response {
    let mut response = warp::reply::with_status(warp::reply::html(body), status).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = content_security_policy(&state.web).parse() {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::{canonical, readable_time};

    #[test]
    fn a_publication_time_reads_to_the_minute_in_utc() {
        assert_eq!(readable_time("2027-08-13T08:00:00Z"), "2027-08-13 08:00 UTC");
        assert_eq!(readable_time("2027-08-13T08:00:00.5Z"), "2027-08-13 08:00 UTC");
        assert_eq!(readable_time("soon"), "soon");
    }

    #[test]
    fn typed_leading_zeros_are_dropped() {
        assert_eq!(canonical("0042"), "42");
        assert_eq!(canonical("000"), "0");
        assert_eq!(canonical(""), "");
        assert_eq!(canonical("2024"), "2024");
    }
}
