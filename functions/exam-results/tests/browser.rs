//! The results page in a real Chromium: serves results-page and get-result
//! (real PostgreSQL + PgBouncer, in-process on free ports) and runs
//! `functions/results-page/tests/browser/run.mjs` (Playwright) against them.
//!
//! Ignored by `cargo test`: it needs Debian's chromium and the npm packages
//! of that directory. `make test-browser` installs both and runs it.

#[path = "api/support.rs"]
mod support;

use std::process::Command;

use exam_results::operations::set_publication;
use support::{free_port, shared_cluster, spawn_on, spawn_with, Spawn, TestApp, GET, PAGE};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::TcpListener;

const YEAR: i32 = 2024;
const FOUND: i64 = 100_000_001;
const OTHER: i64 = 100_000_002;
const MISSING: i64 = 100_000_999;
/// A year whose publication time is two hours away (its results exist).
const UNPUBLISHED_YEAR: i32 = 2027;

/// A results-page reading from a get-result (started here unless `api` is
/// given), each allowing the other: the page's `RESULTS_API_URL` and
/// get-result's `CORS_ALLOW_ORIGIN`.
async fn pair(
    database: &str,
    get_env: Vec<(&'static str, String)>,
    api: Option<String>,
) -> (TestApp, Option<TestApp>) {
    let cluster = shared_cluster();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let get = match api {
        Some(_) => None,
        None => {
            let mut env = vec![("CORS_ALLOW_ORIGIN", origin.clone())];
            env.extend(get_env);
            Some(
                spawn_with(
                    GET,
                    Spawn {
                        cluster,
                        database: database.to_owned(),
                        extra_env: env,
                    },
                )
                .await,
            )
        }
    };
    let api = api.unwrap_or_else(|| format!("http://{}", get.as_ref().unwrap().address));
    let page = spawn_on(
        listener,
        PAGE,
        Spawn {
            cluster,
            database: database.to_owned(),
            extra_env: vec![
                ("RESULTS_API_URL", api),
                ("PASS_MARK", "33".into()),
                ("GRADE_BANDS", "A+:80,A:70,A-:60,B:50,C:40,D:33,F:0".into()),
            ],
        },
    )
    .await;
    (page, get)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and the npm packages: make test-browser"]
async fn the_results_page_works_in_a_real_browser() {
    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    let (page, _get) = pair(&database, vec![], None).await;
    page.insert_rows(
        cluster,
        &[
            (FOUND, YEAR, 91),
            (OTHER, YEAR, 48),
            (FOUND, UNPUBLISHED_YEAR, 77),
        ],
    )
    .await;
    let publish_at = (OffsetDateTime::now_utc() + time::Duration::hours(2))
        .format(&Rfc3339)
        .unwrap();
    publish(&database, UNPUBLISHED_YEAR, &publish_at).await;
    let tiny_limit = vec![
        ("RATE_LIMIT_PER_SECOND", "1".to_owned()),
        ("RATE_LIMIT_BURST", "1".to_owned()),
    ];
    let (limited, _limited_get) = pair(&database, tiny_limit, None).await;
    let nothing = format!("http://127.0.0.1:{}", free_port());
    let (unreachable, _) = pair(&database, vec![], Some(nothing)).await;

    let dir = support::repo_root().join("functions/results-page/tests/browser");
    let vars = [
        ("PAGE_URL", page.url("/")),
        ("LIMITED_URL", limited.url("/")),
        ("UNREACHABLE_URL", unreachable.url("/")),
        ("YEAR", YEAR.to_string()),
        ("UNPUBLISHED_YEAR", UNPUBLISHED_YEAR.to_string()),
        ("ROLL_FOUND", FOUND.to_string()),
        ("ROLL_OTHER", OTHER.to_string()),
        ("ROLL_MISSING", MISSING.to_string()),
    ];
    let status = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("run.mjs")
            .current_dir(dir)
            .envs(vars)
            .status()
            .expect("node is installed (make test-browser)")
    })
    .await
    .unwrap();
    assert!(status.success(), "the browser tests failed: {status}");
}

/// Sets `year`'s publication time through set-publication, as the board does.
async fn publish(database: &str, year: i32, publish_at: &str) {
    let set = spawn_with(
        set_publication::FUNCTION,
        Spawn {
            cluster: shared_cluster(),
            database: database.to_owned(),
            extra_env: vec![],
        },
    )
    .await;
    let reply = set
        .authed(set.client.put(set.url(&format!("/publications/{year}"))))
        .json(&serde_json::json!({ "publish_at": publish_at }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
}
