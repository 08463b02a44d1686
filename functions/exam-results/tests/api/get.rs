use crate::support::{shared_cluster, spawn, GET};

#[tokio::test]
async fn get_returns_the_result_with_an_etag() {
    let app = spawn(GET).await;
    app.insert_rows(shared_cluster(), &[(1001, 2024, 91)]).await;

    let reply = app.get(2024, 1001).await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        serde_json::json!({"roll_number": 1001, "exam_year": 2024, "marks": 91})
    );
    assert!(reply.header("etag").unwrap().starts_with('"'));
}

#[tokio::test]
async fn get_returns_404_for_an_absent_result() {
    let app = spawn(GET).await;

    let reply = app.get(2024, 123).await;

    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_code(), "not_found");
}

#[tokio::test]
async fn if_none_match_with_the_current_tag_returns_304_and_a_changed_result_returns_200() {
    let app = spawn(GET).await;
    app.insert_rows(shared_cluster(), &[(55, 2024, 40)]).await;
    let etag = app.get(2024, 55).await.header("etag").unwrap().to_owned();

    let url = app.url("/results/2024/55");
    let not_modified = app
        .send(app.client.get(&url).header("if-none-match", &etag))
        .await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));

    shared_cluster()
        .direct(&app.database)
        .await
        .execute(
            "UPDATE student_results SET marks = 41 WHERE roll_number = 55",
            &[],
        )
        .await
        .unwrap();
    let changed = app
        .send(app.client.get(&url).header("if-none-match", &etag))
        .await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body["marks"], 41);
}

#[tokio::test]
async fn a_year_without_a_partition_is_simply_not_found() {
    let app = spawn(GET).await;
    assert_eq!(app.get(2040, 1).await.status, 404);
}

#[tokio::test]
async fn malformed_path_values_return_400_and_out_of_range_values_422() {
    let app = spawn(GET).await;
    let bad = app.send(app.client.get(app.url("/results/2024/abc"))).await;
    assert_eq!((bad.status, bad.error_code()), (400, "bad_request"));
    let bad_year = app.send(app.client.get(app.url("/results/MMXXIV/1"))).await;
    assert_eq!(bad_year.status, 400);
    let out_of_range = app.get(1900, 1).await;
    assert_eq!(
        (out_of_range.status, out_of_range.error_code()),
        (422, "validation_failed")
    );
}

#[tokio::test]
async fn reads_need_no_token() {
    let app = spawn(GET).await;
    app.insert_rows(shared_cluster(), &[(3, 2022, 33)]).await;
    assert_eq!(app.get(2022, 3).await.status, 200);
}
