use std::time::Duration;

use exam_results::server::serve_metrics;
use exam_results::telemetry::init_metrics;

use crate::support::{shared_cluster, spawn, GET};

#[tokio::test]
async fn metrics_are_served_on_their_own_port_with_a_real_histogram() {
    let app = spawn(GET).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 1)]).await;
    let handle = init_metrics("test-suite");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    let state = exam_results::AppState::from_config(
        &exam_results::Config::from_iter(
            [(
                "DATABASE_URL".to_string(),
                shared_cluster().reader_url(&app.database),
            )],
            exam_results::Auth::Public,
        )
        .unwrap(),
    );
    tokio::spawn(serve_metrics(
        listener,
        handle,
        state,
        std::future::pending(),
    ));

    assert_eq!(app.get(2024, 1).await.status, 200);
    assert_eq!(app.get(2024, 2).await.status, 404);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let bucket = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_bucket{")
                && l.contains("http_route=\"/results/{exam_year}/{roll_number}\"")
                && l.contains("http_response_status_code=\"404\"")
                && l.contains("le=\"+Inf\"")
        })
        .unwrap_or_else(|| panic!("no histogram bucket in:\n{text}"));
    assert!(bucket.contains("function=\"test-suite\""), "{bucket}");
    assert!(bucket.contains("http_request_method=\"GET\""), "{bucket}");
    assert!(
        text.contains("exam_results_db_query_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains("exam_results_errors_total{") && text.contains("code=\"not_found\""),
        "{text}"
    );
    assert!(
        text.contains("exam_results_db_pool_max_connections"),
        "{text}"
    );
    assert!(text.contains("exam_results_build_info{"), "{text}");
    assert!(
        !text.contains("quantile="),
        "durations must be histograms, not summaries"
    );

    // The public port never serves metrics.
    assert_eq!(
        app.send(app.client.get(app.url("/metrics"))).await.status,
        404
    );
}
