//! The results page (results-page): its no-JavaScript form behind the
//! publication gate, and the CORS header its script relies on (public
//! functions). The same page in a real browser: functions/results-page/tests/browser.

use exam_results::operations::ALL;
use exam_results::{Auth, Function};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::publication::{beside, publish, rfc3339, SET};
use crate::support::{
    shared_cluster, spawn, spawn_env, spawn_with, Spawn, TestApp, GET, PAGE, READ_TOKEN,
};

const ORIGIN: &str = "http://127.0.0.1:8080";

async fn text(
    app: &TestApp,
    path: &str,
    lang: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = app.client.get(app.url(path));
    if let Some(lang) = lang {
        request = request.header("accept-language", lang);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// The page's output region (what the form answered), without the form.
fn output(body: &str) -> &str {
    let start = body
        .find("<section id=\"out\"")
        .expect("the page has its output region");
    let end = start + body[start..].find("</section>").unwrap();
    &body[start..end]
}

#[tokio::test]
async fn the_page_is_cacheable_html_in_the_visitors_language() {
    let app = spawn_env(PAGE, vec![("PAGE_CACHE_SECONDS", "600".into())]).await;

    let (status, headers, body) = text(&app, "/", Some("bn-BD, en;q=0.5")).await;

    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "public, max-age=600");
    assert_eq!(headers["vary"], "accept-language");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(body.contains("<html lang=\"bn\">") && body.contains("রোল নম্বর"));
    let (_, headers, english) = text(&app, "/?lang=en", Some("bn")).await;
    assert!(english.contains("<html lang=\"en\">") && english.contains("Roll number"));
    assert!(headers.get("vary").is_none(), "?lang= names the variant");
}

#[tokio::test]
async fn the_form_without_javascript_is_answered_with_the_result() {
    let app = spawn_env(
        PAGE,
        vec![
            ("PASS_MARK", "33".into()),
            ("GRADE_BANDS", "A+:80,D:33,F:0".into()),
        ],
    )
    .await;
    app.insert_rows(shared_cluster(), &[(1001, 2024, 91)]).await;

    let (status, headers, body) =
        text(&app, "/?lang=en&exam_year=2024&roll_number=001001", None).await;

    assert_eq!(status, 200);
    assert!(headers["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public, max-age="));
    assert!(
        body.contains("<dt>Roll number</dt><dd>1001</dd><dt>Exam year</dt><dd>2024</dd><dt>Marks</dt><dd>91</dd><dt>Outcome</dt><dd>Pass</dd><dt>Grade</dt><dd>A+</dd>"),
        "{body}"
    );
    assert!(
        body.contains("value=\"1001\""),
        "the form keeps what was asked"
    );
}

#[tokio::test]
async fn the_form_says_not_found_and_refuses_bad_input_in_html() {
    let app = spawn_env(PAGE, vec![]).await;

    let (status, _, body) = text(&app, "/?lang=en&exam_year=2024&roll_number=5", None).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("No result was found for roll number 5 in 2024."),
        "{body}"
    );

    for query in [
        "exam_year=24&roll_number=5",
        "exam_year=2024&roll_number=x",
        "exam_year=2024",
        "other=1",
    ] {
        let (status, _, body) = text(&app, &format!("/?{query}"), None).await;
        assert_eq!(status, 400, "{query}");
        assert!(body.contains("Enter a four-digit exam year"), "{query}");
    }
    let (_, _, body) = text(&app, "/?exam_year=%22%3E%3Cscript%3E&roll_number=1", None).await;
    assert!(!body.contains("\"><script>"), "typed values are escaped");
}

