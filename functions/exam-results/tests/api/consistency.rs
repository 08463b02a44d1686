//! Read-your-writes against a real streaming replica: a write's
//! `X-Consistency-Token`, presented on a read, makes the read include it.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::replica::reader_with_limit;
use crate::support::{
    spawn_with, Cluster, Reply, Spawn, TestApp, CREATE, DELETE, REPLICATED_DB, UPDATE,
};

const TOKEN_HEADER: &str = "x-consistency-token";

/// A write function on the primary (through PgBouncer).
pub(crate) async fn writer(cluster: &Cluster, function: exam_results::Function) -> TestApp {
    spawn_with(
        function,
        Spawn {
            cluster,
            database: REPLICATED_DB.into(),
            extra_env: vec![("DATABASE_URL", cluster.pooled_url(REPLICATED_DB))],
        },
    )
    .await
}

/// get-result on the replica, with or without the primary as its fallback;
/// the lag limit is out of reach, so only the token decides.
async fn reader(cluster: &Cluster, fallback: bool) -> TestApp {
    reader_with_limit(cluster, fallback, 3600).await
}

async fn get_with(app: &TestApp, roll: i64, token: Option<&str>) -> Reply {
    let mut request = app.client.get(app.url(&format!("/results/2024/{roll}")));
    if let Some(token) = token {
        request = request.header(TOKEN_HEADER, token);
    }
    app.send(request).await
}

fn token_of(reply: &Reply) -> String {
    reply
        .header(TOKEN_HEADER)
        .expect("a write reply carries a consistency token")
        .to_owned()
}

#[tokio::test]
async fn a_read_with_the_token_of_a_create_finds_it_every_time() {
    let cluster = Cluster::start_replicated();
    let create = writer(&cluster, CREATE).await;
    let get = reader(&cluster, false).await;

    let mut not_found = 0;
    let started = Instant::now();
    for roll in 1..=1000 {
        let created = create
            .create(json!({"roll_number": roll, "exam_year": 2024, "marks": roll % 101}))
            .await;
        assert_eq!(created.status, 201);
        let read = get_with(&get, roll, Some(&token_of(&created))).await;
        match read.status {
            200 => assert_eq!(read.body["marks"], roll % 101),
            404 => not_found += 1,
            other => panic!("read {roll} answered {other}: {}", read.body),
        }
    }
    println!("1000 create-then-read pairs in {:?}", started.elapsed());
    assert_eq!(not_found, 0);
}

/// With replay paused the outcome no longer depends on timing.
async fn pause_replay(cluster: &Cluster) -> tokio_postgres::Client {
    let replica = cluster.direct_replica().await;
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    replica
}

#[tokio::test]
async fn a_read_whose_write_is_not_replayed_goes_to_the_fallback_or_answers_503() {
    let cluster = Cluster::start_replicated();
    let create = writer(&cluster, CREATE).await;
    let replica_only = reader(&cluster, false).await;
    let with_fallback = reader(&cluster, true).await;
    let replica = pause_replay(&cluster).await;

    let created = create
        .create(json!({"roll_number": 7, "exam_year": 2024, "marks": 70}))
        .await;
    let token = token_of(&created);

    // Without the token the replica answers as it stands: the write is missing.
    assert_eq!(get_with(&replica_only, 7, None).await.status, 404);
    // With it: the primary, when the function has it as its fallback ...
    let read = get_with(&with_fallback, 7, Some(&token)).await;
    assert_eq!((read.status, read.body["marks"].clone()), (200, json!(70)));
    // ... otherwise a 503 after a short, bounded wait.
    let started = Instant::now();
    let read = get_with(&replica_only, 7, Some(&token)).await;
    assert_eq!((read.status, read.error_code()), (503, "replica_lagging"));
    assert_eq!(read.header("retry-after"), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(2));

    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    let read = get_with(&replica_only, 7, Some(&token)).await;
    assert_eq!(read.status, 200);
}

#[tokio::test]
async fn a_read_with_the_token_of_an_update_or_delete_sees_it() {
    let cluster = Cluster::start_replicated();
    let create = writer(&cluster, CREATE).await;
    let update = writer(&cluster, UPDATE).await;
    let delete = writer(&cluster, DELETE).await;
    let get = reader(&cluster, false).await;
    let created = create
        .create(json!({"roll_number": 9, "exam_year": 2024, "marks": 10}))
        .await;
    assert_eq!(
        get_with(&get, 9, Some(&token_of(&created))).await.status,
        200
    );

    for marks in 11..=60 {
        let updated = update.put_marks(2024, 9, json!(marks)).await;
        let read = get_with(&get, 9, Some(&token_of(&updated))).await;
        assert_eq!(read.body["marks"], marks);
    }
    let deleted = delete.delete(2024, 9).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        get_with(&get, 9, Some(&token_of(&deleted))).await.status,
        404
    );
}

#[tokio::test]
async fn a_token_the_service_did_not_issue_is_a_bad_request() {
    let cluster = Cluster::start_replicated();
    let get = reader(&cluster, false).await;
    for token in ["yesterday", "1/2/3", "G/0", "", "123456789/0"] {
        let read = get_with(&get, 1, Some(token)).await;
        assert_eq!(
            (read.status, read.error_code()),
            (400, "bad_request"),
            "{token:?}"
        );
    }
}
