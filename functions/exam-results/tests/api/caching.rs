//! The read path built for the crowd: HTTP caching headers from
//! configuration, and the in-process cache that turns concurrent misses
//! for one result into one query.

use std::time::{Duration, Instant};

use exam_results::telemetry::init_metrics;
use serde_json::json;

use crate::support::{shared_cluster, spawn_with, Spawn, TestApp, GET, READ_TOKEN};

async fn get_result(extra: &[(&'static str, &str)]) -> TestApp {
    let cluster = shared_cluster();
    spawn_with(
        GET,
        Spawn {
            cluster,
            database: cluster.fresh_database().await,
            extra_env: extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        },
    )
    .await
}

async fn as_staff(app: &TestApp, year: i32, roll: i64) -> crate::support::Reply {
    app.send(
        app.client
            .get(app.url(&format!("/results/{year}/{roll}")))
            .header("authorization", format!("Bearer {READ_TOKEN}")),
    )
    .await
}

#[tokio::test]
async fn published_results_carry_the_configured_cache_control_and_staff_reads_none() {
    let app = get_result(&[
        ("HTTP_CACHE_MAX_AGE_SECONDS", "120"),
        ("HTTP_CACHE_STALE_WHILE_REVALIDATE_SECONDS", "15"),
        ("HTTP_CACHE_NOT_FOUND_MAX_AGE_SECONDS", "7"),
    ])
    .await;
    app.insert_rows(shared_cluster(), &[(5, 2024, 88)]).await;
    let public = "public, max-age=120, stale-while-revalidate=15";

    let ok = app.get(2024, 5).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("cache-control"), Some(public));
    assert_eq!(ok.header("vary"), Some("Authorization"));
    let etag = ok.header("etag").unwrap().to_owned();

    let not_modified = app
        .send(
            app.client
                .get(app.url("/results/2024/5"))
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("cache-control"), Some(public));

    let absent = app.get(2024, 6).await;
    assert_eq!((absent.status, absent.error_code()), (404, "not_found"));
    assert_eq!(absent.header("cache-control"), Some("public, max-age=7"));

    let staff = as_staff(&app, 2024, 5).await;
    assert_eq!(staff.status, 200);
    assert_eq!(staff.header("cache-control"), Some("private, no-store"));
    assert_eq!(staff.header("etag"), Some(etag.as_str()));
}

fn counter(text: &str, cache: &str, outcome: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with("exam_results_read_cache_lookups_total{")
                && l.contains(&format!("cache=\"{cache}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_in_process_cache_answers_repeats_until_its_ttl_and_counts_hits_and_misses() {
    let metrics = init_metrics("test-suite");
    let app = get_result(&[
        ("READ_CACHE_CAPACITY", "100"),
        ("READ_CACHE_TTL_MS", "1000"),
    ])
    .await;
    app.insert_rows(shared_cluster(), &[(9, 2024, 40)]).await;
    let before = metrics.render();

    assert_eq!(app.get(2024, 9).await.body["marks"], 40);
    let started = Instant::now();
    let db = shared_cluster().direct(&app.database).await;
    db.batch_execute(
        "UPDATE student_results SET marks = 41 WHERE roll_number = 9; \
         INSERT INTO student_results VALUES (10, 50, 2024)",
    )
    .await
    .unwrap();
    // An absent result is cached too: guessing roll numbers costs no query.
    let absent_first = app.get(2024, 11).await;
    assert_eq!(absent_first.status, 404);
    db.batch_execute("INSERT INTO student_results VALUES (11, 60, 2024)")
        .await
        .unwrap();
    let cached = app.get(2024, 9).await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "test too slow"
    );
    assert_eq!(cached.body["marks"], 40, "served from the cache");
    assert_eq!(
        app.get(2024, 11).await.status,
        404,
        "absence served from the cache"
    );
    assert_eq!(
        as_staff(&app, 2024, 9).await.body["marks"],
        41,
        "staff bypass the cache"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        app.get(2024, 9).await.body["marks"],
        41,
        "expired after the TTL"
    );
    assert_eq!(app.get(2024, 11).await.status, 200);

    let after = metrics.render();
    assert!(counter(&after, "result", "hit") - counter(&before, "result", "hit") >= 2.0);
    assert!(counter(&after, "result", "miss") - counter(&before, "result", "miss") >= 4.0);
}

/// Backends of `database` waiting on a lock while reading a result.
async fn waiting_reads(database: &str) -> i64 {
    shared_cluster()
        .direct("postgres")
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
             AND wait_event_type = 'Lock' AND query LIKE 'SELECT roll_number%'",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

/// Sends `n` concurrent reads of one result while its partition is locked,
/// and returns how many queries reached the database, with the statuses.
async fn concurrent_reads_under_a_lock(app: &TestApp, n: usize) -> (i64, Vec<u16>) {
    let db = shared_cluster().direct(&app.database).await;
    // The publication times are read once before the crowd arrives.
    assert_eq!(app.get(2024, 1).await.status, 200);
    db.batch_execute("BEGIN; LOCK TABLE student_results_2024 IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/results/2024/2"));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(700);
    let mut waiting = 0;
    while Instant::now() < deadline {
        waiting = waiting.max(waiting_reads(&app.database).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.batch_execute("COMMIT").await.unwrap();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }
    (waiting, statuses)
}

#[tokio::test]
async fn concurrent_misses_for_one_result_make_one_database_query() {
    let metrics = init_metrics("test-suite");
    let cached = get_result(&[
        ("READ_CACHE_CAPACITY", "100"),
        ("READ_CACHE_TTL_MS", "5000"),
    ])
    .await;
    cached
        .insert_rows(shared_cluster(), &[(1, 2024, 10), (2, 2024, 20)])
        .await;
    let before = counter(&metrics.render(), "result", "coalesced");

    let (queries, statuses) = concurrent_reads_under_a_lock(&cached, 20).await;
    assert_eq!(queries, 1, "one query for twenty concurrent misses");
    assert_eq!(statuses, vec![200; 20]);
    let coalesced = counter(&metrics.render(), "result", "coalesced") - before;
    assert!(coalesced >= 19.0, "coalesced waits counted: {coalesced}");

    // Without the cache every request queries: the pool's connections all
    // wait on the same row and the requests beyond them time out (503).
    let uncached = get_result(&[]).await;
    uncached
        .insert_rows(shared_cluster(), &[(1, 2024, 10), (2, 2024, 20)])
        .await;
    let (queries, statuses) = concurrent_reads_under_a_lock(&uncached, 20).await;
    assert!(queries > 1, "{queries}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn an_unpublished_year_never_enters_the_cache() {
    let app = get_result(&[
        ("READ_CACHE_CAPACITY", "100"),
        ("READ_CACHE_TTL_MS", "60000"),
    ])
    .await;
    app.insert_rows(shared_cluster(), &[(3, 2028, 77)]).await;
    let set = crate::publication::beside(&app, crate::publication::SET, &[]).await;
    crate::publication::publish(&set, 2028, json!("2099-01-01T00:00:00Z")).await;
    assert_eq!(app.get(2028, 3).await.error_code(), "results_not_published");
    assert_eq!(as_staff(&app, 2028, 3).await.status, 200);
    // Staff reads are not cached either: a public read is still refused.
    assert_eq!(app.get(2028, 3).await.error_code(), "results_not_published");
}
