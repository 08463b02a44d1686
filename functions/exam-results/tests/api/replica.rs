//! Read functions against a real streaming replica: lag and outages.

use std::time::{Duration, Instant};

use crate::support::{spawn_with, Cluster, Spawn, TestApp, GET, REPLICATED_DB};

/// The replica through PgBouncer, with the read functions' read-only role.
pub(crate) fn ro_url(cluster: &Cluster) -> String {
    cluster.reader_url(&format!("{REPLICATED_DB}_ro"))
}

/// The primary fallback: the same read-only role.
pub(crate) fn primary_url(cluster: &Cluster) -> String {
    cluster.reader_url(REPLICATED_DB)
}

async fn reader(cluster: &Cluster, fallback: bool) -> TestApp {
    reader_with_limit(cluster, fallback, 1).await
}

pub(crate) async fn reader_with_limit(
    cluster: &Cluster,
    fallback: bool,
    max_lag_seconds: u32,
) -> TestApp {
    let mut env = vec![
        ("DATABASE_URL", ro_url(cluster)),
        ("MAX_REPLICA_LAG_SECONDS", max_lag_seconds.to_string()),
    ];
    if fallback {
        env.push(("READ_FALLBACK_DATABASE_URL", primary_url(cluster)));
    }
    spawn_with(
        GET,
        Spawn {
            cluster,
            database: REPLICATED_DB.into(),
            extra_env: env,
        },
    )
    .await
}

async fn write_on_primary(cluster: &Cluster, sql: &str) {
    cluster
        .direct(REPLICATED_DB)
        .await
        .batch_execute(sql)
        .await
        .unwrap();
}

