use crate::support::{shared_cluster, spawn, spawn_with, Spawn, GET};

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

/// A plain GET is served before warp's filter chain (`get_result::Direct`);
/// a HEAD of the same URL goes through the filters. Both must answer with
/// the same status and the same headers (all but the date, the request id
/// and the length), for the public and for staff, with every optional
/// header a public reply can carry switched on.
#[tokio::test]
async fn a_get_served_directly_has_the_headers_the_filter_chain_gives_the_same_read() {
    let cluster = shared_cluster();
    let app = spawn_with(
        GET,
        Spawn {
            cluster,
            database: cluster.fresh_database().await,
            extra_env: vec![("CORS_ALLOW_ORIGIN", "https://results.example.org".into())],
        },
    )
    .await;
    app.insert_rows(cluster, &[(77, 2024, 63)]).await;
    let url = app.url("/results/2024/77");
    let compared = |reply: &crate::support::Reply| -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = reply
            .headers
            .iter()
            .filter(|(name, _)| {
                !["date", "x-request-id", "content-length"].contains(&name.as_str())
            })
            .map(|(name, value)| {
                (
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        headers.sort();
        headers
    };
    for token in [None, Some(crate::support::READ_TOKEN)] {
        let with = |request: reqwest::RequestBuilder| match token {
            Some(token) => request.header("authorization", format!("Bearer {token}")),
            None => request,
        };
        let direct = app.send(with(app.client.get(&url))).await;
        let filtered = app.send(with(app.client.head(&url))).await;
        assert_eq!(direct.status, 200);
        assert_eq!(filtered.status, direct.status);
        assert_eq!(compared(&filtered), compared(&direct), "token {token:?}");
        assert!(direct.header("etag").is_some());
        assert!(direct
            .header("x-request-id")
            .is_some_and(|id| id.len() == 36));
        assert!(filtered.header("x-request-id").is_some());
    }
}
