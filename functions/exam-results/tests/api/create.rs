use serde_json::json;

use crate::support::{spawn, CREATE, GET};

#[tokio::test]
async fn create_returns_201_with_the_stored_result_and_its_location() {
    let app = spawn(CREATE).await;

    let reply = app
        .create(json!({"roll_number": 42, "exam_year": 2024, "marks": 87}))
        .await;

    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.body,
        json!({"roll_number": 42, "exam_year": 2024, "marks": 87})
    );
    assert_eq!(reply.header("location"), Some("/results/2024/42"));
    assert!(reply.header("etag").is_some());
}

#[tokio::test]
async fn a_created_result_can_be_read_back() {
    let app = spawn(CREATE).await;
    app.create(json!({"roll_number": 7, "exam_year": 2023, "marks": 64}))
        .await;
    let reader = crate::support::spawn_with(
        GET,
        crate::support::Spawn {
            cluster: crate::support::shared_cluster(),
            database: app.database.clone(),
            extra_env: vec![],
        },
    )
    .await;

    let reply = reader.get(2023, 7).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["marks"], 64);
}

#[tokio::test]
async fn creating_the_same_key_twice_returns_409_and_keeps_the_first() {
    let app = spawn(CREATE).await;
    app.create(json!({"roll_number": 9, "exam_year": 2024, "marks": 50}))
        .await;

    let reply = app
        .create(json!({"roll_number": 9, "exam_year": 2024, "marks": 99}))
        .await;

    assert_eq!(reply.status, 409);
    assert_eq!(reply.error_code(), "conflict");
}

#[tokio::test]
async fn the_same_roll_number_may_exist_in_two_exam_years() {
    let app = spawn(CREATE).await;
    assert_eq!(
        app.create(json!({"roll_number": 5, "exam_year": 2023, "marks": 1}))
            .await
            .status,
        201
    );
    assert_eq!(
        app.create(json!({"roll_number": 5, "exam_year": 2024, "marks": 2}))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn a_year_without_a_partition_returns_422_naming_the_year() {
    let app = spawn(CREATE).await;

    let reply = app
        .create(json!({"roll_number": 1, "exam_year": 2035, "marks": 50}))
        .await;

    assert_eq!(reply.status, 422);
    assert_eq!(reply.error_code(), "partition_missing");
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2035"));
}

#[tokio::test]
async fn invalid_values_return_422_and_store_nothing() {
    let app = spawn(CREATE).await;
    let cases = [
        json!({"roll_number": 1, "exam_year": 2024, "marks": 101}),
        json!({"roll_number": 1, "exam_year": 2024, "marks": -1}),
        json!({"roll_number": 0, "exam_year": 2024, "marks": 5}),
        json!({"roll_number": 1_000_000_000_000i64, "exam_year": 2024, "marks": 5}),
        json!({"roll_number": 1, "exam_year": 1999, "marks": 5}),
        json!({"roll_number": 1, "exam_year": 2024}),
        json!({"roll_number": 1, "exam_year": 2024, "marks": 5, "grade": "A"}),
        json!({"roll_number": "1", "exam_year": 2024, "marks": 5}),
    ];
    for body in cases {
        let reply = app.create(body.clone()).await;
        assert_eq!(reply.status, 422, "{body}");
        assert_eq!(reply.error_code(), "validation_failed", "{body}");
    }
    assert_eq!(app.row_count(crate::support::shared_cluster()).await, 0);
}

#[tokio::test]
async fn concurrent_creates_of_the_same_key_yield_exactly_one_201() {
    let app = spawn(CREATE).await;
    let body = json!({"roll_number": 77, "exam_year": 2024, "marks": 70});

    let replies = futures_util::future::join_all((0..16).map(|_| app.create(body.clone()))).await;

    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
}
