use crate::support::{migration_files, shared_cluster};

async fn catalog_snapshot(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT c.relname || ':' || c.relkind::text || ':' || coalesce(pg_get_expr(c.relpartbound, c.oid), '') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect::<Vec<String>>()
        .into_iter()
        .chain(
            client
                .query("SELECT conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0)),
        )
        .collect()
}

#[tokio::test]
async fn running_the_migrations_again_changes_nothing() {
    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    let client = cluster.direct(&database).await;
    client
        .execute("INSERT INTO student_results VALUES (1, 50, 2024)", &[])
        .await
        .unwrap();
    let before = catalog_snapshot(&client).await;

    cluster.migrate(&database).await;
    cluster.migrate(&database).await;

    assert_eq!(catalog_snapshot(&client).await, before);
    let versions: i64 = client
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions as usize, migration_files().len());
    let rows: i64 = client
        .query_one("SELECT count(*) FROM student_results", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn partitions_exist_for_2018_through_2028_and_the_smoke_year() {
    let cluster = shared_cluster();
    let client = cluster.direct(&cluster.fresh_database().await).await;
    let partitions: Vec<String> = client
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'student_results'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // 2018..2028 from 0002, and the smoke-test year 2099 from 0005
    let expected: Vec<String> = (2018..=2028)
        .chain([2099])
        .map(|y| format!("student_results_{y}"))
        .collect();
    assert_eq!(partitions, expected);
}

#[tokio::test]
async fn ensure_partition_is_idempotent_and_refuses_unsupported_years() {
    let cluster = shared_cluster();
    let client = cluster.direct(&cluster.fresh_database().await).await;
    let name: String = client
        .query_one("SELECT ensure_exam_year_partition(2031)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "student_results_2031");
    let again: String = client
        .query_one("SELECT ensure_exam_year_partition(2031)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, name);
    assert!(client
        .query_one("SELECT ensure_exam_year_partition(1990)", &[])
        .await
        .is_err());
}

#[tokio::test]
async fn the_database_rejects_what_the_api_rejects() {
    let cluster = shared_cluster();
    let client = cluster.direct(&cluster.fresh_database().await).await;
    for (roll, marks, year) in [
        (1i64, 101i32, 2024i32),
        (1, -1, 2024),
        (0, 5, 2024),
        (1_000_000_000_000, 5, 2024),
    ] {
        let err = client
            .execute(
                "INSERT INTO student_results (roll_number, marks, exam_year) VALUES ($1, $2, $3)",
                &[&roll, &marks, &year],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
        );
    }
}

#[tokio::test]
async fn a_point_read_and_a_listing_touch_only_their_years_partition() {
    let cluster = shared_cluster();
    let client = cluster.direct(&cluster.fresh_database().await).await;
    client
        .batch_execute(
            "INSERT INTO student_results SELECT n, 50, 2021 + n % 4 FROM generate_series(1, 4000) n; ANALYZE student_results;",
        )
        .await
        .unwrap();
    // The same statements the functions send, with parameters bound as the
    // driver binds them (an unnamed statement, planned with the values).
    for sql in [
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT roll_number, exam_year, marks FROM student_results WHERE exam_year = $1 AND roll_number = $2",
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT roll_number, exam_year, marks FROM student_results WHERE exam_year = $1 AND roll_number > $2 ORDER BY roll_number LIMIT 101",
    ] {
        let plan: Vec<String> = client
            .query_typed(
                sql,
                &[(&2023i32, tokio_postgres::types::Type::INT4), (&2i64, tokio_postgres::types::Type::INT8)],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("student_results_2023"), "{plan}");
        for other in ["student_results_2021", "student_results_2022", "student_results_2024"] {
            assert!(!plan.contains(other), "plan scans {other}:\n{plan}");
        }
    }
}

#[tokio::test]
async fn a_transaction_left_idle_by_a_dead_pooler_is_ended_after_ten_seconds() {
    // 0008: an orphaned "idle in transaction" backend would hold its locks (and an
    // idempotency key's advisory lock) until the connection dies.
    let cluster = shared_cluster();
    let client = cluster.direct(&cluster.fresh_database().await).await;
    let timeout: String = client
        .query_one("SHOW idle_in_transaction_session_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "10s");
}