/// Waits until `check` holds, polling; panics with `what` after 15 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the replica's WAL receiver is connected and streaming.
async fn streaming(replica: &tokio_postgres::Client) -> bool {
    replica
        .query_opt(
            "SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'",
            &[],
        )
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_write_on_the_primary_is_served_by_the_replica_once_replayed() {
    let cluster = Cluster::start_replicated();
    let app = reader(&cluster, false).await;
    write_on_primary(&cluster, "INSERT INTO student_results VALUES (1, 64, 2024)").await;
    eventually("the replica serves the new row", || async {
        app.get(2024, 1).await.status == 200
    })
    .await;
    assert_eq!(app.get(2024, 1).await.body["marks"], 64);
}

#[tokio::test]
async fn a_replica_whose_replay_is_paused_answers_503_replica_lagging_until_it_catches_up() {
    let cluster = Cluster::start_replicated();
    let app = reader(&cluster, false).await;
    write_on_primary(&cluster, "INSERT INTO student_results VALUES (1, 10, 2024)").await;
    eventually("replicated", || async {
        app.get(2024, 1).await.status == 200
    })
    .await;

    let replica = cluster.direct_replica().await;
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    write_on_primary(
        &cluster,
        "UPDATE student_results SET marks = 11 WHERE roll_number = 1",
    )
    .await;

    eventually("reads answer 503 replica_lagging", || async {
        let reply = app.get(2024, 1).await;
        reply.status == 503
            && reply.error_code() == "replica_lagging"
            && reply.header("retry-after") == Some("1")
    })
    .await;

    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    eventually("reads recover with the new marks", || async {
        let reply = app.get(2024, 1).await;
        reply.status == 200 && reply.body["marks"] == 11
    })
    .await;
}

#[tokio::test]
async fn a_long_transaction_on_the_primary_does_not_count_as_lag_while_the_replica_keeps_up() {
    let cluster = Cluster::start_replicated();
    let app = reader_with_limit(&cluster, false, 3).await;
    write_on_primary(&cluster, "INSERT INTO student_results VALUES (1, 10, 2024)").await;
    eventually("replicated", || async {
        app.get(2024, 1).await.status == 200
    })
    .await;

    // Six seconds of WAL in one transaction (a bulk load): no commit to replay,
    // so the age of the last replayed commit passes the 3 s limit.
    let primary = cluster.direct(REPLICATED_DB).await;
    let load = tokio::spawn(async move {
        primary
            .batch_execute(
                "DO $$ DECLARE t0 timestamptz := clock_timestamp(); i int := 0; BEGIN \
                 WHILE clock_timestamp() < t0 + interval '6 seconds' LOOP \
                 INSERT INTO student_results SELECT n, 50, 2023 FROM generate_series(i * 1000 + 1, i * 1000 + 1000) n; \
                 i := i + 1; END LOOP; END $$",
            )
            .await
    });
    let mut statuses = Vec::new();
    while !load.is_finished() {
        statuses.push(app.get(2024, 1).await.status);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    load.await.unwrap().unwrap();

    assert!(
        statuses.len() >= 15,
        "the load was too short to tell: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200),
        "reads were refused during the load: {statuses:?}"
    );
}

#[tokio::test]
async fn a_fresh_replica_that_has_replayed_nothing_yet_still_counts_as_lagging() {
    // The replica was cloned after the schema was created, so it has never
    // replayed a commit: it has no replay timestamp to measure lag from.
    let cluster = Cluster::start_replicated();
    let replica = cluster.direct_replica().await;
    // A replica accepts connections once it is consistent, which can be
    // before it has replayed the rest of its cloned WAL and started its WAL
    // receiver. Paused in that window it would never receive the write below
    // (nothing received, nothing to replay: no lag to see), so pause only
    // once it streams from the primary.
    eventually("the replica streams from the primary", || async {
        streaming(&replica).await
    })
    .await;
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let app = reader(&cluster, false).await;
    write_on_primary(&cluster, "INSERT INTO student_results VALUES (1, 10, 2024)").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    eventually("reads answer 503 replica_lagging", || async {
        app.get(2024, 1).await.error_code() == "replica_lagging"
    })
    .await;
    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
}

#[tokio::test]
async fn with_a_fallback_a_lagging_replica_is_bypassed_and_reads_see_the_primary() {
    let cluster = Cluster::start_replicated();
    let app = reader(&cluster, true).await;
    let replica = cluster.direct_replica().await;
    write_on_primary(&cluster, "INSERT INTO student_results VALUES (1, 10, 2024)").await;
    eventually("replicated", || async {
        app.get(2024, 1).await.status == 200
    })
    .await;
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    write_on_primary(&cluster, "INSERT INTO student_results VALUES (2, 20, 2024)").await;

    // The replica cannot have row 2; a 200 proves the read went to the primary.
    eventually("row 2 is served from the primary", || async {
        app.get(2024, 2).await.status == 200
    })
    .await;
    let on_replica = replica
        .query_opt("SELECT 1 FROM student_results WHERE roll_number = 2", &[])
        .await
        .unwrap();
    assert!(on_replica.is_none(), "the replica should still be paused");
    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stopped_replica_gives_503_without_a_fallback_and_200_with_one() {
    let cluster = Cluster::start_replicated();
    let plain = reader(&cluster, false).await;
    let with_fallback = reader(&cluster, true).await;
    write_on_primary(&cluster, "INSERT INTO student_results VALUES (1, 10, 2024)").await;
    eventually("replicated", || async {
        plain.get(2024, 1).await.status == 200
    })
    .await;

    cluster.stop_replica();

    let reply = plain.get(2024, 1).await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (503, "database_unavailable")
    );
    assert_eq!(
        plain
            .send(plain.client.get(plain.url("/healthz")))
            .await
            .status,
        200,
        "stays alive"
    );
    let reply = with_fallback.get(2024, 1).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ready = plain.send(plain.client.get(plain.url("/readyz"))).await;
    assert_eq!(ready.status, 503, "no database to serve from");
    let ready = with_fallback
        .send(with_fallback.client.get(with_fallback.url("/readyz")))
        .await;
    assert_eq!(ready.status, 200, "the primary can serve its reads");

    cluster.start_replica();
    eventually("the replica serves again", || async {
        plain.get(2024, 1).await.status == 200
    })
    .await;
}