#[tokio::test]
async fn an_unpublished_year_shows_its_publication_time_and_never_whether_a_roll_number_exists() {
    let set = spawn(SET).await;
    set.insert_rows(shared_cluster(), &[(7, 2027, 64)]).await;
    let page = beside(&set, PAGE, &[]).await;
    let at = (OffsetDateTime::now_utc() + time::Duration::hours(2))
        .replace_nanosecond(0)
        .unwrap();
    assert_eq!(publish(&set, 2027, json!(rfc3339(at))).await.status, 200);

    let (status, headers, existing) =
        text(&page, "/?lang=en&exam_year=2027&roll_number=7", None).await;
    let (absent_status, absent_headers, absent) =
        text(&page, "/?lang=en&exam_year=2027&roll_number=8", None).await;

    assert_eq!((status, absent_status), (404, 404));
    let when = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    );
    assert!(
        output(&existing).contains(&format!(
            "Results for 2027 are not published yet. They will be published on {when}."
        )),
        "{existing}"
    );
    assert!(
        !existing.contains("<dd>64</dd>"),
        "no marks before publication"
    );
    assert_eq!(
        output(&existing),
        output(&absent),
        "nothing says which roll number exists"
    );
    for headers in [&headers, &absent_headers] {
        assert_eq!(headers["cache-control"], "private, no-store");
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((7190..=7200).contains(&retry), "Retry-After {retry}");
    }
    let (_, _, bangla) = text(&page, "/?lang=bn&exam_year=2027&roll_number=7", None).await;
    assert!(output(&bangla).contains(&when), "{bangla}");
    // The page has no staff view (no `staff` in its manifest entry): a token changes nothing.
    let staff = page
        .client
        .get(page.url("/?lang=en&exam_year=2027&roll_number=7"))
        .header("authorization", format!("Bearer {READ_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(staff.status(), 404);
    assert_eq!(output(&staff.text().await.unwrap()), output(&existing));
}

#[tokio::test]
async fn a_withdrawn_year_is_not_published_and_names_no_time() {
    let set = spawn(SET).await;
    set.insert_rows(shared_cluster(), &[(7, 2026, 64)]).await;
    let page = beside(&set, PAGE, &[]).await;
    assert_eq!(publish(&set, 2026, Value::Null).await.status, 200);

    let (status, headers, body) = text(&page, "/?lang=en&exam_year=2026&roll_number=7", None).await;

    assert_eq!(status, 404);
    assert!(
        output(&body).contains("Results for 2026 are not published yet."),
        "{body}"
    );
    assert!(!output(&body).contains("They will be published"), "{body}");
    assert!(headers.get("retry-after").is_none());
}

#[tokio::test]
async fn a_year_whose_publication_time_has_passed_shows_the_result() {
    let set = spawn(SET).await;
    set.insert_rows(shared_cluster(), &[(7, 2025, 64)]).await;
    let page = beside(&set, PAGE, &[]).await;
    let past = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    assert_eq!(publish(&set, 2025, json!(rfc3339(past))).await.status, 200);

    let (status, headers, body) = text(&page, "/?lang=en&exam_year=2025&roll_number=7", None).await;

    assert_eq!(status, 200);
    assert!(
        output(&body).contains("<dt>Marks</dt><dd>64</dd>"),
        "{body}"
    );
    assert!(headers["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public, max-age="));
}

/// A request path for `function` with sample values in its route.
fn sample_path(function: &Function) -> String {
    function
        .route
        .template()
        .replace("{exam_year}", "2024")
        .replace("{roll_number}", "7")
}

#[tokio::test]
async fn a_configured_origin_may_read_public_functions_replies_only() {
    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    let env = || {
        vec![
            ("CORS_ALLOW_ORIGIN", ORIGIN.to_owned()),
            ("RATE_LIMIT_PER_SECOND", "1".into()),
            ("RATE_LIMIT_BURST", "1".into()),
        ]
    };
    // Every function of the manifest (ALL is held equal to functions.yaml):
    // the header exactly where its entry says `auth: public`.
    for function in ALL {
        let app = spawn_with(
            *function,
            Spawn {
                cluster,
                database: database.clone(),
                extra_env: env(),
            },
        )
        .await;
        let reply = app
            .client
            .request(function.method.clone(), app.url(&sample_path(function)))
            .send()
            .await
            .unwrap();
        let expected = (function.auth == Auth::Public).then_some(ORIGIN);
        assert_eq!(
            reply
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            expected,
            "{} answered {}",
            function.name,
            reply.status()
        );
    }

    let get = spawn_with(
        GET,
        Spawn {
            cluster,
            database: database.clone(),
            extra_env: env(),
        },
    )
    .await;
    get.insert_rows(cluster, &[(7, 2024, 70)]).await;
    let found = get.get(2024, 7).await;
    assert_eq!(found.status, 200);
    assert_eq!(found.header("access-control-allow-origin"), Some(ORIGIN));
    // The rate limit's 429 is readable too, with its Retry-After.
    let limited = get.get(2024, 7).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        limited.header("access-control-expose-headers"),
        Some("retry-after")
    );

    // A staff read of a public function is not for other origins' scripts.
    let staff = spawn_env(GET, vec![("CORS_ALLOW_ORIGIN", ORIGIN.to_owned())]).await;
    let reply = staff
        .send(
            staff
                .client
                .get(staff.url("/results/2024/7"))
                .header("authorization", format!("Bearer {READ_TOKEN}")),
        )
        .await;
    assert_eq!(reply.header("access-control-allow-origin"), None);

    let plain = spawn_env(GET, vec![]).await;
    assert_eq!(
        plain
            .get(2024, 7)
            .await
            .header("access-control-allow-origin"),
        None
    );
}

#[test]
fn cors_takes_one_origin_and_nothing_else() {
    use exam_results::config::{Auth, Config};
    for (origin, ok) in [
        (ORIGIN, true),
        ("*", false),
        ("https://a.example/page", false),
    ] {
        let config = Config::from_iter(
            [
                ("DATABASE_URL".to_owned(), "postgres://a@b/c".to_owned()),
                ("CORS_ALLOW_ORIGIN".to_owned(), origin.to_owned()),
            ],
            Auth::Public,
        );
        assert_eq!(config.is_ok(), ok, "{origin}");
    }
}
