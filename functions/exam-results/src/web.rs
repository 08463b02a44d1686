//! What browsers get: the results page (served by results-page) and the one
//! CORS header public functions add so that page may read get-result.
//!
//! CORS: a function whose manifest entry says `auth: public` adds
//! `Access-Control-Allow-Origin: <CORS_ALLOW_ORIGIN>` (and exposes
//! `Retry-After`) to its replies, errors and 429s included, but never to a
//! reply to a request that carries `Authorization` (a staff read of a
//! public function is not for other origins' scripts). Write and read-token
//! functions never add it.
//!
//! The page is one HTML document with its CSS and JavaScript inline (one
//! request, no third-party requests, system fonts). Its text lives only in
//! `web/text.json`, one table per language, embedded at build time; the
//! server renders the page from `web/page.html` in the visitor's language
//! (`?lang=`, else `Accept-Language`, else [`DEFAULT_LANG`]) and the page's
//! script gets the same table. The no-JavaScript form is answered with the
//! same document, result included.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use warp::http::{header, HeaderMap, HeaderValue};
use warp::reply::Response;
use warp::Filter;

use crate::config::{Auth, Config, ConfigError};
use crate::http::raw_header;
use crate::model::ExamResult;
use crate::statistics::Grading;

/// The language of the page when the visitor names none the table has.
pub const DEFAULT_LANG: &str = "en";

const TEXT: &str = include_str!("web/text.json");
const TEMPLATE: &str = include_str!("web/page.html");
const CSS: &str = include_str!("web/page.css");
const JS: &str = include_str!("web/page.js");

/// One language's text: key to string (`{name}` placeholders).
type Table = BTreeMap<String, String>;

/// Every language's table, parsed once.
pub fn texts() -> &'static BTreeMap<String, Table> {
    static TEXTS: OnceLock<BTreeMap<String, Table>> = OnceLock::new();
    TEXTS.get_or_init(|| serde_json::from_str(TEXT).expect("web/text.json is valid (unit test)"))
}

/// The browser-facing settings of a function, from [`Config`].
#[derive(Clone, Debug, Default)]
pub struct Web {
    /// `Access-Control-Allow-Origin` for public functions' replies.
    pub cors_allow_origin: Option<HeaderValue>,
    /// get-result's base URL for the page's script (empty: same origin).
    pub api_url: String,
    /// `Cache-Control: max-age` of the page.
    pub cache_seconds: u64,
}

impl Web {
    /// From validated configuration.
    pub fn from_config(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            cors_allow_origin: config
                .cors_allow_origin
                .as_deref()
                .and_then(|origin| HeaderValue::from_str(origin.trim()).ok()),
            api_url: config
                .results_api_url
                .as_deref()
                .unwrap_or("")
                .trim()
                .to_owned(),
            cache_seconds: config.page_cache_seconds,
        })
    }
}

/// The origin a request's reply may name in `Access-Control-Allow-Origin`:
/// `CORS_ALLOW_ORIGIN` for a public function's request without
/// `Authorization`, else none (see the module's documentation).
pub fn cors_origin(
    auth: Auth,
    web: &Web,
) -> impl Filter<Extract = (Option<HeaderValue>,), Error = Infallible> + Clone {
    let origin = public_origin(auth, web);
    raw_header(header::AUTHORIZATION.as_str()).map(move |authorization: Option<HeaderValue>| {
        origin.clone().filter(|_| authorization.is_none())
    })
}

/// [`cors_origin`]'s answer for a request's `headers`, where no filter runs.
pub fn cors_origin_of(auth: Auth, web: &Web, headers: &HeaderMap) -> Option<HeaderValue> {
    public_origin(auth, web).filter(|_| !headers.contains_key(header::AUTHORIZATION))
}

fn public_origin(auth: Auth, web: &Web) -> Option<HeaderValue> {
    match auth {
        Auth::Public => web.cors_allow_origin.clone(),
        Auth::ReadToken | Auth::WriteToken => None,
    }
}

/// Adds `origin` (from [`cors_origin`]) to `response`, exposing `Retry-After`.
pub fn with_cors(origin: Option<HeaderValue>, mut response: Response) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after"),
        );
    }
    response
}

