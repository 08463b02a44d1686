//! `GET /`: the public results page, and the answer to its form without
//! JavaScript (`GET /?exam_year=Y&roll_number=R`), rendered by the server.
//!
//! The page itself is the same for everyone of one language, so it is
//! cacheable for `PAGE_CACHE_SECONDS` (browsers and CDNs; `Vary:
//! Accept-Language`). Its script reads results from get-result's JSON
//! endpoint. A form answer reads the result itself, from a replica like
//! get-result (same pool code), and is never cached. See [`crate::web`].

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{with_state, Function};
use crate::config::{Access, Auth};
use crate::http::raw_header;
use crate::model::ResultKey;
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
    let web = &state.web;
    let (status, body) = match &form {
        Err(_) => (
            StatusCode::BAD_REQUEST,
            render(web, lang, "", "", Outcome::Message("invalid", &[])),
        ),
        Ok(Form {
            exam_year: None,
            roll_number: None,
            ..
        }) => {
            let mut response = html(StatusCode::OK, render(web, lang, "", "", Outcome::Empty), &state);
            let headers = response.headers_mut();
            if let Ok(value) = format!("public, max-age={}", web.cache_seconds).parse() {
                headers.insert(header::CACHE_CONTROL, value);
            }
            if form.as_ref().is_ok_and(|f| f.lang.is_none()) {
                headers.insert(header::VARY, HeaderValue::from_static("accept-language"));
            }
            return response;
        }
        Ok(form) => {
            let year = form.exam_year.as_deref().unwrap_or("").trim();
            let roll = form.roll_number.as_deref().unwrap_or("").trim();
            answer(&state, lang, year, roll).await
        }
    };
    let mut response = html(status, body, &state);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The form's answer: the result, or why there is none.
async fn answer(state: &AppState, lang: &str, year: &str, roll: &str) -> (StatusCode, String) {
    let web = &state.web;
    let key = match ResultKey::from_path(canonical(year), canonical(roll), state.years) {
        Ok(key) if year.len() == 4 => key,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                render(web, lang, year, roll, Outcome::Message("invalid", &[])),
            )
        }
    };
    let found = state.read(|db| async move { db.get(key).await }).await;
    let (year, roll) = (key.exam_year.to_string(), key.roll_number.to_string());
    match found {
        Ok(Some(result)) => (
            StatusCode::OK,
            render(web, lang, &year, &roll, Outcome::Found(&result)),
        ),
        Ok(None) => {
            let values = [("year", year.clone()), ("roll", roll.clone())];
            (
                StatusCode::NOT_FOUND,
                render(web, lang, &year, &roll, Outcome::Message("not_found", &values)),
            )
        }
        Err(err) => {
            let status = err.status();
            // Logged through the envelope like any other error.
            tracing::warn!(error = %err, "results page could not read a result");
            (
                status,
                render(web, lang, &year, &roll, Outcome::Message("gave_up", &[])),
            )
        }
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

fn html(status: StatusCode, body: String, state: &AppState) -> Response {
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
    use super::canonical;

    #[test]
    fn typed_leading_zeros_are_dropped() {
        assert_eq!(canonical("0042"), "42");
        assert_eq!(canonical("000"), "0");
        assert_eq!(canonical(""), "");
        assert_eq!(canonical("2024"), "2024");
    }
}
