//! Publication: a year is public from its publication time on, staff read
//! it before, and every change is audited.

use std::time::{Duration, Instant};

use exam_results::operations::{get_publication, get_result, list_results, set_publication};
use exam_results::Function;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::{shared_cluster, spawn, spawn_with, Reply, Spawn, TestApp, READ_TOKEN, TOKEN};

pub(crate) const SET: Function = set_publication::FUNCTION;
pub(crate) const PUBLICATION: Function = get_publication::FUNCTION;

/// The refresh interval the tests run the read functions with.
pub(crate) const REFRESH_SECONDS: u64 = 1;

/// `function` against the database `app` uses, refreshing publications every second.
pub(crate) async fn beside(
    app: &TestApp,
    function: Function,
    extra: &[(&'static str, &str)],
) -> TestApp {
    let mut extra_env = vec![("PUBLICATION_REFRESH_SECONDS", REFRESH_SECONDS.to_string())];
    extra_env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    spawn_with(
        function,
        Spawn {
            cluster: shared_cluster(),
            database: app.database.clone(),
            extra_env,
        },
    )
    .await
}

pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

/// PUT /publications/{year} with the write token.
pub(crate) async fn publish(app: &TestApp, year: i32, publish_at: Value) -> Reply {
    app.send(
        app.authed(app.client.put(app.url(&format!("/publications/{year}"))))
            .json(&json!({ "publish_at": publish_at })),
    )
    .await
}

async fn get_as(app: &TestApp, path: &str, token: Option<&str>) -> Reply {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    app.send(request).await
}

#[tokio::test]
async fn a_year_published_seconds_ahead_is_hidden_before_and_public_after_on_the_same_process() {
    let set = spawn(SET).await;
    set.insert_rows(shared_cluster(), &[(7, 2027, 64)]).await;
    let get = beside(&set, get_result::FUNCTION, &[]).await;
    let at = OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let stamp = rfc3339(at.replace_nanosecond(0).unwrap());
    assert_eq!(publish(&set, 2027, json!(stamp)).await.status, 200);

    let before = get.get(2027, 7).await;
    assert_eq!(
        (before.status, before.error_code()),
        (404, "results_not_published")
    );
    assert!(before.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&stamp));
    let retry: u64 = before.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    assert_eq!(before.header("cache-control"), Some("private, no-store"));
    // An absent roll number gets the very same answer: nothing is revealed.
    let absent = get.get(2027, 8).await;
    assert_eq!(
        (absent.status, absent.body.clone()),
        (404, before.body.clone())
    );

    // Staff read the unpublished year, never cacheable by others.
    for token in [READ_TOKEN, TOKEN] {
        let staff = get_as(&get, "/results/2027/7", Some(token)).await;
        assert_eq!(
            (staff.status, staff.body["marks"].clone()),
            (200, json!(64))
        );
        assert_eq!(staff.header("cache-control"), Some("private, no-store"));
    }
    // A wrong token reads as the public.
    let wrong = get_as(&get, "/results/2027/7", Some("not-a-token-0123456789")).await;
    assert_eq!(wrong.error_code(), "results_not_published");

    let wait = at - OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    let after = get.get(2027, 7).await;
    assert_eq!(
        (after.status, after.body["marks"].clone()),
        (200, json!(64))
    );
    assert!(after
        .header("cache-control")
        .unwrap()
        .starts_with("public, max-age="));

    // Moving the time back hides the year again within the refresh interval.
    let later = rfc3339(OffsetDateTime::now_utc() + time::Duration::hours(1));
    let moved = Instant::now();
    assert_eq!(publish(&set, 2027, json!(later)).await.status, 200);
    loop {
        let reply = get.get(2027, 7).await;
        if reply.status == 404 {
            assert_eq!(reply.error_code(), "results_not_published");
            break;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(REFRESH_SECONDS) + Duration::from_millis(900),
            "still public {:?} after the publication was moved",
            moved.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn withdrawing_a_year_hides_it_without_naming_a_time() {
    let set = spawn(SET).await;
    set.insert_rows(shared_cluster(), &[(1, 2026, 50)]).await;
    let get = beside(&set, get_result::FUNCTION, &[]).await;
    assert_eq!(
        get.get(2026, 1).await.status,
        200,
        "unscheduled years are public"
    );

    let withdrawn = publish(&set, 2026, Value::Null).await;
    assert_eq!(
        withdrawn.body,
        json!({"exam_year": 2026, "publish_at": null, "published": false})
    );
    tokio::time::sleep(Duration::from_secs(REFRESH_SECONDS) + Duration::from_millis(200)).await;

    let reply = get.get(2026, 1).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (404, "results_not_published")
    );
    assert_eq!(reply.header("retry-after"), None);
}

#[tokio::test]
async fn get_publication_reports_the_time_and_whether_it_has_passed() {
    let set = spawn(SET).await;
    let read = beside(&set, PUBLICATION, &[]).await;
    let future = "2030-08-13T08:00:00Z";
    assert_eq!(
        publish(&set, 2030, json!("2030-08-13T09:00:00+01:00"))
            .await
            .body["publish_at"],
        future
    );
    assert_eq!(
        publish(&set, 2019, json!("2019-08-15T08:00:00Z"))
            .await
            .status,
        200
    );

    let scheduled = get_as(&read, "/publications/2030", None).await;
    assert_eq!(
        scheduled.body,
        json!({"exam_year": 2030, "publish_at": future, "published": false})
    );
    assert!(scheduled
        .header("cache-control")
        .unwrap()
        .starts_with("public, max-age="));
    let past = get_as(&read, "/publications/2019", None).await;
    assert_eq!(past.body["published"], true);
    let unscheduled = get_as(&read, "/publications/2024", None).await;
    assert_eq!(
        unscheduled.body,
        json!({"exam_year": 2024, "publish_at": null, "published": true})
    );
    for (path, status) in [
        ("/publications/20x4", 400),
        ("/publications/02024", 404),
        ("/publications/1900", 422),
        ("/publications/2024?x=1", 400),
    ] {
        assert_eq!(get_as(&read, path, None).await.status, status, "{path}");
    }
}

#[tokio::test]
async fn setting_a_publication_needs_a_write_token_and_a_valid_time() {
    let set = spawn(SET).await;
    let url = set.url("/publications/2027");
    let body = json!({"publish_at": "2027-08-13T08:00:00Z"});
    let anonymous = set.send(set.client.put(&url).json(&body)).await;
    assert_eq!(anonymous.status, 401);
    let reader = set
        .send(
            set.client
                .put(&url)
                .header("authorization", format!("Bearer {READ_TOKEN}"))
                .json(&body),
        )
        .await;
    assert_eq!(reader.status, 401, "a read token cannot publish");

    for (body, code) in [
        (
            json!({"publish_at": "13/08/2027 08:00"}),
            "validation_failed",
        ),
        (json!({"publish_at": "2027-08-13"}), "validation_failed"),
        (json!({"publish_at": 5}), "validation_failed"),
        (json!({}), "validation_failed"),
        (json!({"publish_at": null, "extra": 1}), "validation_failed"),
        (json!([1]), "bad_request"),
    ] {
        let reply = set.send(set.authed(set.client.put(&url)).json(&body)).await;
        assert_eq!(reply.error_code(), code, "{body}");
    }
    let wrong_method = set
        .send(set.authed(set.client.post(&url)).json(&body))
        .await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("PUT, GET, HEAD"));
}

#[tokio::test]
async fn every_change_is_audited_with_a_token_fingerprint_never_the_token() {
    let set = spawn(SET).await;
    publish(&set, 2027, json!("2027-08-13T08:00:00Z")).await;
    publish(&set, 2027, json!("2027-08-14T08:00:00Z")).await;
    publish(&set, 2027, Value::Null).await;

    let rows = shared_cluster()
        .direct(&set.database)
        .await
        .query(
            "SELECT changed_by, old_publish_at::text, new_publish_at::text, changed_at <= now() \
             FROM publication_audit WHERE exam_year = 2027 ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let trail: Vec<(Option<String>, Option<String>)> =
        rows.iter().map(|r| (r.get(1), r.get(2))).collect();
    assert_eq!(
        trail,
        vec![
            (None, Some("2027-08-13 08:00:00+00".into())),
            (
                Some("2027-08-13 08:00:00+00".into()),
                Some("2027-08-14 08:00:00+00".into())
            ),
            (
                Some("2027-08-14 08:00:00+00".into()),
                Some("infinity".into())
            ),
        ]
    );
    for row in &rows {
        let who: String = row.get(0);
        assert!(
            who.starts_with("sha256:") && !who.contains(&TOKEN[..8]),
            "{who}"
        );
        assert!(row.get::<_, bool>(3));
    }
}

#[tokio::test]
async fn the_audit_trail_is_append_only_for_the_runtime_roles_and_the_owner() {
    let cluster = shared_cluster();
    // The group roles normally come from an earlier migration; created here
    // if absent, before a fresh database so 0007's grants apply.
    for role in ["exam_results_writer", "exam_results_reader"] {
        let _ = cluster
            .direct("postgres")
            .await
            .batch_execute(&format!("CREATE ROLE {role} NOLOGIN"))
            .await;
    }
    let database = cluster.fresh_database().await;
    let client = cluster.direct(&database).await;
    client
        .batch_execute(
            "SET ROLE exam_results_writer; \
             INSERT INTO publication_audit (exam_year, changed_by, new_publish_at) \
             VALUES (2027, 'sha256:0123456789abcdef', now())",
        )
        .await
        .expect("the writer appends");
    for statement in [
        "UPDATE publication_audit SET exam_year = 2028",
        "DELETE FROM publication_audit",
        "SELECT count(*) FROM publication_audit",
        "TRUNCATE publication_audit",
    ] {
        let err = client.batch_execute(statement).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}"
        );
    }
    client
        .batch_execute("RESET ROLE; SET ROLE exam_results_reader")
        .await
        .unwrap();
    client
        .batch_execute("SELECT * FROM publications; SELECT * FROM result_mark_counts")
        .await
        .expect("the reader reads publications and counts");
    assert!(client
        .batch_execute("INSERT INTO publication_audit (exam_year, changed_by, new_publish_at) VALUES (2027, 'sha256:0123456789abcdef', now())")
        .await
        .is_err());
    // Even the owner cannot rewrite the trail while its triggers stand.
    client.batch_execute("RESET ROLE").await.unwrap();
    for statement in [
        "UPDATE publication_audit SET exam_year = 2028",
        "DELETE FROM publication_audit",
        "TRUNCATE publication_audit",
    ] {
        let err = client.batch_execute(statement).await.unwrap_err();
        assert!(
            err.as_db_error().unwrap().message().contains("append-only"),
            "{statement}: {err}"
        );
    }
}

#[derive(serde::Deserialize)]
struct Manifest {
    functions: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    name: String,
    staff: Option<String>,
}

/// `staff: read-token` in functions.yaml marks exactly the functions that
/// hide unpublished years from the public and show them to a read token.
#[tokio::test]
async fn the_manifest_marks_exactly_the_functions_that_serve_staff_views() {
    let text = std::fs::read_to_string(
        crate::support::repo_root().join("knative/exam-results/functions.yaml"),
    )
    .unwrap();
    let manifest: Manifest = serde_norway::from_str(&text).unwrap();
    let set = spawn(SET).await;
    set.insert_rows(shared_cluster(), &[(1, 2027, 50)]).await;
    publish(&set, 2027, json!("2099-01-01T00:00:00Z")).await;
    for function in exam_results::operations::ALL {
        // The results page answers in HTML; its form's gate is in page.rs.
        let page = function.route.template() == "/";
        if function.auth != exam_results::Auth::Public || function.method.as_str() != "GET" || page
        {
            continue;
        }
        let app = beside(&set, *function, &[]).await;
        let path = function
            .route
            .template()
            .replace("{exam_year}", "2027")
            .replace("{roll_number}", "1");
        let public = get_as(&app, &path, None).await;
        let staff = get_as(&app, &path, Some(READ_TOKEN)).await;
        let hides = public.error_code() == "results_not_published";
        let shows_staff = staff.status == 200;
        let declared = manifest
            .functions
            .iter()
            .find(|e| e.name == function.name)
            .and_then(|e| e.staff.as_deref());
        assert_eq!(
            declared,
            (hides && shows_staff).then_some("read-token"),
            "{}: public {} {}, staff {}",
            function.name,
            public.status,
            public.error_code(),
            staff.status
        );
    }
}

#[tokio::test]
async fn a_listing_is_never_stored_by_a_shared_cache() {
    let app = spawn(list_results::FUNCTION).await;
    let reply = app.list("exam_year=2024").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("private, no-store"));
}

/// While the database is down, requests that need the publication times
/// share one failed read instead of queueing to fail one after another.
#[tokio::test]
async fn a_database_outage_costs_one_publication_read_not_one_per_request() {
    let cluster = crate::support::Cluster::start();
    let database = cluster.fresh_database().await;
    let app = spawn_with(
        get_result::FUNCTION,
        Spawn {
            cluster: &cluster,
            database,
            extra_env: vec![("PUBLICATION_REFRESH_SECONDS", "1".into())],
        },
    )
    .await;
    assert_eq!(app.get(2024, 1).await.status, 404);
    cluster.stop_postgres();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let started = Instant::now();
    assert_eq!(app.get(2024, 1).await.error_code(), "database_unavailable");
    let one = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let started = Instant::now();
    let replies = futures_util::future::join_all((0..16).map(|_| app.get(2024, 1))).await;
    let all = started.elapsed();
    for reply in &replies {
        assert_eq!(reply.error_code(), "database_unavailable");
    }
    // Queued one after another, the same requests take over a second longer.
    assert!(
        all < one + Duration::from_millis(700),
        "sixteen concurrent requests took {all:?}, one took {one:?}"
    );
}
