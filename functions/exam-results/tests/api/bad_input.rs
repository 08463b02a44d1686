//! The bad-input suite: every row of `bad_input.txt` is sent as raw bytes
//! on a new TCP connection to the real function it names, and its status and
//! error code are checked. Whatever a row expects, every error response must
//! be a JSON error (or, where the row says `html`, the results page showing
//! an error) with a request id, and no row may get a 500.
//!
//! # The table (`tests/api/bad_input.txt`)
//!
//! One case per line, four fields separated by ` | `:
//!
//! ```text
//! function | status | code | request bytes
//! get      | 400    | bad_request | GET /results/20x4/1 HTTP/1.1\r\nhost: x\r\n\r\n
//! ```
//!
//! - `function`: a function's name in functions.yaml without its `-result`
//!   or `-results` part (`create`, `get`, `list`, `update`, `delete`,
//!   `create-batch`, `set-publication`, `get-publication`, `get-statistics`,
//!   `page`), or `all` for a case every function but the results page must
//!   answer the same way (the page answers its form in HTML: its rows name it).
//! - `status`: the HTTP status, or `closed` when the connection must be
//!   closed without any response (within 3 s).
//! - `code`: the JSON error code, `-` when the body is not an error, or
//!   `html` for the results page showing an error in its output region
//!   (the answer to its form without JavaScript).
//! - request: the bytes as sent, with `\r`, `\n`, `\t`, `\0`, `\\`, `\xHH`
//!   escapes, `{token}` for a valid write token, `{read_token}` for a valid
//!   read token (list-results, staff reads), and `{repeat:TEXT:N}` for
//!   TEXT repeated N times (TEXT may hold escapes, not `}`).
//!
//! Blank lines and lines starting with `#` are ignored. To run some rows
//! only, name their line numbers: `BAD_INPUT_LINES=44,217 cargo test -p
//! exam-results --test api bad_input` (the size checks are then skipped).
//! The functions serve
//! one database holding the rows in [`SEEDED`] and the publication time in
//! [`ANNOUNCED`], with short timeouts (so stall cases finish quickly), no
//! rate limit, and batches of at most [`BATCH_MAX_BYTES`].

use std::time::Duration;

use exam_results::operations::ALL;
use exam_results::Function;
use futures_util::StreamExt;

use crate::raw::RawConn;
use crate::support::{repo_root, shared_cluster, spawn_with, Spawn, TestApp, READ_TOKEN, TOKEN};

/// Results in the suite's database: (roll_number, exam_year, marks).
const SEEDED: [(i64, i32, i32); 3] = [(100000001, 2024, 70), (100000002, 2024, 55), (7, 2025, 40)];

/// A year whose publication is announced for a later date: not public yet.
const ANNOUNCED: i32 = 2030;

/// create-results-batch's body limit here (`BATCH_MAX_BYTES`), so the
/// over-size rows stay small.
const BATCH_MAX_BYTES: u32 = 20_000;

/// A function's name in the table: its name less `-result` / `-results`.
fn short_name(function: &Function) -> String {
    function
        .name
        .split('-')
        .filter(|part| !matches!(*part, "result" | "results"))
        .collect::<Vec<_>>()
        .join("-")
}

/// The table's names of every function, in the order of [`ALL`].
fn function_names() -> Vec<&'static str> {
    ALL.iter()
        .map(|f| &*Box::leak(short_name(f).into_boxed_str()))
        .collect()
}

/// The functions `all` does not stand for: the results page answers in HTML.
const NOT_IN_ALL: [&str; 1] = ["page"];

/// What a row's `html` code asks for: the page's output region showing an error.
const HTML_ERROR: &str = "<section id=\"out\" class=\"err\"";

struct Case {
    line: usize,
    function: &'static str,
    status: Option<u16>,
    code: Option<String>,
    request: Vec<u8>,
    source: String,
}

fn table() -> Vec<Case> {
    let path = repo_root().join("functions/exam-results/tests/api/bad_input.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cases = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = raw.splitn(4, " | ").collect();
        let [function, status, code, request] = fields[..] else {
            panic!("bad_input.txt:{line}: expected `function | status | code | request`");
        };
        let status = match status.trim() {
            "closed" => None,
            s => Some(
                s.parse()
                    .unwrap_or_else(|_| panic!("bad_input.txt:{line}: bad status `{s}`")),
            ),
        };
        let code = match code.trim() {
            "-" => None,
            c => Some(c.to_owned()),
        };
        let request = expand(request, line);
        let names = function_names();
        let functions: Vec<&'static str> = match function.trim() {
            "all" => names
                .into_iter()
                .filter(|f| !NOT_IN_ALL.contains(f))
                .collect(),
            name => vec![names
                .into_iter()
                .find(|f| *f == name)
                .unwrap_or_else(|| panic!("bad_input.txt:{line}: unknown function `{name}`"))],
        };
        for function in functions {
            cases.push(Case {
                line,
                function,
                status,
                code: code.clone(),
                request: request.clone(),
                source: raw.to_owned(),
            });
        }
    }
    cases
}

