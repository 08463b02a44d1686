//! What a hostile client or a crowd can do to one process: stalled
//! connections are closed within their timeouts, the connection cap refuses
//! new connections while the open ones keep being served, request targets
//! that are not paths get a JSON 400, and public routes are rate-limited per
//! client. All over raw TCP against the real functions.

use std::time::Duration;

use crate::raw::{exchange, RawConn};
use crate::support::{shared_cluster, spawn_with, Spawn, TestApp, GET, TOKEN, UPDATE};
use exam_results::server::Function;

const IDLE_MS: u64 = 1000;
const HEADER_MS: u64 = 500;
const BODY_MS: u64 = 500;

/// A function with short timeouts, so each stall is seen closing.
async fn spawn_strict(function: Function, extra: &[(&'static str, &str)]) -> TestApp {
    let cluster = shared_cluster();
    let mut extra_env = vec![
        ("HTTP_IDLE_TIMEOUT_MS", IDLE_MS.to_string()),
        ("HTTP_HEADER_READ_TIMEOUT_MS", HEADER_MS.to_string()),
        ("HTTP_BODY_READ_TIMEOUT_MS", BODY_MS.to_string()),
    ];
    extra_env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    spawn_with(
        function,
        Spawn {
            cluster,
            database: cluster.fresh_database().await,
            extra_env,
        },
    )
    .await
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Waits for the server to close `conn`: no earlier than most of `timeout`
/// and no later than a second after it.
async fn assert_closed_near(conn: &mut RawConn, timeout: u64, what: &str) {
    let took = conn
        .closed_within(ms(timeout + 2000))
        .await
        .unwrap_or_else(|| panic!("{what}: still open after {timeout} ms + 2 s"));
    assert!(
        took >= ms(timeout * 8 / 10) && took <= ms(timeout + 1000),
        "{what}: closed after {took:?}, timeout {timeout} ms"
    );
    eprintln!("{what}: closed after {took:?} (timeout {timeout} ms)");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let app = spawn_strict(GET, &[]).await;
    let mut silent = RawConn::open(app.address).await;
    assert_closed_near(&mut silent, IDLE_MS, "silent connection").await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_strict(GET, &[]).await;
    let mut conn = RawConn::open(app.address).await;
    conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let reply = conn.response(ms(2000), false).await.expect("a response");
    assert_eq!(reply.status, 200);
    assert_closed_near(&mut conn, IDLE_MS, "idle keep-alive connection").await;
}

#[tokio::test]
async fn unfinished_headers_are_closed_after_the_header_timeout() {
    let app = spawn_strict(GET, &[]).await;
    let mut conn = RawConn::open(app.address).await;
    conn.send(b"GET /results/2024/1 HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await;
    assert_closed_near(&mut conn, HEADER_MS, "unfinished headers").await;
}

#[tokio::test]
async fn a_header_dripped_a_byte_at_a_time_does_not_extend_the_header_timeout() {
    let app = spawn_strict(GET, &[]).await;
    let mut conn = RawConn::open(app.address).await;
    conn.send(b"GET /healthz HTTP/1.1\r\n").await;
    let started = std::time::Instant::now();
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(ms(50)).await;
        if conn.stream.try_write(b"x").is_err() {
            closed = true;
            break;
        }
    }
    let left = conn.closed_within(ms(2000)).await;
    assert!(closed || left.is_some(), "still open after dripping");
    assert!(
        started.elapsed() < ms(HEADER_MS + 1500),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_authorized_put_whose_body_never_arrives_gets_a_400_within_the_body_timeout() {
    let app = spawn_strict(UPDATE, &[]).await;
    let mut conn = RawConn::open(app.address).await;
    let started = std::time::Instant::now();
    conn.send(
        format!(
            "PUT /results/2024/1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: 20\r\n\r\n{{\"ma"
        )
        .as_bytes(),
    )
    .await;
    let reply = conn
        .response(ms(BODY_MS + 2000), false)
        .await
        .expect("a response");
    let took = started.elapsed();
    assert_eq!(
        (reply.status, reply.error_code().as_deref()),
        (400, Some("bad_request"))
    );
    assert!(reply.header("x-request-id").is_some());
    assert!(
        took >= ms(BODY_MS * 8 / 10) && took <= ms(BODY_MS + 1000),
        "answered after {took:?}"
    );
    eprintln!("stalled body: answered 400 after {took:?} (timeout {BODY_MS} ms)");
    assert!(
        conn.closed_within(ms(1000)).await.is_some(),
        "the connection is closed after a stalled body"
    );
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_are_refused_and_open_ones_still_answer() {
    let app = spawn_strict(GET, &[("HTTP_MAX_CONNECTIONS", "4")]).await;
    app.insert_rows(shared_cluster(), &[(7, 2024, 77)]).await;
    // One keep-alive client in, then three slow ones fill the cap.
    let mut kept = RawConn::open(app.address).await;
    kept.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(kept.response(ms(2000), false).await.unwrap().status, 200);
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut conn = RawConn::open(app.address).await;
        conn.send(b"GET /results/2024/7 HTTP/1.1\r\n").await;
        slow.push(conn);
    }
    tokio::time::sleep(ms(100)).await;

    let started = std::time::Instant::now();
    let refused = exchange(
        app.address,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
        ms(2000),
    )
    .await
    .expect("a refusal, not a hang");
    assert_eq!(
        (refused.status, refused.error_code().as_deref()),
        (503, Some("overloaded"))
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < ms(500),
        "refused after {:?}",
        started.elapsed()
    );

    // The connection already in keeps being served, probes and reads alike.
    kept.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(kept.response(ms(2000), false).await.unwrap().status, 200);
    kept.send(b"GET /results/2024/7 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let read = kept.response(ms(2000), false).await.unwrap();
    assert_eq!(
        (read.status, read.json().unwrap()["marks"].as_i64()),
        (200, Some(77))
    );

    // Once the slow ones time out, there is room again.
    for conn in &mut slow {
        assert!(conn.closed_within(ms(HEADER_MS + 2000)).await.is_some());
    }
    tokio::time::sleep(ms(100)).await;
    let later = exchange(
        app.address,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
        ms(2000),
    )
    .await
    .unwrap();
    assert_eq!(later.status, 200);
}

#[tokio::test]
async fn connect_and_asterisk_targets_get_a_json_400_and_the_connection_survives() {
    let app = spawn_strict(GET, &[]).await;
    for request in [
        &b"CONNECT 127.0.0.1:8082 HTTP/1.1\r\nhost: 127.0.0.1:8082\r\n\r\n"[..],
        b"OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n",
        b"CONNECT example.org:443 HTTP/1.1\r\n\r\n",
    ] {
        let mut conn = RawConn::open(app.address).await;
        conn.send(request).await;
        let reply = conn
            .response(ms(2000), false)
            .await
            .unwrap_or_else(|| panic!("no response to {}", String::from_utf8_lossy(request)));
        assert_eq!(
            (reply.status, reply.error_code().as_deref()),
            (400, Some("bad_request")),
            "{}",
            String::from_utf8_lossy(request)
        );
        assert!(reply.header("x-request-id").is_some());
        // Same connection, next request: nothing panicked.
        conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert_eq!(conn.response(ms(2000), false).await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    let app = spawn_strict(
        GET,
        &[
            ("RATE_LIMIT_PER_SECOND", "1"),
            ("RATE_LIMIT_BURST", "3"),
            ("RATE_LIMIT_CLIENT_HEADER", "x-forwarded-for"),
        ],
    )
    .await;
    app.insert_rows(shared_cluster(), &[(9, 2024, 90)]).await;
    let get = |client: &'static str| {
        format!("GET /results/2024/9 HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 198.51.100.1, {client}\r\n\r\n")
    };
    let mut conn = RawConn::open(app.address).await;
    for _ in 0..3 {
        conn.send(get("203.0.113.5").as_bytes()).await;
        assert_eq!(conn.response(ms(2000), false).await.unwrap().status, 200);
    }
    conn.send(get("203.0.113.5").as_bytes()).await;
    let limited = conn.response(ms(2000), false).await.unwrap();
    assert_eq!(
        (limited.status, limited.error_code().as_deref()),
        (429, Some("rate_limited"))
    );
    assert_eq!(limited.header("retry-after"), Some("1"));
    // The probes are never limited; another client has its own bucket.
    conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 203.0.113.5\r\n\r\n")
        .await;
    assert_eq!(conn.response(ms(2000), false).await.unwrap().status, 200);
    conn.send(get("203.0.113.6").as_bytes()).await;
    assert_eq!(conn.response(ms(2000), false).await.unwrap().status, 200);
    // The bucket refills (a new connection: this one is idle past its timeout by then).
    tokio::time::sleep(ms(1100)).await;
    let again = exchange(app.address, get("203.0.113.5").as_bytes(), ms(2000)).await;
    assert_eq!(again.unwrap().status, 200);
}

#[tokio::test]
async fn write_functions_are_not_rate_limited() {
    let app = spawn_strict(
        UPDATE,
        &[("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "1")],
    )
    .await;
    let mut conn = RawConn::open(app.address).await;
    for _ in 0..5 {
        conn.send(b"PUT /results/2024/1 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            .await;
        assert_eq!(conn.response(ms(2000), false).await.unwrap().status, 401);
    }
}

#[test]
fn the_limits_table_matches_the_configuration_defaults() {
    use exam_results::config::{Auth, Config};
    let doc = std::fs::read_to_string(crate::support::repo_root().join("docs/serving-limits.md"))
        .unwrap();
    let config = Config::from_iter(
        [("DATABASE_URL".to_owned(), "postgres://a@b/c".to_owned())],
        Auth::Public,
    )
    .unwrap();
    let defaults = [
        (
            "HTTP_IDLE_TIMEOUT_MS",
            config.http_idle_timeout_ms.to_string(),
        ),
        (
            "HTTP_HEADER_READ_TIMEOUT_MS",
            config.http_header_read_timeout_ms.to_string(),
        ),
        (
            "HTTP_BODY_READ_TIMEOUT_MS",
            config.http_body_read_timeout_ms.to_string(),
        ),
        (
            "HTTP_MAX_CONNECTIONS",
            config.http_max_connections.to_string(),
        ),
        (
            "HTTP_MAX_HEADER_BYTES",
            config.http_max_header_bytes.to_string(),
        ),
        (
            "RATE_LIMIT_PER_SECOND",
            config.rate_limit_per_second.to_string(),
        ),
        ("RATE_LIMIT_BURST", config.rate_limit_burst.to_string()),
        (
            "RATE_LIMIT_CLIENT_HEADER",
            config
                .rate_limit_client_header
                .clone()
                .unwrap_or_else(|| "unset".into()),
        ),
        (
            "RATE_LIMIT_TRUSTED_HOPS",
            config.rate_limit_trusted_hops.to_string(),
        ),
    ];
    let rows: Vec<(String, String)> = doc
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_owned(), cells.get(2)?.to_string()))
        })
        .filter(|(name, _)| name.starts_with("HTTP_") || name.starts_with("RATE_LIMIT_"))
        .collect();
    let expected: Vec<(String, String)> = defaults
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    assert_eq!(
        rows, expected,
        "docs/serving-limits.md's table vs config.rs"
    );
}

#[tokio::test]
async fn refusals_timeouts_malformed_requests_and_429s_are_counted() {
    let handle = exam_results::telemetry::init_metrics("test-suite");
    let app = spawn_strict(
        GET,
        &[
            ("HTTP_MAX_CONNECTIONS", "2"),
            ("RATE_LIMIT_PER_SECOND", "1"),
            ("RATE_LIMIT_BURST", "1"),
        ],
    )
    .await;
    let malformed = exchange(app.address, b"hello\r\n\r\n", ms(2000))
        .await
        .unwrap();
    assert_eq!(malformed.error_code().as_deref(), Some("bad_request"));
    let mut limited = None;
    for _ in 0..2 {
        limited = exchange(
            app.address,
            b"GET /results/2024/1 HTTP/1.1\r\n\r\n",
            ms(2000),
        )
        .await;
    }
    assert_eq!(limited.unwrap().status, 429);
    let mut silent = vec![
        RawConn::open(app.address).await,
        RawConn::open(app.address).await,
    ];
    tokio::time::sleep(ms(100)).await;
    let refused = exchange(app.address, b"GET /healthz HTTP/1.1\r\n\r\n", ms(2000)).await;
    assert_eq!(refused.unwrap().status, 503);
    for conn in &mut silent {
        assert!(conn.closed_within(ms(IDLE_MS + 2000)).await.is_some());
    }
    tokio::time::sleep(ms(100)).await;

    let text = handle.render();
    for (metric, label) in [
        (
            "exam_results_http_connection_errors_total",
            "kind=\"malformed_request\"",
        ),
        (
            "exam_results_http_connection_errors_total",
            "kind=\"idle_timeout\"",
        ),
        ("exam_results_http_connections_refused_total", ""),
        ("exam_results_errors_total", "code=\"rate_limited\""),
        ("exam_results_errors_total", "code=\"overloaded\""),
    ] {
        let counted = text.lines().any(|line| {
            line.starts_with(&format!("{metric}{{"))
                && line.contains(label)
                && line
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 1.0)
        });
        assert!(counted, "{metric} {label} not counted in:\n{text}");
    }
}

fn panicking_routes(
    _: exam_results::AppState,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    use warp::Filter;
    warp::path!("boom")
        .map(|| -> warp::reply::Response { panic!("a handler bug") })
        .boxed()
}

#[tokio::test]
async fn a_panicking_handler_gets_a_json_500_and_the_connection_survives() {
    let app = spawn_strict(
        Function {
            name: "panics",
            access: exam_results::Access::Write,
            auth: exam_results::config::Auth::WriteToken,
            method: &warp::http::Method::GET,
            route: exam_results::route::Route::new("/boom"),
            routes: panicking_routes,
        },
        &[],
    )
    .await;
    let mut conn = RawConn::open(app.address).await;
    conn.send(b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let reply = conn.response(ms(2000), false).await.expect("a response");
    assert_eq!(
        (reply.status, reply.error_code().as_deref()),
        (500, Some("internal_error"))
    );
    assert!(reply.header("x-request-id").is_some());
    conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(conn.response(ms(2000), false).await.unwrap().status, 200);
}
