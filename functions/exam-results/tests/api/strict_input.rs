//! What a hostile client sends at the filters: header bytes that are not
//! UTF-8, bodies that are not objects, non-canonical result URLs, odd
//! `Authorization` headers, and listing without a token.

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    shared_cluster, spawn, Reply, TestApp, CREATE, DELETE, GET, LIST, READ_TOKEN, TOKEN, UPDATE,
};

/// `\xff`: a byte HTTP allows in a field value (obs-text) that is not UTF-8.
fn invalid(prefix: &str) -> HeaderValue {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(b"\xff\xfe");
    HeaderValue::from_bytes(&bytes).unwrap()
}

fn assert_json_error(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(
        (reply.status, reply.error_code()),
        (status, code),
        "{what}: {:?}",
        reply.body
    );
}

/// Sends raw bytes and returns the status code of the response.
async fn raw_status(app: &TestApp, request: &[u8]) -> u16 {
    let mut socket = tokio::net::TcpStream::connect(app.address).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

// Every header the functions read, with bytes that are not UTF-8: one test each.

#[tokio::test]
async fn an_if_none_match_that_is_not_utf8_is_ignored_and_a_request_id_replaced() {
    let getter = spawn(GET).await;
    getter.insert_rows(shared_cluster(), &[(1, 2024, 50)]).await;
    let url = getter.url("/results/2024/1");
    // If-None-Match: matches none of our tags, so it is ignored (RFC 9110 §13.1.2).
    let reply = getter
        .send(
            getter
                .client
                .get(&url)
                .header("if-none-match", invalid("\"")),
        )
        .await;
    assert_eq!(
        (reply.status, reply.body["marks"].as_i64()),
        (200, Some(50))
    );
    // X-Request-Id: not a usable id, so one is generated.
    let reply = getter
        .send(
            getter
                .client
                .get(&url)
                .header("x-request-id", invalid("id-")),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id").map(str::len), Some(36));
}

#[tokio::test]
async fn a_content_type_that_is_not_utf8_is_a_415_and_a_bad_content_length_a_400() {
    let creator = spawn(CREATE).await;
    let body = json!({"roll_number": 1, "exam_year": 2024, "marks": 5}).to_string();
    let post = || {
        creator
            .client
            .post(creator.url("/results"))
            .body(body.clone())
    };
    let reply = creator
        .send(
            creator
                .authed(post())
                .header("content-type", invalid("application/json")),
        )
        .await;
    assert_json_error(&reply, 415, "unsupported_media_type", "Content-Type");
    // Content-Length is framing: the HTTP layer refuses it before any route runs.
    let mut request = format!(
        "POST /results HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nConnection: close\r\nContent-Length: "
    )
    .into_bytes();
    request.extend_from_slice(b"\xff\r\n\r\n{}");
    let status = raw_status(&creator, &request).await;
    assert_eq!(status, 400, "Content-Length");
    assert_eq!(creator.row_count(shared_cluster()).await, 0);
}

#[tokio::test]
async fn an_authorization_that_is_not_utf8_is_a_401_on_every_function_that_reads_it() {
    for function in [CREATE, UPDATE, DELETE, LIST] {
        let app = spawn(function).await;
        let path = function
            .route
            .template()
            .replace("{exam_year}", "2024")
            .replace("{roll_number}", "1");
        let request = app
            .client
            .request(function.method.clone(), app.url(&path))
            .header("authorization", invalid("Bearer "))
            .header("content-type", "application/json")
            .body(r#"{"marks": 5}"#);
        let reply = app.send(request).await;
        assert_json_error(&reply, 401, "unauthorized", function.name);
    }
}

#[tokio::test]
async fn bodies_must_be_json_objects_not_arrays() {
    let creator = spawn(CREATE).await;
    let reply = creator
        .send(
            creator
                .authed(creator.client.post(creator.url("/results")))
                .json(&json!([870000000160i64, 2024, 50])),
        )
        .await;
    assert_json_error(&reply, 400, "bad_request", "array body on create");
    assert_eq!(creator.row_count(shared_cluster()).await, 0);

    let updater = spawn(UPDATE).await;
    updater
        .insert_rows(shared_cluster(), &[(8, 2024, 10)])
        .await;
    let reply = updater
        .send(
            updater
                .authed(updater.client.put(updater.url("/results/2024/8")))
                .json(&json!([5])),
        )
        .await;
    assert_json_error(&reply, 400, "bad_request", "array body on update");
    let marks: i32 = shared_cluster()
        .direct(&updater.database)
        .await
        .query_one(
            "SELECT marks FROM student_results WHERE roll_number = 8",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(marks, 10);
}

#[tokio::test]
async fn a_result_is_served_at_its_canonical_url_only() {
    let app = spawn(GET).await;
    app.insert_rows(shared_cluster(), &[(100000001, 2024, 70)])
        .await;
    assert_eq!(app.get(2024, 100000001).await.status, 200);
    for path in [
        "/results/02024/100000001",
        "/results/2024/+100000001",
        "/results/2024/0100000001",
        "/results/+2024/100000001",
        "/results/2024/100000001/",
        "/results/02024/+100000001/",
        "/results//100000001",
    ] {
        let reply = app.send(app.client.get(app.url(path))).await;
        assert_json_error(&reply, 404, "not_found", path);
    }
    for path in ["/results/2024/100000001?x=1", "/results/2024/100000001?"] {
        let reply = app.send(app.client.get(app.url(path))).await;
        assert_json_error(&reply, 400, "bad_request", path);
    }

    let deleter = spawn(DELETE).await;
    deleter.insert_rows(shared_cluster(), &[(5, 2024, 1)]).await;
    for path in ["/results/2024/05", "/results/2024/5/"] {
        let reply = deleter
            .send(deleter.authed(deleter.client.delete(deleter.url(path))))
            .await;
        assert_json_error(&reply, 404, "not_found", path);
    }
    assert_eq!(deleter.row_count(shared_cluster()).await, 1);

    let lister = spawn(LIST).await;
    let reply = lister
        .send(
            lister
                .client
                .get(lister.url("/results/?exam_year=2024"))
                .header("authorization", format!("Bearer {READ_TOKEN}")),
        )
        .await;
    assert_json_error(&reply, 404, "not_found", "/results/");
}

#[tokio::test]
async fn allow_on_405_lists_every_method_the_path_has_across_the_functions() {
    let getter = spawn(GET).await;
    let reply = getter
        .send(getter.client.patch(getter.url("/results/2024/1")))
        .await;
    assert_json_error(&reply, 405, "method_not_allowed", "PATCH on get-result");
    assert_eq!(reply.header("allow"), Some("GET, HEAD, PUT, DELETE"));

    let creator = spawn(CREATE).await;
    let reply = creator
        .send(creator.client.put(creator.url("/results")))
        .await;
    assert_eq!(
        (reply.status, reply.header("allow")),
        (405, Some("POST, GET, HEAD"))
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let app = spawn(DELETE).await;
    app.insert_rows(shared_cluster(), &[(12, 2024, 60), (13, 2024, 61)])
        .await;
    for (roll, scheme) in [(12, "BEARER"), (13, "bEaReR")] {
        let reply = app
            .send(
                app.client
                    .delete(app.url(&format!("/results/2024/{roll}")))
                    .header("authorization", format!("{scheme} {TOKEN}")),
            )
            .await;
        assert_eq!(reply.status, 204, "{scheme}");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_a_bad_request_even_when_both_are_valid() {
    let app = spawn(CREATE).await;
    let reply = app
        .send(
            app.client
                .post(app.url("/results"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .json(&json!({"roll_number": 1, "exam_year": 2024, "marks": 5})),
        )
        .await;
    assert_json_error(&reply, 400, "bad_request", "two Authorization headers");
    assert_eq!(app.row_count(shared_cluster()).await, 0);
}

#[tokio::test]
async fn listing_requires_a_read_token_and_a_write_token_is_not_one() {
    let app = spawn(LIST).await;
    app.insert_rows(shared_cluster(), &[(1, 2024, 1)]).await;
    let url = app.url("/results?exam_year=2024");
    let anonymous = app.send(app.client.get(&url)).await;
    assert_json_error(&anonymous, 401, "unauthorized", "no token");
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    let write = app
        .send(
            app.client
                .get(&url)
                .header("authorization", format!("Bearer {TOKEN}")),
        )
        .await;
    assert_json_error(&write, 401, "unauthorized", "a write token");
    let read = app.list("exam_year=2024").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["items"].as_array().map(Vec::len), Some(1));
}
