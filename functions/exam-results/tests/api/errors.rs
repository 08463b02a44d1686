use serde_json::json;

use crate::support::{spawn, CREATE, GET, LIST, TOKEN};

#[tokio::test]
async fn an_unknown_path_returns_a_json_404() {
    let app = spawn(GET).await;
    for path in ["/", "/results/2024", "/results/2024/1/extra", "/admin"] {
        let reply = app.send(app.client.get(app.url(path))).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (404, "not_found"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_function_does_not_answer_another_functions_route() {
    let getter = spawn(GET).await;
    let reply = getter
        .send(getter.client.get(getter.url("/results?exam_year=2024")))
        .await;
    assert_eq!(reply.status, 404, "get-result must not serve the listing");
    let lister = spawn(LIST).await;
    let reply = lister
        .send(lister.client.get(lister.url("/results/2024/1")))
        .await;
    assert_eq!(reply.status, 404, "list-results must not serve point reads");
}

#[tokio::test]
async fn a_wrong_method_on_a_known_path_returns_405_with_allow() {
    let app = spawn(GET).await;
    let reply = app
        .send(app.client.delete(app.url("/results/2024/1")))
        .await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (405, "method_not_allowed")
    );
    // Every method the path has across the functions, not only this one's.
    assert_eq!(reply.header("allow"), Some("GET, HEAD, PUT, DELETE"));

    let creator = spawn(CREATE).await;
    let reply = creator
        .send(creator.client.get(creator.url("/results")))
        .await;
    assert_eq!(
        (reply.status, reply.header("allow")),
        (405, Some("POST, GET, HEAD"))
    );
}

#[tokio::test]
async fn a_non_json_body_returns_415() {
    let app = spawn(CREATE).await;
    let reply = app
        .send(
            app.authed(app.client.post(app.url("/results")))
                .header("content-type", "text/plain")
                .body("roll=1"),
        )
        .await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (415, "unsupported_media_type")
    );
}

#[tokio::test]
async fn malformed_json_returns_400() {
    let app = spawn(CREATE).await;
    let reply = app
        .send(
            app.authed(app.client.post(app.url("/results")))
                .header("content-type", "application/json")
                .body("{\"roll_number\": 1,"),
        )
        .await;
    assert_eq!((reply.status, reply.error_code()), (400, "invalid_json"));
}

#[tokio::test]
async fn a_body_over_16_kib_returns_413() {
    let app = spawn(CREATE).await;
    let padding = " ".repeat(17 * 1024);
    let body = format!("{{\"roll_number\": 1, \"exam_year\": 2024, \"marks\": 5{padding}}}");
    let reply = app
        .send(
            app.authed(app.client.post(app.url("/results")))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    assert_eq!(
        (reply.status, reply.error_code()),
        (413, "payload_too_large")
    );
}

#[tokio::test]
async fn writes_without_or_with_a_wrong_token_return_401() {
    let app = spawn(CREATE).await;
    let body = json!({"roll_number": 1, "exam_year": 2024, "marks": 5});
    let none = app
        .send(app.client.post(app.url("/results")).json(&body))
        .await;
    assert_eq!((none.status, none.error_code()), (401, "unauthorized"));
    let wrong = app
        .send(
            app.client
                .post(app.url("/results"))
                .header("authorization", format!("Bearer {TOKEN}x"))
                .json(&body),
        )
        .await;
    assert_eq!(wrong.status, 401);
    let basic = app
        .send(
            app.client
                .post(app.url("/results"))
                .header("authorization", "Basic dTpw")
                .json(&body),
        )
        .await;
    assert_eq!(basic.status, 401);
}

#[tokio::test]
async fn the_request_id_is_echoed_or_generated() {
    let app = spawn(GET).await;
    let given = app
        .send(
            app.client
                .get(app.url("/healthz"))
                .header("x-request-id", "abc-123"),
        )
        .await;
    assert_eq!(given.header("x-request-id"), Some("abc-123"));
    let generated = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(generated.header("x-request-id").map(str::len), Some(36));
}

#[tokio::test]
async fn healthz_and_readyz_answer_when_the_database_is_up() {
    let app = spawn(GET).await;
    let health = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(
        (health.status, health.body.clone()),
        (200, json!({"status": "ok"}))
    );
    let ready = app.send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(
        (ready.status, ready.body.clone()),
        (200, json!({"status": "ready"}))
    );
}

#[tokio::test]
async fn error_bodies_never_contain_sql() {
    let app = spawn(CREATE).await;
    // Break the schema on purpose: the insert fails inside PostgreSQL.
    crate::support::shared_cluster()
        .direct(&app.database)
        .await
        .batch_execute("ALTER TABLE student_results RENAME TO student_results_gone")
        .await
        .unwrap();
    let reply = app
        .create(json!({"roll_number": 1, "exam_year": 2024, "marks": 5}))
        .await;
    assert_eq!((reply.status, reply.error_code()), (500, "internal_error"));
    let text = reply.body.to_string().to_lowercase();
    for leak in [
        "student_results",
        "relation",
        "insert",
        "select",
        "postgres",
    ] {
        assert!(!text.contains(leak), "reply leaked `{leak}`: {text}");
    }
}
