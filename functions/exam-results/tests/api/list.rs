use crate::support::{shared_cluster, spawn, LIST};

#[tokio::test]
async fn list_pages_through_a_year_in_roll_number_order_across_a_page_boundary() {
    let app = spawn(LIST).await;
    let rows: Vec<(i64, i32, i32)> = (1..=5)
        .map(|r| (r * 10, 2024, r as i32))
        .chain([(15, 2023, 1)])
        .collect();
    app.insert_rows(shared_cluster(), &rows).await;

    let first = app.list("exam_year=2024&limit=2").await;
    assert_eq!(first.status, 200);
    let rolls: Vec<i64> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["roll_number"].as_i64().unwrap())
        .collect();
    assert_eq!(rolls, vec![10, 20]);
    assert_eq!(first.body["next_after"], 20);

    let second = app.list("exam_year=2024&limit=2&after=20").await;
    let rolls: Vec<i64> = second.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["roll_number"].as_i64().unwrap())
        .collect();
    assert_eq!(rolls, vec![30, 40]);
    assert_eq!(second.body["next_after"], 40);

    let last = app.list("exam_year=2024&limit=2&after=40").await;
    let rolls: Vec<i64> = last.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["roll_number"].as_i64().unwrap())
        .collect();
    assert_eq!(rolls, vec![50]);
    assert!(last.body["next_after"].is_null());
}

#[tokio::test]
async fn an_exact_last_page_has_no_next_cursor() {
    let app = spawn(LIST).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 1), (2, 2024, 2)])
        .await;
    let page = app.list("exam_year=2024&limit=2").await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);
    assert!(page.body["next_after"].is_null());
}

#[tokio::test]
async fn list_defaults_to_one_hundred_items() {
    let app = spawn(LIST).await;
    let rows: Vec<(i64, i32, i32)> = (1..=101).map(|r| (r, 2024, 50)).collect();
    app.insert_rows(shared_cluster(), &rows).await;
    let page = app.list("exam_year=2024").await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 100);
    assert_eq!(page.body["next_after"], 100);
}

#[tokio::test]
async fn list_requires_exam_year_and_caps_limit() {
    let app = spawn(LIST).await;
    let missing = app.list("").await;
    assert_eq!((missing.status, missing.error_code()), (400, "bad_request"));
    let too_big = app.list("exam_year=2024&limit=1001").await;
    assert_eq!(
        (too_big.status, too_big.error_code()),
        (422, "validation_failed")
    );
    let garbage = app.list("exam_year=2024&after=abc").await;
    assert_eq!(garbage.status, 400);
    let unknown = app.list("exam_year=2024&sort=desc").await;
    assert_eq!(unknown.status, 400);
}

#[tokio::test]
async fn an_empty_year_lists_no_items() {
    let app = spawn(LIST).await;
    let page = app.list("exam_year=2020").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.body,
        serde_json::json!({"items": [], "next_after": null})
    );
}
