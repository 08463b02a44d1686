//! `bench-baseline`: `GET /results/{exam_year}/{roll_number}` with hyper and
//! tokio-postgres alone, the floor get-result's cost per request is compared to.
//!
//! It answers the measured route the way get-result does (same SQL through
//! the same PgBouncer, same JSON body, same `ETag`), reading the same
//! environment (`.ci/stack.sh env get-result PORT` prints it): `PORT`,
//! `BIND_ADDRESS`, `DATABASE_URL`, `DATABASE_PASSWORD`, `DATABASE_POOL_SIZE`.
//! It has nothing else: no metrics, no logs, no request ids, no timeouts, no
//! replica-lag fallback, no pool checkout (requests share a fixed set of
//! connections, round robin, pipelined), validation reduced to "two numbers".
//! `/readyz` answers once every connection is open. Never deployed.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, ETAG};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

const SELECT_RESULT: &str = "SELECT roll_number, exam_year, marks FROM student_results \
                             WHERE exam_year = $1 AND roll_number = $2";

struct Db {
    clients: Vec<Client>,
    next: AtomicUsize,
}

impl Db {
    fn client(&self) -> &Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.clients[i % self.clients.len()]
    }
}

fn env(name: &str, default: Option<&str>) -> String {
    match (std::env::var(name), default) {
        (Ok(value), _) => value,
        (Err(_), Some(default)) => default.to_owned(),
        (Err(_), None) => {
            eprintln!("bench-baseline: {name} is required");
            std::process::exit(2);
        }
    }
}

#[tokio::main]
async fn main() {
    let mut config: tokio_postgres::Config =
        env("DATABASE_URL", None).parse().expect("DATABASE_URL");
    if let Ok(password) = std::env::var("DATABASE_PASSWORD") {
        config.password(password);
    }
    let size: usize = env("DATABASE_POOL_SIZE", Some("16")).parse().unwrap_or(16);
    let mut clients = Vec::with_capacity(size);
    for _ in 0..size.max(1) {
        let (client, connection) = config.connect(NoTls).await.expect("connect");
        tokio::spawn(connection);
        clients.push(client);
    }
    let db = Arc::new(Db {
        clients,
        next: AtomicUsize::new(0),
    });
    let address = format!(
        "{}:{}",
        env("BIND_ADDRESS", Some("127.0.0.1")),
        env("PORT", Some("8080"))
    );
    let listener = TcpListener::bind(&address).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let db = db.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, db.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    db: Arc<Db>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    if path == "/readyz" || path == "/healthz" {
        return Ok(reply(StatusCode::OK, b"{\"status\":\"ok\"}".to_vec(), None));
    }
    let mut parts = path.strip_prefix("/results/").unwrap_or("").split('/');
    let key = match (parts.next(), parts.next(), parts.next()) {
        (Some(year), Some(roll), None) => year.parse::<i32>().ok().zip(roll.parse::<i64>().ok()),
        _ => None,
    };
    let Some((year, roll)) = key else {
        return Ok(error(StatusCode::NOT_FOUND, "not_found", "no such route"));
    };
    if request.method() != Method::GET {
        return Ok(error(StatusCode::NOT_FOUND, "not_found", "no such route"));
    }
    let rows = db
        .client()
        .query_typed(SELECT_RESULT, &[(&year, Type::INT4), (&roll, Type::INT8)])
        .await;
    let row = match rows {
        Ok(rows) => rows.into_iter().next(),
        Err(_) => {
            return Ok(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "database unavailable",
            ))
        }
    };
    let Some(row) = row else {
        return Ok(error(StatusCode::NOT_FOUND, "not_found", "no result"));
    };
    let (roll, year, marks): (i64, i32, i32) = (row.get(0), row.get(1), row.get(2));
    let mut body = String::with_capacity(64);
    let _ = write!(
        body,
        "{{\"roll_number\":{roll},\"exam_year\":{year},\"marks\":{marks}}}"
    );
    Ok(reply(
        StatusCode::OK,
        body.into_bytes(),
        Some(etag(year, roll, marks)),
    ))
}

/// get-result's entity tag: FNV-1a over `year:roll:marks`, as 16 hex digits in quotes.
fn etag(year: i32, roll: i64, marks: i32) -> HeaderValue {
    let mut key = String::with_capacity(32);
    let _ = write!(key, "{year}:{roll}:{marks}");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut tag = String::with_capacity(18);
    let _ = write!(tag, "\"{hash:016x}\"");
    HeaderValue::from_str(&tag).expect("hex digits are a valid header value")
}

fn reply(status: StatusCode, body: Vec<u8>, tag: Option<HeaderValue>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(tag) = tag {
        headers.insert(ETAG, tag);
    }
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!("{{\"error\":{{\"code\":\"{code}\",\"message\":\"{message}\"}}}}");
    reply(status, body.into_bytes(), None)
}
