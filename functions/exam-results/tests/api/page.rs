//! The results page (results-page) and the CORS header its script relies on
//! (get-result). The same page in a real browser: functions/results-page/tests/browser.

use exam_results::Function;

use crate::support::{shared_cluster, spawn_with, Spawn, TestApp, CREATE, GET, LIST, PAGE};

const ORIGIN: &str = "http://127.0.0.1:8086";

/// `function` over a fresh database of the shared cluster, with `env`.
async fn serve(function: Function, env: Vec<(&'static str, String)>) -> TestApp {
    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    spawn_with(
        function,
        Spawn {
            cluster,
            database,
            extra_env: env,
        },
    )
    .await
}

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

#[tokio::test]
async fn the_page_is_cacheable_html_in_the_visitors_language() {
    let app = serve(PAGE, vec![("PAGE_CACHE_SECONDS", "600".into())]).await;

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
    let app = serve(
        PAGE,
        vec![
            ("PASS_MARK", "33".into()),
            ("GRADE_BANDS", "80:A+,33:D,0:F".into()),
        ],
    )
    .await;
    app.insert_rows(shared_cluster(), &[(1001, 2024, 91)]).await;

    let (status, headers, body) =
        text(&app, "/?lang=en&exam_year=2024&roll_number=001001", None).await;

    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
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
    let app = serve(PAGE, vec![]).await;

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
async fn a_configured_origin_may_read_public_replies_only() {
    let cluster = shared_cluster();
    let cors = || {
        vec![
            ("CORS_ALLOW_ORIGIN", ORIGIN.to_owned()),
            ("RATE_LIMIT_PER_SECOND", "1".into()),
            ("RATE_LIMIT_BURST", "1".into()),
        ]
    };
    let get = serve(GET, cors()).await;
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

    for function in [CREATE, LIST] {
        let app = serve(function, cors()).await;
        let request = app
            .client
            .request(function.method.clone(), app.url("/results"));
        let reply = app.send(request).await;
        assert_eq!(reply.status, 401);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "{}",
            function.name
        );
    }
    let plain = serve(GET, vec![]).await;
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
