use serde_json::json;

use crate::support::{shared_cluster, spawn, UPDATE};

#[tokio::test]
async fn update_sets_the_marks_and_returns_the_result() {
    let app = spawn(UPDATE).await;
    app.insert_rows(shared_cluster(), &[(8, 2024, 10)]).await;

    let reply = app.put_marks(2024, 8, json!(95)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"roll_number": 8, "exam_year": 2024, "marks": 95})
    );
    let stored: i32 = shared_cluster()
        .direct(&app.database)
        .await
        .query_one(
            "SELECT marks FROM student_results WHERE exam_year = 2024 AND roll_number = 8",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 95);
}

#[tokio::test]
async fn update_returns_404_for_an_absent_result() {
    let app = spawn(UPDATE).await;
    let reply = app.put_marks(2024, 404, json!(1)).await;
    assert_eq!((reply.status, reply.error_code()), (404, "not_found"));
}

#[tokio::test]
async fn update_rejects_bad_marks_and_keeps_the_old_value() {
    let app = spawn(UPDATE).await;
    app.insert_rows(shared_cluster(), &[(8, 2024, 10)]).await;
    for marks in [json!(101), json!(-3), json!("ninety"), json!(null)] {
        let reply = app.put_marks(2024, 8, marks.clone()).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (422, "validation_failed"),
            "{marks}"
        );
    }
    let extra = app
        .send(
            app.authed(app.client.put(app.url("/results/2024/8")))
                .json(&json!({"marks": 5, "exam_year": 2025})),
        )
        .await;
    assert_eq!(extra.status, 422);
    let reply = crate::support::spawn_with(
        crate::support::GET,
        crate::support::Spawn {
            cluster: shared_cluster(),
            database: app.database.clone(),
            extra_env: vec![],
        },
    )
    .await
    .get(2024, 8)
    .await;
    assert_eq!(reply.body["marks"], 10);
}

#[tokio::test]
async fn update_requires_a_token() {
    let app = spawn(UPDATE).await;
    let reply = app
        .send(
            app.client
                .put(app.url("/results/2024/8"))
                .json(&json!({"marks": 5})),
        )
        .await;
    assert_eq!((reply.status, reply.error_code()), (401, "unauthorized"));
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
}