/// Applies `{token}`, `{read_token}`, `{repeat:TEXT:N}` and the backslash escapes; any
/// other brace is kept as it is.
fn expand(text: &str, line: usize) -> Vec<u8> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}').map(|e| start + e) else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &rest[start + 1..end];
        if inner == "token" {
            out.push_str(TOKEN);
        } else if inner == "read_token" {
            out.push_str(READ_TOKEN);
        } else if let Some(spec) = inner.strip_prefix("repeat:") {
            let (piece, count) = spec
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("bad_input.txt:{line}: `{{repeat:TEXT:N}}`"));
            let count: usize = count.parse().unwrap();
            out.push_str(&piece.repeat(count));
        } else {
            // Not a template (e.g. JSON): keep the brace.
            out.push('{');
            rest = &rest[start + 1..];
            continue;
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    unescape(&out, line)
}

fn unescape(text: &str, line: usize) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let next = *bytes
            .get(i + 1)
            .unwrap_or_else(|| panic!("bad_input.txt:{line}: trailing backslash"));
        match next {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                out.push(
                    u8::from_str_radix(hex, 16)
                        .unwrap_or_else(|_| panic!("bad_input.txt:{line}: bad escape \\x{hex}")),
                );
                i += 2;
            }
            other => panic!("bad_input.txt:{line}: unknown escape \\{}", other as char),
        }
        i += 2;
    }
    out
}

async fn run(case: &Case, app: &TestApp) -> Result<(), String> {
    let mut conn = RawConn::open(app.address).await;
    conn.send(&case.request).await;
    let head = case.request.starts_with(b"HEAD ");
    let reply = conn.response(Duration::from_secs(3), head).await;
    let Some(expected) = case.status else {
        return match reply {
            None => Ok(()),
            Some(reply) => Err(format!("expected no response, got {}", reply.status)),
        };
    };
    let reply = reply.ok_or("no response (connection closed or timed out)")?;
    let html = case.code.as_deref() == Some("html");
    let code = if html {
        let page = reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html"));
        let body = String::from_utf8_lossy(&reply.body);
        (page && body.contains(HTML_ERROR)).then(|| "html".to_owned())
    } else {
        reply.error_code()
    };
    let mut problems = Vec::new();
    if reply.status != expected {
        problems.push(format!("status {} (expected {expected})", reply.status));
    }
    if reply.status == 500 {
        problems.push("a 500 for a client's request".into());
    }
    if reply.status >= 400 {
        if code.is_none() {
            problems.push(format!(
                "not a JSON error body (nor the page showing an error): {:?}",
                String::from_utf8_lossy(&reply.body)
            ));
        }
        if reply.header("x-request-id").is_none() {
            problems.push("no x-request-id".into());
        }
    }
    if let Some(expected_code) = &case.code {
        if code.as_deref() != Some(expected_code.as_str()) {
            problems.push(format!("code {code:?} (expected {expected_code})"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[tokio::test]
async fn every_bad_input_case_gets_its_expected_status_and_json_error() {
    let mut cases = table();
    let only: Vec<usize> = std::env::var("BAD_INPUT_LINES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    if !only.is_empty() {
        cases.retain(|case| only.contains(&case.line));
    }
    assert!(
        !only.is_empty() || cases.len() >= 300,
        "only {} cases",
        cases.len()
    );
    for function in function_names().into_iter().filter(|_| only.is_empty()) {
        assert!(
            cases.iter().filter(|c| c.function == function).count() >= 30,
            "{function} has fewer than 30 cases"
        );
    }

    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    let mut apps = Vec::new();
    for function in ALL {
        apps.push(
            spawn_with(
                *function,
                Spawn {
                    cluster,
                    database: database.clone(),
                    extra_env: vec![
                        ("RATE_LIMIT_PER_SECOND", "0".into()),
                        ("HTTP_HEADER_READ_TIMEOUT_MS", "300".into()),
                        ("HTTP_IDLE_TIMEOUT_MS", "600".into()),
                        ("HTTP_BODY_READ_TIMEOUT_MS", "300".into()),
                        ("BATCH_MAX_BYTES", BATCH_MAX_BYTES.to_string()),
                    ],
                },
            )
            .await,
        );
    }
    apps[0].insert_rows(cluster, &SEEDED).await;
    cluster
        .direct(&database)
        .await
        .execute(
            "INSERT INTO publications (exam_year, publish_at) VALUES ($1, now() + interval '30 days')",
            &[&ANNOUNCED],
        )
        .await
        .unwrap();
    let names = function_names();
    let app_of = |function: &str| &apps[names.iter().position(|f| *f == function).unwrap()];

    let failures: Vec<String> = futures_util::stream::iter(&cases)
        .map(|case| async move {
            run(case, app_of(case.function)).await.err().map(|problem| {
                format!(
                    "bad_input.txt:{} [{}] {problem}\n    {}",
                    case.line, case.function, case.source
                )
            })
        })
        .buffer_unordered(16)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    eprintln!(
        "bad-input suite: {} cases, {} failed",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_syntax_expands_templates_and_escapes() {
    assert_eq!(
        expand(r"a\r\n\x00\\{repeat:x\t:3}", 1),
        b"a\r\n\0\\x\tx\tx\t"
    );
    assert_eq!(
        expand("Bearer {token} {\"marks\":1}", 1),
        format!("Bearer {TOKEN} {{\"marks\":1}}").into_bytes()
    );
    assert_eq!(
        expand("a {token} b {\"ma", 1),
        format!("a {TOKEN} b {{\"ma").into_bytes()
    );
}
