use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    free_port, shared_cluster, spawn, spawn_with, Cluster, Spawn, TestApp, GET, TOKEN, UPDATE,
};

#[tokio::test]
async fn a_stopped_database_gives_503_and_the_same_process_recovers_when_it_returns() {
    let (cluster, _, app) = get_result_on_its_own_cluster(vec![]).await;

    cluster.stop_postgres();
    let started = Instant::now();
    let down = app.get(2024, 1).await;
    assert_eq!(
        (down.status, down.error_code()),
        (503, "database_unavailable")
    );
    assert_eq!(down.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failing took {:?}",
        started.elapsed()
    );
    let ready = app.send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(ready.status, 503);
    let alive = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(
        alive.status, 200,
        "liveness must not depend on the database"
    );

    cluster.start_postgres();
    reads_again(&app, Duration::from_secs(20), "the database came back").await;
    assert_eq!(
        app.send(app.client.get(app.url("/readyz"))).await.status,
        200
    );
}

/// get-result with `extra_env` on a cluster of its own (the test stops or
/// breaks it), serving result 2024/1 with marks 70.
async fn get_result_on_its_own_cluster(
    extra_env: Vec<(&'static str, String)>,
) -> (Cluster, String, TestApp) {
    let cluster = Cluster::start();
    let database = cluster.fresh_database().await;
    let app = spawn_with(
        GET,
        Spawn {
            cluster: &cluster,
            database: database.clone(),
            extra_env,
        },
    )
    .await;
    app.insert_rows(&cluster, &[(1, 2024, 70)]).await;
    assert_eq!(app.get(2024, 1).await.status, 200);
    (cluster, database, app)
}

/// Reads result 2024/1 (marks 70) until it is served again, allowing only
/// 503s meanwhile; panics after `within`. Returns how long it took.
async fn reads_again(app: &TestApp, within: Duration, after: &str) -> Duration {
    let started = Instant::now();
    loop {
        let reply = app.get(2024, 1).await;
        if reply.status == 200 {
            assert_eq!(reply.body["marks"], 70);
            return started.elapsed();
        }
        assert_eq!(reply.status, 503, "only 503s while recovering");
        assert!(
            started.elapsed() < within,
            "did not recover within {within:?} after {after}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Holds the row's lock in another transaction so a write waits in flight.
async fn lock_row(database: &str, roll: i64) -> tokio_postgres::Client {
    let locker = shared_cluster().direct(database).await;
    locker.batch_execute("BEGIN").await.unwrap();
    locker
        .execute(
            "SELECT 1 FROM student_results WHERE exam_year = 2024 AND roll_number = $1 FOR UPDATE",
            &[&roll],
        )
        .await
        .unwrap();
    locker
}

#[tokio::test]
async fn shutdown_stops_accepting_but_finishes_the_request_in_flight() {
    let mut app = spawn(UPDATE).await;
    app.insert_rows(shared_cluster(), &[(5, 2024, 10)]).await;
    let locker = lock_row(&app.database, 5).await;

    let url = app.url("/results/2024/5");
    let request = app
        .authed(app.client.put(&url))
        .json(&json!({"marks": 99}))
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let server = app.server.take().unwrap();
    let mut app_shutdown = app;
    let stopping = tokio::spawn(async move { app_shutdown.shut_down().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The listener is closed: new connections are refused.
    let refused = tokio::net::TcpStream::connect(
        url.trim_start_matches("http://").split('/').next().unwrap(),
    )
    .await;
    assert!(
        refused.is_err(),
        "a new connection was accepted during shutdown"
    );

    locker.batch_execute("COMMIT").await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completed");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["marks"],
        99
    );
    stopping.await.unwrap().unwrap();
    server.await.unwrap();
}

fn function_binary(name: &str) -> PathBuf {
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let binary = profile_dir.join(name);
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", name])
            .status()
            .unwrap();
        assert!(status.success(), "building {name} failed");
    }
    binary
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_complete_and_exits_zero() {
    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    let client = cluster.direct(&database).await;
    client
        .execute("INSERT INTO student_results VALUES (6, 10, 2024)", &[])
        .await
        .unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let child = Command::new(function_binary("update-result"))
        .env_clear()
        .env("PORT", port.to_string())
        .env("METRICS_PORT", metrics_port.to_string())
        .env("BIND_ADDRESS", "127.0.0.1")
        .env("DATABASE_URL", cluster.pooled_url(&database))
        .env("WRITE_TOKENS", TOKEN)
        .env("SHUTDOWN_DRAIN_SECONDS", "10")
        .env("DATABASE_STATEMENT_TIMEOUT_MS", "5000")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "update-result did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let locker = lock_row(&database, 6).await;

    let in_flight = tokio::spawn(
        http.put(format!("{base}/results/2024/6"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .json(&json!({"marks": 77}))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    locker.batch_execute("COMMIT").await.unwrap();

    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completed after SIGTERM");
    assert_eq!(response.status(), 200);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    // Every log line reached stdout before exit, one JSON object per line.
    let logs: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each log line is JSON"))
        .collect();
    let put = logs
        .iter()
        .find(|l| l["message"] == "request" && l["method"] == "PUT")
        .expect("the request's log line");
    assert_eq!(put["status"], 200);
    assert_eq!(put["function"], "update-result");
    assert_eq!(put["route"], "/results/{exam_year}/{roll_number}");
    assert!(put["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(put["latency_ms"].as_f64().is_some());
    assert_eq!(logs.last().unwrap()["message"], "stopped");
    let marks: i32 = client
        .query_one(
            "SELECT marks FROM student_results WHERE roll_number = 6",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(marks, 77);
}

#[test]
fn a_missing_variable_stops_the_binary_with_one_line_naming_it() {
    let output = Command::new(function_binary("get-result"))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A pooler that accepts connections and then says nothing (PgBouncer holding
/// logins while it cannot reach PostgreSQL, a half-open socket, a wedged
/// proxy) must not wedge the function's pool: every connection attempt,
/// login included, gives up after `DATABASE_CONNECT_TIMEOUT_MS`, so once the
/// pooler answers again the same process recovers. Between the test's client
/// and PgBouncer sits a proxy that first holds every connection open without
/// a byte and then forwards.
#[tokio::test]
async fn a_pooler_that_accepts_but_never_answers_the_login_does_not_wedge_the_pool() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let forwarding = Arc::new(AtomicBool::new(false));
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let bouncer = format!("127.0.0.1:{}", cluster.bouncer_port);
    {
        let (forwarding, held) = (forwarding.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = proxy.accept().await {
                if !forwarding.load(Ordering::SeqCst) {
                    // Accepted, then silence: the login never completes.
                    held.lock().unwrap().push(client);
                    continue;
                }
                let bouncer = bouncer.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(bouncer).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }
    let url = cluster.pooled_url_as("exam_reader", &database).replace(
        &format!(":{}/", cluster.bouncer_port),
        &format!(":{proxy_port}/"),
    );
    let app = spawn_with(
        GET,
        Spawn {
            cluster,
            database: database.clone(),
            extra_env: vec![
                ("DATABASE_URL", url),
                ("DATABASE_POOL_SIZE", "2".into()),
                ("DATABASE_CONNECT_TIMEOUT_MS", "500".into()),
                ("DATABASE_POOL_TIMEOUT_MS", "500".into()),
            ],
        },
    )
    .await;
    app.insert_rows(cluster, &[(1, 2024, 70)]).await;

    // Enough requests to start a connection attempt for every slot of the pool.
    for _ in 0..4 {
        let reply = app.get(2024, 1).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (503, "database_unavailable")
        );
    }
    assert!(
        !held.lock().unwrap().is_empty(),
        "the function tried to connect"
    );

    forwarding.store(true, Ordering::SeqCst);
    let took = reads_again(&app, Duration::from_secs(10), "the pooler answered again").await;
    println!(
        "recovered {took:?} after the pooler answered again ({} connections held silent)",
        held.lock().unwrap().len()
    );
}

/// A statement stopped at the statement timeout is cancelled through
/// PgBouncer, and that must not take PgBouncer down. PgBouncer 1.18 exits
/// (`FATAL ... disconnect_client(): bad client state: 0`, pgbouncer/pgbouncer
/// issue 801) when the client of a cancel request hangs up before PgBouncer
/// has passed the request on, which is what a client that closes its cancel
/// socket right after writing does. Here a lock held on the table makes each
/// read wait past a 300 ms statement timeout; after every round PgBouncer must
/// still run, and at the end the same process reads again.
#[tokio::test]
async fn statements_cancelled_at_the_timeout_leave_pgbouncer_running() {
    let (cluster, database, app) =
        get_result_on_its_own_cluster(vec![("DATABASE_STATEMENT_TIMEOUT_MS", "300".into())]).await;

    let locker = cluster.direct(&database).await;
    for round in 1..=5 {
        locker
            .batch_execute("BEGIN; LOCK TABLE student_results IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        let reply = app.get(2024, 1).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (503, "database_unavailable"),
            "round {round}"
        );
        // The cancel runs in the background: give it time to pass through PgBouncer.
        tokio::time::sleep(Duration::from_millis(500)).await;
        locker.batch_execute("ROLLBACK").await.unwrap();
        assert!(
            cluster.pgbouncer_running(),
            "PgBouncer exited in round {round}; its log ends:\n{}",
            cluster.log_tail("pgbouncer/pgbouncer.log", 12)
        );
    }
    let reply = app.get(2024, 1).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}