/// Checks the browser-facing variables (called from [`Config`]'s validation).
pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    if let Some(origin) = config.cors_allow_origin.as_deref().map(str::trim) {
        if !is_origin(origin) {
            return Err(ConfigError::new(
                "CORS_ALLOW_ORIGIN",
                "must be one origin such as https://results.example.org (scheme and host, no path)",
            ));
        }
    }
    if let Some(url) = config.results_api_url.as_deref().map(str::trim) {
        if !url.is_empty() && !is_origin(url) {
            return Err(ConfigError::new(
                "RESULTS_API_URL",
                "must be get-result's base URL such as https://get-result.example.org (no path)",
            ));
        }
    }
    Ok(())
}

/// `http(s)://host[:port]`, nothing after it.
fn is_origin(value: &str) -> bool {
    let Some(rest) = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// The visitor's language: `?lang=` if the table has it, else the first
/// `Accept-Language` range it has (by weight), else [`DEFAULT_LANG`].
pub fn choose_lang(query_lang: Option<&str>, accept_language: Option<&[u8]>) -> &'static str {
    let known = |tag: &str| {
        let primary = tag.split(['-', '_']).next().unwrap_or("").trim();
        texts()
            .keys()
            .find(|lang| lang.eq_ignore_ascii_case(primary))
            .map(String::as_str)
    };
    if let Some(lang) = query_lang.and_then(known) {
        return lang;
    }
    let header = accept_language
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("");
    let mut ranges: Vec<(u16, usize, &str)> = header
        .split(',')
        .enumerate()
        .filter_map(|(order, range)| {
            let mut parts = range.split(';');
            let tag = parts.next()?.trim();
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1000), |q| {
                    q.trim().parse::<f32>().ok().map(|q| (q * 1000.0) as u16)
                })?;
            (weight > 0).then_some((weight, order, tag))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges
        .into_iter()
        .find_map(|(_, _, tag)| known(tag))
        .unwrap_or(DEFAULT_LANG)
}

