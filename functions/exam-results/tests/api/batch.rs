//! create-results-batch: batch loads over HTTP, all or nothing, through
//! PgBouncer in transaction mode.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use exam_results::operations::create_results_batch;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::support::{shared_cluster, spawn_with, Reply, Spawn, TestApp, TOKEN};

async fn batch_app(extra: Vec<(&'static str, String)>) -> TestApp {
    let cluster = shared_cluster();
    let mut extra_env = vec![("BATCH_STATEMENT_TIMEOUT_MS", "60000".to_owned())];
    extra_env.extend(extra);
    spawn_with(
        create_results_batch::FUNCTION,
        Spawn {
            cluster,
            database: cluster.fresh_database().await,
            extra_env,
        },
    )
    .await
}

fn csv(rows: impl IntoIterator<Item = (i64, i32)>) -> String {
    let mut body = String::from("roll_number,marks\n");
    for (roll, marks) in rows {
        writeln!(body, "{roll},{marks}").unwrap();
    }
    body
}

async fn post(app: &TestApp, query: &str, content_type: &str, body: String) -> Reply {
    app.send(
        app.authed(
            app.client
                .post(app.url(&format!("/results/batches?{query}"))),
        )
        .header("content-type", content_type)
        .body(body),
    )
    .await
}

async fn load_csv(app: &TestApp, body: String) -> Reply {
    post(app, "exam_year=2024", "text/csv", body).await
}

fn report(reply: &Reply) -> &Value {
    &reply.body["error"]["report"]
}

#[tokio::test]
async fn a_batch_of_100k_rows_loads_whole() {
    let app = batch_app(vec![]).await;
    let body = csv((1..=100_000).map(|roll| (roll, (roll % 101) as i32)));

    let started = Instant::now();
    let reply = load_csv(&app, body).await;
    let elapsed = started.elapsed();

    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["rows"], 100_000);
    assert_eq!(reply.body["inserted"], 100_000);
    assert!(reply.header("x-consistency-token").is_some());
    assert_eq!(app.row_count(shared_cluster()).await, 100_000);

    // The same rows with psql's \copy straight into PostgreSQL, for comparison.
    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    let file = cluster.dir.join(format!("{database}.csv"));
    let rows: String = (1..=100_000)
        .map(|roll| format!("{roll},{},2024\n", roll % 101))
        .collect();
    std::fs::write(&file, rows).unwrap();
    let copy_started = Instant::now();
    let status = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "exam_owner",
        ])
        .env("PGPASSWORD", cluster.password("exam_owner"))
        .args(["-p", &cluster.pg_port.to_string(), "-d", &database, "-c"])
        .arg(format!(
            "\\copy student_results (roll_number, marks, exam_year) FROM '{}' CSV",
            file.display()
        ))
        .status()
        .unwrap();
    let copy_elapsed = copy_started.elapsed();
    assert!(status.success(), "psql \\copy failed");
    println!(
        "100000 rows: HTTP batch {elapsed:?} ({:.0} rows/s); psql \\copy {copy_elapsed:?} ({:.0} rows/s)",
        100_000.0 / elapsed.as_secs_f64(),
        100_000.0 / copy_elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn a_bad_row_in_the_middle_loads_nothing_and_is_reported_by_line() {
    let app = batch_app(vec![]).await;
    let mut body = csv((1..=50_000).map(|roll| (roll, 50)));
    body.push_str("50001,101\n");
    body.push_str(&csv((50_002..=100_000).map(|roll| (roll, 50)))["roll_number,marks\n".len()..]);

    let reply = load_csv(&app, body).await;

    assert_eq!((reply.status, reply.error_code()), (422, "batch_rejected"));
    let report = report(&reply);
    assert_eq!(report["rows"], 100_000);
    assert_eq!(
        (report["rejected"].clone(), report["invalid"].clone()),
        (1.into(), 1.into())
    );
    // The header is line 1, so roll number N is on line N + 1.
    assert_eq!(report["first_rejected"][0]["line"], 50_002);
    assert_eq!(report["first_rejected"][0]["roll_number"], 50_001);
    assert!(report["first_rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("marks"));
    assert_eq!(app.row_count(shared_cluster()).await, 0);
}

#[tokio::test]
async fn duplicates_within_the_batch_and_existing_results_reject_it_whole() {
    let app = batch_app(vec![]).await;
    app.insert_rows(shared_cluster(), &[(7, 2024, 10)]).await;

    let reply = load_csv(&app, csv([(1, 1), (2, 2), (1, 3), (7, 70)])).await;

    assert_eq!((reply.status, reply.error_code()), (422, "batch_rejected"));
    let report = report(&reply);
    assert_eq!(
        (report["duplicates"].clone(), report["existing"].clone()),
        (1.into(), 1.into())
    );
    let lines: Vec<i64> = report["first_rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, vec![4, 5]);
    assert_eq!(app.row_count(shared_cluster()).await, 1);
}

#[tokio::test]
async fn replacing_existing_results_is_explicit() {
    let app = batch_app(vec![]).await;
    app.insert_rows(shared_cluster(), &[(7, 2024, 10)]).await;

    let reply = post(
        &app,
        "exam_year=2024&on_existing=replace",
        "text/csv",
        csv([(7, 70), (8, 80)]),
    )
    .await;

    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        (
            reply.body["inserted"].clone(),
            reply.body["replaced"].clone()
        ),
        (1.into(), 1.into())
    );
    let marks: i32 = shared_cluster()
        .direct(&app.database)
        .await
        .query_one(
            "SELECT marks FROM student_results WHERE roll_number = 7",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(marks, 70);
}

#[tokio::test]
async fn ndjson_loads_like_csv() {
    let app = batch_app(vec![]).await;
    let body = "{\"roll_number\": 1, \"marks\": 10}\n{\"roll_number\": 2, \"marks\": 20}\n";
    let reply = post(&app, "exam_year=2024", "application/x-ndjson", body.into()).await;
    assert_eq!(
        (reply.status, reply.body["inserted"].clone()),
        (201, 2.into())
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_body_loads_nothing() {
    let app = batch_app(vec![]).await;
    let body = csv((1..=200_000).map(|roll| (roll, 50)));
    let mut socket = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST /results/batches?exam_year=2024 HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: text/csv\r\ncontent-length: {}\r\n\r\n",
        app.address,
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    // Let the function stage what it has received, then hang up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(socket);

    let direct = shared_cluster().direct(&app.database).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND state LIKE '%transaction%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the aborted batch's transaction is still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.row_count(shared_cluster()).await, 0);
    // The connection went back to the pool clean: the next batch loads.
    let reply = load_csv(&app, csv([(1, 1)])).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn of_two_concurrent_batches_sharing_a_key_one_loads_and_the_other_is_rejected_whole() {
    let app = batch_app(vec![]).await;
    let first = csv((1..=30_000).map(|roll| (roll, 1)));
    let second = csv((29_999..=60_000).map(|roll| (roll, 2)));

    let (a, b) = tokio::join!(load_csv(&app, first), load_csv(&app, second));

    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 422], "{} / {}", a.body, b.body);
    let (winner, loser) = if a.status == 201 { (&a, &b) } else { (&b, &a) };
    assert_eq!(loser.error_code(), "batch_rejected");
    assert_eq!(report(loser)["existing"], 2);
    assert_eq!(
        app.row_count(shared_cluster()).await,
        winner.body["inserted"].as_i64().unwrap()
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_loads_nothing() {
    let app = batch_app(vec![("BATCH_MAX_BYTES", "1000".into())]).await;
    let reply = load_csv(&app, csv((1..=200).map(|roll| (roll, 1)))).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (413, "payload_too_large")
    );
    assert_eq!(app.row_count(shared_cluster()).await, 0);
}

#[tokio::test]
async fn a_batch_retried_with_its_key_loads_once() {
    let app = batch_app(vec![]).await;
    let send = |body: String| {
        app.send(
            app.authed(app.client.post(app.url("/results/batches?exam_year=2024")))
                .header("content-type", "text/csv")
                .header("idempotency-key", "batch-1")
                .body(body),
        )
    };
    let first = send(csv([(1, 1), (2, 2)])).await;
    let retry = send(csv([(1, 1), (2, 2)])).await;
    let other = send(csv([(1, 1), (3, 3)])).await;

    assert_eq!(first.status, 201);
    assert_eq!(
        (retry.status, retry.header("idempotent-replayed")),
        (201, Some("true"))
    );
    assert_eq!(retry.body, first.body);
    assert_eq!(
        (other.status, other.error_code()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(app.row_count(shared_cluster()).await, 2);
}

#[tokio::test]
async fn the_request_must_name_a_year_and_a_supported_format() {
    let app = batch_app(vec![]).await;
    let reply = post(&app, "", "text/csv", csv([(1, 1)])).await;
    assert_eq!((reply.status, reply.error_code()), (400, "bad_request"));
    let reply = post(&app, "exam_year=2024", "application/json", "{}".into()).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (415, "unsupported_media_type")
    );
    let reply = app
        .send(
            app.client
                .post(app.url("/results/batches?exam_year=2024"))
                .header("content-type", "text/csv")
                .body(csv([(1, 1)])),
        )
        .await;
    assert_eq!((reply.status, reply.error_code()), (401, "unauthorized"));
    let reply = post(&app, "exam_year=2031", "text/csv", csv([(1, 1)])).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (422, "partition_missing")
    );
}
