//! No lost updates: PUT and DELETE honour `If-Match` (RFC 9110 §13.1.1).

use serde_json::json;

use crate::support::{
    shared_cluster, spawn, spawn_with, Reply, Spawn, TestApp, DELETE, GET, UPDATE,
};

/// A get-result function on `app`'s database.
async fn reader_of(app: &TestApp) -> TestApp {
    spawn_with(
        GET,
        Spawn {
            cluster: shared_cluster(),
            database: app.database.clone(),
            extra_env: vec![],
        },
    )
    .await
}

/// The current ETag of result (2024, `roll`), as get-result serves it.
async fn current_tag(app: &TestApp, roll: i64) -> String {
    reader_of(app)
        .await
        .get(2024, roll)
        .await
        .header("etag")
        .unwrap()
        .to_owned()
}

async fn put_if_match(app: &TestApp, roll: i64, marks: i32, tag: &str) -> Reply {
    app.send(
        app.authed(app.client.put(app.url(&format!("/results/2024/{roll}"))))
            .header("if-match", tag)
            .json(&json!({ "marks": marks })),
    )
    .await
}

async fn delete_if_match(app: &TestApp, roll: i64, tag: &str) -> Reply {
    app.send(
        app.authed(app.client.delete(app.url(&format!("/results/2024/{roll}"))))
            .header("if-match", tag),
    )
    .await
}

/// The marks of result (2024, `roll`) in `app`'s database, read directly.
pub(crate) async fn stored_marks(app: &TestApp, roll: i64) -> Option<i32> {
    shared_cluster()
        .direct(&app.database)
        .await
        .query_opt(
            "SELECT marks FROM student_results WHERE exam_year = 2024 AND roll_number = $1",
            &[&roll],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

#[tokio::test]
async fn two_clients_putting_with_the_same_etag_get_one_200_and_one_412() {
    let app = spawn(UPDATE).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    let tag = current_tag(&app, 1).await;

    let first = put_if_match(&app, 1, 60, &tag).await;
    let second = put_if_match(&app, 1, 70, &tag).await;

    assert_eq!(first.status, 200);
    assert_eq!(
        (second.status, second.error_code()),
        (412, "precondition_failed")
    );
    // The 412 names the current tag: the first client's write.
    assert_eq!(second.header("etag"), first.header("etag"));
    assert_eq!(stored_marks(&app, 1).await, Some(60));
}

#[tokio::test]
async fn of_many_concurrent_puts_with_the_same_etag_exactly_one_wins() {
    let app = spawn(UPDATE).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    let tag = current_tag(&app, 1).await;

    let replies =
        futures_util::future::join_all((51..=80).map(|marks| put_if_match(&app, 1, marks, &tag)))
            .await;

    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "statuses: {:?}", statuses(&replies));
    let winner = winners[0];
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(
            (reply.status, reply.error_code()),
            (412, "precondition_failed")
        );
        assert_eq!(reply.header("etag"), winner.header("etag"));
    }
    assert_eq!(
        stored_marks(&app, 1).await,
        winner.body["marks"].as_i64().map(|m| m as i32)
    );
}

fn statuses(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.status).collect()
}

#[tokio::test]
async fn a_put_with_the_current_etag_succeeds_and_returns_the_new_one() {
    let app = spawn(UPDATE).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    let reader = reader_of(&app).await;
    let tag = reader.get(2024, 1).await.header("etag").unwrap().to_owned();

    let reply = put_if_match(&app, 1, 55, &format!("\"0000000000000000\", {tag}")).await;

    assert_eq!(reply.status, 200);
    let new_tag = reply.header("etag").unwrap();
    assert_ne!(new_tag, tag);
    assert_eq!(reader.get(2024, 1).await.header("etag"), Some(new_tag));
}

#[tokio::test]
async fn a_weak_or_unknown_etag_does_not_match_and_changes_nothing() {
    let app = spawn(UPDATE).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    let tag = current_tag(&app, 1).await;

    for condition in [format!("W/{tag}"), "\"0123\"".into(), "garbage".into()] {
        let reply = put_if_match(&app, 1, 99, &condition).await;
        assert_eq!(
            (reply.status, reply.error_code()),
            (412, "precondition_failed")
        );
        assert_eq!(reply.header("etag"), Some(tag.as_str()), "{condition}");
    }
    assert_eq!(stored_marks(&app, 1).await, Some(50));
}

#[tokio::test]
async fn if_match_star_requires_only_that_the_result_exists() {
    let app = spawn(UPDATE).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    assert_eq!(put_if_match(&app, 1, 51, "*").await.status, 200);
    // Without a current result the request would be a 404 anyway, which
    // takes precedence over the condition (RFC 9110 §13.2.1).
    let absent = put_if_match(&app, 2, 51, "*").await;
    assert_eq!((absent.status, absent.error_code()), (404, "not_found"));
    let absent = put_if_match(&app, 2, 51, "\"0123\"").await;
    assert_eq!(absent.status, 404);
}

#[tokio::test]
async fn a_delete_with_a_stale_etag_is_refused_and_with_the_current_one_applied() {
    let app = spawn(DELETE).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    let reader = reader_of(&app).await;
    let stale = reader.get(2024, 1).await.header("etag").unwrap().to_owned();
    shared_cluster()
        .direct(&app.database)
        .await
        .batch_execute("UPDATE student_results SET marks = 51 WHERE roll_number = 1")
        .await
        .unwrap();
    let current = reader.get(2024, 1).await.header("etag").unwrap().to_owned();

    let refused = delete_if_match(&app, 1, &stale).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (412, "precondition_failed")
    );
    assert_eq!(refused.header("etag"), Some(current.as_str()));
    assert_eq!(stored_marks(&app, 1).await, Some(51));

    assert_eq!(delete_if_match(&app, 1, &current).await.status, 204);
    assert_eq!(stored_marks(&app, 1).await, None);
}

#[tokio::test]
async fn writes_without_if_match_are_unconditional_as_before() {
    let app = spawn(UPDATE).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    assert_eq!(app.put_marks(2024, 1, json!(10)).await.status, 200);
    assert_eq!(app.put_marks(2024, 1, json!(20)).await.status, 200);
    assert_eq!(stored_marks(&app, 1).await, Some(20));
}
