//! Year statistics: the numbers match a direct SQL aggregate over the same
//! rows after inserts, updates and deletes, through the write functions
//! and through SQL straight into a partition (with the recount).

use exam_results::operations::get_statistics;
use exam_results::Function;
use serde_json::{json, Value};

use crate::publication::{beside, publish};
use crate::support::{shared_cluster, spawn, TestApp, CREATE, DELETE, READ_TOKEN, UPDATE};

const STATISTICS: Function = get_statistics::FUNCTION;

async fn statistics(app: &TestApp, year: i32) -> Value {
    let reply = app
        .send(
            app.client
                .get(app.url(&format!("/results/{year}/statistics"))),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The same statistics computed by PostgreSQL from student_results itself.
async fn from_sql(app: &TestApp, year: i32, reply: &Value) -> Value {
    let client = shared_cluster().direct(&app.database).await;
    let row = client
        .query_one(
            "SELECT count(*), avg(marks)::float8, \
                    (percentile_cont(0.5) WITHIN GROUP (ORDER BY marks))::float8, \
                    avg((marks >= 40)::int)::float8 \
             FROM student_results WHERE exam_year = $1",
            &[&year],
        )
        .await
        .unwrap();
    let mut bands = Vec::new();
    for band in reply["bands"].as_array().unwrap() {
        let (min, max) = (
            band["min_marks"].as_i64().unwrap() as i32,
            band["max_marks"].as_i64().unwrap() as i32,
        );
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM student_results WHERE exam_year = $1 AND marks BETWEEN $2 AND $3",
                &[&year, &min, &max],
            )
            .await
            .unwrap()
            .get(0);
        bands.push(
            json!({"grade": band["grade"], "min_marks": min, "max_marks": max, "results": n}),
        );
    }
    json!({
        "exam_year": year,
        "results": row.get::<_, i64>(0),
        "mean": row.get::<_, Option<f64>>(1),
        "median": row.get::<_, Option<f64>>(2),
        "pass_mark": 40,
        "pass_rate": row.get::<_, Option<f64>>(3),
        "bands": bands,
    })
}

fn assert_close(actual: &Value, expected: &Value) {
    for key in ["mean", "median", "pass_rate"] {
        match (actual[key].as_f64(), expected[key].as_f64()) {
            (Some(a), Some(e)) => assert!((a - e).abs() < 1e-9, "{key}: {a} vs {e}"),
            (a, e) => assert_eq!(a, e, "{key}"),
        }
    }
    for key in ["exam_year", "results", "pass_mark", "bands"] {
        assert_eq!(actual[key], expected[key], "{key}");
    }
}

#[tokio::test]
async fn statistics_match_sql_after_inserts_updates_and_deletes() {
    let stats = spawn(STATISTICS).await;
    let cluster = shared_cluster();
    let client = cluster.direct(&stats.database).await;
    // 500 rows with marks spread over 0..=100, in one statement.
    client
        .batch_execute(
            "INSERT INTO student_results (roll_number, exam_year, marks) \
             SELECT n, 2024, (n * 37) % 101 FROM generate_series(1, 500) AS n",
        )
        .await
        .unwrap();
    let reply = statistics(&stats, 2024).await;
    assert_eq!(reply["results"], 500);
    assert_close(&reply, &from_sql(&stats, 2024, &reply).await);

    // Through the write functions.
    let create = crate::publication::beside(&stats, CREATE, &[]).await;
    let update = beside(&stats, UPDATE, &[]).await;
    let delete = beside(&stats, DELETE, &[]).await;
    for (roll, marks) in [(1001, 100), (1002, 0), (1003, 39)] {
        let reply = create
            .create(json!({"roll_number": roll, "exam_year": 2024, "marks": marks}))
            .await;
        assert_eq!(reply.status, 201);
    }
    for roll in 1..=20 {
        assert_eq!(update.put_marks(2024, roll, json!(95)).await.status, 200);
    }
    for roll in 21..=60 {
        assert_eq!(delete.delete(2024, roll).await.status, 204);
    }
    // In SQL: a bulk correction, a delete and a row moved to another year.
    client
        .batch_execute(
            "UPDATE student_results SET marks = marks / 2 WHERE exam_year = 2024 AND roll_number > 400; \
             DELETE FROM student_results WHERE exam_year = 2024 AND roll_number BETWEEN 100 AND 150; \
             UPDATE student_results SET exam_year = 2025 WHERE exam_year = 2024 AND roll_number = 300",
        )
        .await
        .unwrap();
    for year in [2024, 2025] {
        let reply = statistics(&stats, year).await;
        assert_close(&reply, &from_sql(&stats, year, &reply).await);
    }
    assert_eq!(statistics(&stats, 2025).await["results"], 1);

    // Rows written straight into a partition (as sql/ops/load-csv.sh does)
    // bypass the parent's trigger until the year is recounted.
    client
        .batch_execute(
            "INSERT INTO student_results_2026 (roll_number, exam_year, marks) \
             SELECT n, 2026, n % 101 FROM generate_series(1, 50) AS n; \
             SELECT refresh_result_mark_counts(2026)",
        )
        .await
        .unwrap();
    let reply = statistics(&stats, 2026).await;
    assert_eq!(reply["results"], 50);
    assert_close(&reply, &from_sql(&stats, 2026, &reply).await);
}

#[tokio::test]
async fn a_year_without_results_has_zero_results_and_no_averages() {
    let stats = spawn(STATISTICS).await;
    let reply = statistics(&stats, 2023).await;
    assert_eq!(
        (
            reply["results"].clone(),
            reply["mean"].clone(),
            reply["median"].clone(),
            reply["pass_rate"].clone()
        ),
        (json!(0), Value::Null, Value::Null, Value::Null)
    );
    assert_eq!(
        reply["bands"][0],
        json!({"grade": "A", "min_marks": 80, "max_marks": 100, "results": 0})
    );
}

#[tokio::test]
async fn statistics_of_an_unpublished_year_are_for_staff_only() {
    let set = spawn(crate::publication::SET).await;
    set.insert_rows(shared_cluster(), &[(1, 2027, 70), (2, 2027, 30)])
        .await;
    publish(&set, 2027, json!("2099-01-01T00:00:00Z")).await;
    let stats = beside(
        &set,
        STATISTICS,
        &[("PASS_MARK", "50"), ("GRADE_BANDS", "P:50,F:0")],
    )
    .await;

    let public = stats
        .send(stats.client.get(stats.url("/results/2027/statistics")))
        .await;
    assert_eq!(
        (public.status, public.error_code()),
        (404, "results_not_published")
    );
    assert!(public.header("retry-after").is_some());

    let staff = stats
        .send(
            stats
                .client
                .get(stats.url("/results/2027/statistics"))
                .header("authorization", format!("Bearer {READ_TOKEN}")),
        )
        .await;
    assert_eq!(staff.status, 200);
    assert_eq!(staff.header("cache-control"), Some("private, no-store"));
    assert_eq!(
        (
            staff.body["pass_mark"].clone(),
            staff.body["pass_rate"].clone()
        ),
        (json!(50), json!(0.5))
    );
    assert_eq!(
        staff.body["bands"],
        json!([
            {"grade": "P", "min_marks": 50, "max_marks": 100, "results": 1},
            {"grade": "F", "min_marks": 0, "max_marks": 49, "results": 1}
        ])
    );
}

#[tokio::test]
async fn bad_years_in_the_statistics_url_are_refused_like_everywhere_else() {
    let stats = spawn(STATISTICS).await;
    for (path, status) in [
        ("/results/20x4/statistics", 400),
        ("/results/02024/statistics", 404),
        ("/results/1999/statistics", 422),
        ("/results/2024/statistics?x", 400),
        ("/results/2024/statistics/", 404),
    ] {
        let reply = stats.send(stats.client.get(stats.url(path))).await;
        assert_eq!(reply.status, status, "{path}");
        assert!(reply.body["error"]["code"].is_string(), "{path}");
    }
    let post = stats
        .send(stats.client.post(stats.url("/results/2024/statistics")))
        .await;
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );
}