/// What the page's output region shows.
pub enum Outcome<'a> {
    /// Nothing yet (the plain page).
    Empty,
    /// A result.
    Found(&'a ExamResult),
    /// A text key of the table, with its placeholders' values.
    Message(&'static str, &'a [(&'static str, String)]),
}

/// The page in `lang`, the form holding `year` and `roll`, showing `outcome`
/// (a result with its pass or fail and grade from `grading`).
pub fn render(
    web: &Web,
    grading: &Grading,
    lang: &str,
    year: &str,
    roll: &str,
    outcome: Outcome<'_>,
) -> String {
    let table = &texts()[lang];
    let text = |key: &str| table.get(key).map_or("", String::as_str);
    let (out_class, out) = match outcome {
        Outcome::Empty => ("", String::new()),
        Outcome::Found(result) => ("", result_html(grading, text, result)),
        Outcome::Message(key, values) => {
            let mut message = text(key).to_owned();
            for (name, value) in values {
                message = message.replace(&format!("{{{name}}}"), value);
            }
            ("err", format!("<p>{}</p>", escape(&message)))
        }
    };
    let languages: String = texts()
        .iter()
        .map(|(code, table)| {
            let name = escape(table.get("lang_name").map_or(code, |n| n));
            if code == lang {
                format!("<a href=\"?lang={code}\" aria-current=\"page\" lang=\"{code}\">{name}</a>")
            } else {
                format!("<a href=\"?lang={code}\" lang=\"{code}\">{name}</a>")
            }
        })
        .collect();
    fill(TEMPLATE, |key| match key {
        "lang" => lang.to_owned(),
        "css" => CSS.to_owned(),
        "js" => JS.to_owned(),
        "config" => script_config(web, grading, table),
        "exam_year" => escape(year),
        "roll_number" => escape(roll),
        "out_class" => out_class.to_owned(),
        "out" => out.clone(),
        "languages" => languages.clone(),
        other => escape(text(other)),
    })
}

/// The result as the page's script also builds it: a heading and a list.
fn result_html<'t>(
    grading: &Grading,
    text: impl Fn(&str) -> &'t str,
    result: &ExamResult,
) -> String {
    let outcome = if result.marks >= grading.pass_mark {
        "pass"
    } else {
        "fail"
    };
    let mut rows = vec![
        (text("roll"), result.roll_number.to_string()),
        (text("year"), result.exam_year.to_string()),
        (text("marks"), result.marks.to_string()),
        (text("outcome"), text(outcome).to_owned()),
    ];
    if let Some(band) = grading.bands.iter().find(|b| result.marks >= b.min_marks) {
        rows.push((text("grade"), band.grade.clone()));
    }
    let rows: String = rows
        .iter()
        .map(|(k, v)| format!("<dt>{}</dt><dd>{}</dd>", escape(k), escape(v)))
        .collect();
    format!("<h2>{}</h2><dl>{rows}</dl>", escape(text("heading")))
}

/// The page script's settings and text, as JSON safe inside `<script>`.
fn script_config(web: &Web, grading: &Grading, table: &Table) -> String {
    #[derive(Serialize)]
    struct ScriptConfig<'a> {
        api: &'a str,
        pass: i32,
        /// (lowest marks, grade), highest first.
        bands: Vec<(i32, &'a str)>,
        t: &'a Table,
    }
    serde_json::to_string(&ScriptConfig {
        api: &web.api_url,
        pass: grading.pass_mark,
        bands: grading
            .bands
            .iter()
            .map(|b| (b.min_marks, b.grade.as_str()))
            .collect(),
        t: table,
    })
    .expect("serializable")
    .replace('<', "\\u003c")
}

/// Replaces each `{{name}}` in `template` with `value(name)`.
fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + CSS.len() + JS.len() + 2048);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        out.push_str(&value(&after[..end]));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// HTML text and attribute escaping.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's `Content-Security-Policy`: its own inline style and script
/// (by hash), reads from get-result only, forms to itself, nothing else.
pub fn content_security_policy(web: &Web) -> String {
    let hash = |text: &str| {
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
        )
    };
    let connect = if web.api_url.is_empty() {
        "'self'"
    } else {
        web.api_url.as_str()
    };
    format!(
        "default-src 'none'; style-src {}; script-src {}; connect-src {connect}; \
         img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        hash(CSS),
        hash(JS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_key_of_the_default_one() {
        let default: Vec<&String> = texts()[DEFAULT_LANG].keys().collect();
        assert!(texts().len() >= 2, "English and Bangla are shipped");
        for (lang, table) in texts() {
            assert_eq!(table.keys().collect::<Vec<_>>(), default, "{lang}");
        }
    }

    #[test]
    fn every_placeholder_of_the_template_is_filled() {
        let page = render(&Web::default(), &grading(), "bn", "", "", Outcome::Empty);
        assert!(!page.contains("{{"), "{page}");
        assert!(page.contains("lang=\"bn\"") && page.contains("পরীক্ষার ফলাফল"));
    }

    #[test]
    fn the_language_comes_from_the_query_then_accept_language() {
        assert_eq!(choose_lang(Some("bn"), None), "bn");
        assert_eq!(choose_lang(Some("xx"), Some(b"bn-BD")), "bn");
        assert_eq!(choose_lang(None, Some(b"fr, en;q=0.5, bn;q=0.8")), "bn");
        assert_eq!(choose_lang(None, Some(b"bn;q=0, en")), "en");
        assert_eq!(choose_lang(None, Some(b"\xff")), DEFAULT_LANG);
        assert_eq!(choose_lang(None, None), DEFAULT_LANG);
    }

    #[test]
    fn only_an_origin_is_accepted_for_cors() {
        assert!(is_origin("https://results.example.org"));
        assert!(is_origin("http://127.0.0.1:8086"));
        for bad in [
            "*",
            "https://a.example/",
            "ftp://a",
            "https://",
            "https://a b",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }

    #[test]
    fn script_config_cannot_close_its_script_element() {
        let grading = Grading::new(40, "</script>:0").unwrap();
        assert!(!script_config(&Web::default(), &grading, &texts()["en"]).contains("</"));
    }

    fn grading() -> Grading {
        Grading::new(40, "A:80,U:0").unwrap()
    }
}
