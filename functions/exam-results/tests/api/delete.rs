use crate::support::{shared_cluster, spawn, DELETE};

#[tokio::test]
async fn delete_returns_204_and_the_result_is_gone() {
    let app = spawn(DELETE).await;
    app.insert_rows(shared_cluster(), &[(12, 2024, 60), (13, 2024, 61)])
        .await;

    let reply = app.delete(2024, 12).await;

    assert_eq!(reply.status, 204);
    assert!(reply.body.is_null());
    let remaining: Vec<i64> = shared_cluster()
        .direct(&app.database)
        .await
        .query("SELECT roll_number FROM student_results ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(remaining, vec![13]);
}

#[tokio::test]
async fn deleting_an_absent_result_returns_404() {
    let app = spawn(DELETE).await;
    assert_eq!(app.delete(2024, 12).await.status, 404);
}

#[tokio::test]
async fn delete_with_a_wrong_token_returns_401_and_deletes_nothing() {
    let app = spawn(DELETE).await;
    app.insert_rows(shared_cluster(), &[(12, 2024, 60)]).await;
    let reply = app.delete_as(2024, 12, "not-the-token-at-all").await;
    assert_eq!(reply.status, 401);
    assert_eq!(app.row_count(shared_cluster()).await, 1);
}

#[tokio::test]
async fn any_configured_token_is_accepted() {
    let app = spawn(DELETE).await;
    app.insert_rows(shared_cluster(), &[(12, 2024, 60)]).await;
    let reply = app.delete_as(2024, 12, "another-token-0123456789").await;
    assert_eq!(reply.status, 204);
}
