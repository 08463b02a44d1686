//! Idempotency keys: a write retried with its key runs once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::conditional::stored_marks;
use crate::support::{
    repo_root, shared_cluster, spawn, spawn_with, Reply, Spawn, TestApp, CREATE, DELETE, UPDATE,
};

const KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";

async fn create_with(app: &TestApp, key: &str, body: Value) -> Reply {
    app.send(
        app.authed(app.client.post(app.url("/results")))
            .header(KEY, key)
            .json(&body),
    )
    .await
}

async fn put_with(app: &TestApp, key: &str, roll: i64, marks: i32) -> Reply {
    app.send(
        app.authed(app.client.put(app.url(&format!("/results/2024/{roll}"))))
            .header(KEY, key)
            .json(&json!({ "marks": marks })),
    )
    .await
}

async fn delete_with(app: &TestApp, key: &str, roll: i64) -> Reply {
    app.send(
        app.authed(app.client.delete(app.url(&format!("/results/2024/{roll}"))))
            .header(KEY, key),
    )
    .await
}

fn result(roll: i64, marks: i32) -> Value {
    json!({"roll_number": roll, "exam_year": 2024, "marks": marks})
}

#[tokio::test]
async fn a_create_retried_with_its_key_returns_the_first_response_without_running_again() {
    let app = spawn(CREATE).await;

    let first = create_with(&app, "create-1", result(1, 50)).await;
    let retry = create_with(&app, "create-1", result(1, 50)).await;

    assert_eq!(first.status, 201);
    assert_eq!(first.header(REPLAYED), None);
    // Without the key this retry is a 409 `conflict`.
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header(REPLAYED), Some("true"));
    assert_eq!(retry.body, first.body);
    for header in ["etag", "location", "content-type"] {
        assert_eq!(retry.header(header), first.header(header), "{header}");
    }
    assert!(retry.header("x-consistency-token").is_some());
    assert_eq!(app.row_count(shared_cluster()).await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_refused_with_422() {
    let app = spawn(CREATE).await;
    assert_eq!(create_with(&app, "k", result(1, 50)).await.status, 201);

    for other in [result(1, 51), result(2, 50)] {
        let reply = create_with(&app, "k", other).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "idempotency_key_reused")
        );
    }
    assert_eq!(app.row_count(shared_cluster()).await, 1);
    assert_eq!(stored_marks(&app, 1).await, Some(50));
}

#[tokio::test]
async fn a_key_is_one_request_across_the_functions() {
    let cluster = shared_cluster();
    let create = spawn(CREATE).await;
    let update = spawn_with(
        UPDATE,
        Spawn {
            cluster,
            database: create.database.clone(),
            extra_env: vec![],
        },
    )
    .await;
    assert_eq!(
        create_with(&create, "shared", result(1, 50)).await.status,
        201
    );
    let reply = put_with(&update, "shared", 1, 60).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (422, "idempotency_key_reused")
    );
}

#[tokio::test]
async fn a_retry_while_the_first_request_runs_is_409_in_progress() {
    let app = spawn(CREATE).await;
    // Another session holds the same roll number uncommitted: the first
    // request's insert waits on it, holding its key.
    let blocker = shared_cluster().direct(&app.database).await;
    blocker
        .batch_execute(
            "BEGIN; INSERT INTO student_results (roll_number, exam_year, marks) VALUES (1, 2024, 1)",
        )
        .await
        .unwrap();
    let first = {
        let app_url = app.url("/results");
        let client = app.client.clone();
        tokio::spawn(async move {
            client
                .post(app_url)
                .header("authorization", format!("Bearer {}", crate::support::TOKEN))
                .header(KEY, "slow")
                .json(&result(1, 50))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let retry = create_with(&app, "slow", result(1, 50)).await;
    assert_eq!(
        (retry.status, retry.error_code()),
        (409, "idempotency_key_in_progress")
    );
    assert_eq!(retry.header("retry-after"), Some("1"));

    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(first.await.unwrap(), 201);
    let replay = create_with(&app, "slow", result(1, 50)).await;
    assert_eq!(
        (replay.status, replay.header(REPLAYED)),
        (201, Some("true"))
    );
}

#[tokio::test]
async fn concurrent_retries_with_one_key_apply_the_write_once() {
    let app = spawn(CREATE).await;
    let replies =
        futures_util::future::join_all((0..20).map(|_| create_with(&app, "burst", result(5, 55))))
            .await;

    let fresh = replies
        .iter()
        .filter(|r| r.status == 201 && r.header(REPLAYED).is_none())
        .count();
    assert_eq!(fresh, 1);
    for reply in &replies {
        assert!(
            (reply.status == 201 && reply.body == result(5, 55))
                || (reply.status, reply.error_code()) == (409, "idempotency_key_in_progress"),
            "{} {}",
            reply.status,
            reply.body
        );
    }
    assert_eq!(app.row_count(shared_cluster()).await, 1);
}

#[tokio::test]
async fn an_update_replayed_does_not_overwrite_a_later_change() {
    let app = spawn(UPDATE).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    let first = put_with(&app, "fix-1", 1, 60).await;
    assert_eq!(first.status, 200);
    shared_cluster()
        .direct(&app.database)
        .await
        .batch_execute("UPDATE student_results SET marks = 70 WHERE roll_number = 1")
        .await
        .unwrap();

    let retry = put_with(&app, "fix-1", 1, 60).await;

    assert_eq!((retry.status, retry.header(REPLAYED)), (200, Some("true")));
    assert_eq!(retry.body["marks"], 60);
    assert_eq!(stored_marks(&app, 1).await, Some(70));
}

#[tokio::test]
async fn a_delete_retried_with_its_key_is_204_again_not_404() {
    let app = spawn(DELETE).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    assert_eq!(delete_with(&app, "rm-1", 1).await.status, 204);
    let retry = delete_with(&app, "rm-1", 1).await;
    assert_eq!((retry.status, retry.header(REPLAYED)), (204, Some("true")));
    // Without the key the same retry is a 404.
    assert_eq!(app.delete(2024, 1).await.status, 404);
}

#[tokio::test]
async fn a_refused_write_records_nothing_and_its_retry_is_judged_afresh() {
    let app = spawn(UPDATE).await;
    let absent = put_with(&app, "early", 1, 60).await;
    assert_eq!((absent.status, absent.error_code()), (404, "not_found"));
    app.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    let retry = put_with(&app, "early", 1, 60).await;
    assert_eq!((retry.status, retry.header(REPLAYED)), (200, None));

    let create = spawn_with(
        CREATE,
        Spawn {
            cluster: shared_cluster(),
            database: app.database.clone(),
            extra_env: vec![],
        },
    )
    .await;
    let conflict = create_with(&create, "dup", result(1, 10)).await;
    assert_eq!((conflict.status, conflict.error_code()), (409, "conflict"));
    let keys: i64 = shared_cluster()
        .direct(&app.database)
        .await
        .query_one(
            "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = 'dup'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys, 0);
}

#[tokio::test]
async fn a_malformed_key_is_a_bad_request() {
    let app = spawn(CREATE).await;
    for key in ["", "has space", &"k".repeat(256)] {
        let reply = create_with(&app, key, result(1, 50)).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, "bad_request"),
            "{key:?}"
        );
    }
    assert_eq!(app.row_count(shared_cluster()).await, 0);
}

#[tokio::test]
async fn an_expired_key_runs_again_and_the_upkeep_job_purges_it() {
    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    let app = spawn_with(
        CREATE,
        Spawn {
            cluster,
            database: database.clone(),
            extra_env: vec![("IDEMPOTENCY_KEY_TTL_SECONDS", "1".into())],
        },
    )
    .await;
    assert_eq!(create_with(&app, "short", result(1, 50)).await.status, 201);
    assert_eq!(
        create_with(&app, "short", result(2, 50)).await.error_code(),
        "idempotency_key_reused"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // Expired: the key is free again.
    let again = create_with(&app, "short", result(2, 50)).await;
    assert_eq!((again.status, again.header(REPLAYED)), (201, None));
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let output = std::process::Command::new(repo_root().join("sql/ops/partitions.sh"))
        .arg("purge-keys")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.pg_port.to_string())
        .env("PGUSER", "exam_owner")
        .env("PGPASSWORD", cluster.password("exam_owner"))
        .env("PGDATABASE", &database)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "purged 1 expired idempotency keys"
    );
    let left: i64 = cluster
        .direct(&database)
        .await
        .query_one("SELECT count(*) FROM idempotency_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}
