//! Test support: the database sandbox (`.ci/sandbox.sh`, the one `make up`
//! uses: real PostgreSQL, PgBouncer in transaction pooling, the production
//! roles), a fresh database per test migrated by `sql/migrate.sh` as the
//! owner, and the function under test served in-process on port 0, logged in
//! as its production role (write functions `exam_app`, read functions
//! `exam_reader`).
//!
//! Nothing here is mocked. Set `TEST_LOG=1` to see the functions' logs.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use exam_results::config::{Access, Auth, Config};
use exam_results::limits::ServeLimits;
use exam_results::operations::{
    create_result, delete_result, get_result, list_results, results_page, update_result,
};
use exam_results::ratelimit::RateLimit;
use exam_results::server::{app, serve, Function};
use exam_results::AppState;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_postgres::NoTls;

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// Where a read token is required (list-results): one of `READ_TOKENS`.
pub const READ_TOKEN: &str = "read-token-0123456789abcdef";

pub const CREATE: Function = create_result::FUNCTION;
pub const GET: Function = get_result::FUNCTION;
pub const LIST: Function = list_results::FUNCTION;
pub const UPDATE: Function = update_result::FUNCTION;
pub const DELETE: Function = delete_result::FUNCTION;
pub const PAGE: Function = results_page::FUNCTION;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The login role a function uses in production.
pub fn role_of(access: Access) -> &'static str {
    match access {
        Access::Write => "exam_app",
        Access::Read => "exam_reader",
    }
}

/// Runs `.ci/sandbox.sh ARGS...`; panics with its output when it fails.
fn sandbox(args: &[&str], replica: bool) {
    let mut command = Command::new(repo_root().join(".ci/sandbox.sh"));
    command
        .args(args)
        .env("SANDBOX_FAST", "1")
        .env("SANDBOX_QUIET", "1")
        .env("SANDBOX_REPLICA", if replica { "1" } else { "0" });
    for inherited in [
        "PRIMARY_PORT",
        "REPLICA_PORT",
        "PGBOUNCER_PORT",
        "SANDBOX_DATABASE",
    ] {
        command.env_remove(inherited);
    }
    let output = command
        .output()
        .expect("bash runs .ci/sandbox.sh (make test installs PostgreSQL and PgBouncer)");
    assert!(
        output.status.success(),
        ".ci/sandbox.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read_env_file(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A database sandbox in a temp directory: PostgreSQL (and a streaming
/// replica when asked) behind PgBouncer. A watchdog removes it once this
/// test process exits.
pub struct Cluster {
    pub dir: PathBuf,
    pub pg_port: u16,
    pub bouncer_port: u16,
    /// Set when started with a streaming replica ([`Cluster::start_replicated`]).
    pub replica_port: Option<u16>,
    secrets: HashMap<String, String>,
}

/// The database every sandbox creates and migrates; PgBouncer serves it as
/// `exam_results` (primary) and `exam_results_ro` (replica), like the local stack.
pub const REPLICATED_DB: &str = "exam_results";

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_inner(false)
    }

    /// A primary with a streaming replica and PgBouncer serving
    /// `exam_results` (primary) and `exam_results_ro` (replica).
    pub fn start_replicated() -> Cluster {
        Self::start_inner(true)
    }

    fn start_inner(replicated: bool) -> Cluster {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "er-rs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.to_str().unwrap();
        sandbox(&["start", path], replicated);
        sandbox(&["watch", path, &std::process::id().to_string()], false);
        let facts = read_env_file(&dir.join("sandbox.env"));
        let port = |name: &str| facts[name].parse::<u16>().ok();
        Cluster {
            pg_port: port("PRIMARY_PORT").unwrap(),
            bouncer_port: port("PGBOUNCER_PORT").unwrap(),
            replica_port: port("REPLICA_PORT"),
            secrets: read_env_file(&dir.join("secrets.env")),
            dir,
        }
    }

    fn secret(&self, name: &str) -> &str {
        &self.secrets[name]
    }

    /// The password of a login role of the sandbox.
    pub fn password(&self, role: &str) -> &str {
        self.secret(match role {
            "postgres" => "POSTGRES_PASSWORD",
            "exam_owner" => "EXAM_OWNER_PASSWORD",
            "exam_app" => "EXAM_APP_PASSWORD",
            "exam_reader" => "EXAM_READER_PASSWORD",
            other => panic!("no password for role {other}"),
        })
    }

    /// Starts whatever is down again (PostgreSQL, the replica), same ports and data.
    pub fn start_postgres(&self) {
        sandbox(&["start", self.dir.to_str().unwrap()], false);
    }

    /// Stops PostgreSQL immediately (as a crash or failover would); PgBouncer stays up.
    pub fn stop_postgres(&self) {
        sandbox(&["kill", self.dir.to_str().unwrap(), "primary"], false);
    }

    /// Whether PgBouncer's process is alive (its pidfile names a running process).
    pub fn pgbouncer_running(&self) -> bool {
        std::fs::read_to_string(self.dir.join("pgbouncer/pgbouncer.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    }

    /// The last `lines` lines of one of the sandbox's logs: `pgbouncer/pgbouncer.log`,
    /// `logs/primary.log` or `logs/replica.log` (empty when it does not exist).
    pub fn log_tail(&self, log: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills PgBouncer at once (SIGKILL, as a crashed pod); PostgreSQL stays up.
    pub fn kill_pgbouncer(&self) {
        sandbox(&["kill", self.dir.to_str().unwrap(), "pgbouncer"], false);
    }

    /// Starts (or restarts) the replica.
    pub fn start_replica(&self) {
        assert!(self.replica_port.is_some(), "a replicated cluster");
        self.start_postgres();
    }

    /// Stops the replica immediately; the primary and PgBouncer stay up.
    pub fn stop_replica(&self) {
        sandbox(&["kill", self.dir.to_str().unwrap(), "replica"], false);
    }

    async fn connect(&self, port: u16, database: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("postgres")
            .password(self.password("postgres"))
            .dbname(database)
            .connect(NoTls)
            .await
            .unwrap_or_else(|e| panic!("superuser connection to port {port}: {e}"));
        tokio::spawn(connection);
        client
    }

    /// A superuser connection straight to PostgreSQL (bypassing the pooler),
    /// for arranging and checking what the API cannot.
    pub async fn direct(&self, database: &str) -> tokio_postgres::Client {
        self.connect(self.pg_port, database).await
    }

    /// A superuser connection straight to the replica.
    pub async fn direct_replica(&self) -> tokio_postgres::Client {
        self.connect(
            self.replica_port.expect("a replicated cluster"),
            REPLICATED_DB,
        )
        .await
    }

    /// Runs `sql/migrate.sh` on `database` as the owner, as `make up` and
    /// the chart's migration Job do.
    pub async fn migrate(&self, database: &str) {
        let env = [
            ("PGHOST", "127.0.0.1".to_owned()),
            ("PGPORT", self.pg_port.to_string()),
            ("PGDATABASE", database.to_owned()),
            ("PGUSER", "exam_owner".to_owned()),
            ("PGPASSWORD", self.password("exam_owner").to_owned()),
        ];
        let output = tokio::task::spawn_blocking(move || {
            Command::new(repo_root().join("sql/migrate.sh"))
                .envs(env)
                .env_remove("PGPASSFILE")
                .env_remove("PGSERVICE")
                .env_remove("EXAM_APP_PASSWORD")
                .env_remove("EXAM_READER_PASSWORD")
                .output()
                .expect("sh runs sql/migrate.sh")
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "sql/migrate.sh on {database} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Creates an empty database owned by `exam_owner` and migrates it.
    pub async fn fresh_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        self.direct("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name} OWNER exam_owner"))
            .await
            .unwrap();
        self.migrate(&name).await;
        name
    }

    /// A libpq URL to `database` through PgBouncer as `role`.
    pub fn pooled_url_as(&self, role: &str, database: &str) -> String {
        format!(
            "postgres://{role}:{password}@127.0.0.1:{port}/{database}",
            password = self.password(role),
            port = self.bouncer_port
        )
    }

    /// Through PgBouncer as the write functions' role (`exam_app`).
    pub fn pooled_url(&self, database: &str) -> String {
        self.pooled_url_as("exam_app", database)
    }

    /// Through PgBouncer as the read functions' role (`exam_reader`).
    pub fn reader_url(&self, database: &str) -> String {
        self.pooled_url_as("exam_reader", database)
    }
}

/// Every file in sql/migrations, in the order the runner applies them.
pub fn migration_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("sql/migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

/// The sandbox most tests share (each test gets its own database in it).
pub fn shared_cluster() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(Cluster::start)
}

fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        exam_results::telemetry::init_logging("info", exam_results::config::LogFormat::Json);
    }
}

/// A function served in-process on 127.0.0.1:0.
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub database: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<()>>,
}

/// Options for [`spawn_with`].
pub struct Spawn<'a> {
    pub cluster: &'a Cluster,
    pub database: String,
    pub extra_env: Vec<(&'static str, String)>,
}

/// Serves `function` against a fresh database in the shared cluster.
pub async fn spawn(function: Function) -> TestApp {
    spawn_env(function, vec![]).await
}

/// Serves `function` against a fresh database in the shared cluster, with
/// `extra_env` added to its configuration.
pub async fn spawn_env(function: Function, extra_env: Vec<(&'static str, String)>) -> TestApp {
    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    spawn_with(
        function,
        Spawn {
            cluster,
            database,
            extra_env,
        },
    )
    .await
}

/// Serves `function` with explicit options.
pub async fn spawn_with(function: Function, options: Spawn<'_>) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_on(listener, function, options).await
}

/// Serves `function` on a listener bound beforehand (when another
/// function's configuration needs its address first).
pub async fn spawn_on(listener: TcpListener, function: Function, options: Spawn<'_>) -> TestApp {
    init_test_logging();
    let mut env: Vec<(String, String)> = vec![
        (
            "DATABASE_URL".into(),
            options
                .cluster
                .pooled_url_as(role_of(function.access), &options.database),
        ),
        (
            "WRITE_TOKENS".into(),
            format!("{TOKEN},another-token-0123456789"),
        ),
        ("READ_TOKENS".into(), READ_TOKEN.into()),
        ("DATABASE_POOL_TIMEOUT_MS".into(), "500".into()),
        ("DATABASE_CONNECT_TIMEOUT_MS".into(), "500".into()),
        ("DATABASE_STATEMENT_TIMEOUT_MS".into(), "1500".into()),
        // One test client stands for many users: no per-client limit unless a test sets one.
        ("RATE_LIMIT_PER_SECOND".into(), "0".into()),
    ];
    // Extra variables override the defaults above.
    env.retain(|(name, _)| !options.extra_env.iter().any(|(extra, _)| extra == name));
    env.extend(
        options
            .extra_env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
    );
    let config = Config::from_iter(env, function.auth).expect("test configuration is valid");
    let state = AppState::from_config(&config);
    exam_results::server::spawn_replica_lag_probe(&state);
    let address = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let limits = ServeLimits {
        drain: Duration::from_secs(10),
        ..ServeLimits::from_config(&config)
    };
    let rate_limit = match function.auth {
        Auth::Public => RateLimit::from_config(&config),
        Auth::ReadToken | Auth::WriteToken => None,
    };
    let server = tokio::spawn(serve(
        app(function, state),
        listener,
        async move {
            let _ = rx.await;
        },
        limits,
        rate_limit,
    ));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap(),
        database: options.database,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// A response read whole: status, headers and JSON body (Null when empty).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request reached the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("body is JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.header("authorization", format!("Bearer {TOKEN}"))
    }

    pub async fn create(&self, body: Value) -> Reply {
        self.send(
            self.authed(self.client.post(self.url("/results")))
                .json(&body),
        )
        .await
    }

    pub async fn get(&self, year: i32, roll: i64) -> Reply {
        self.send(
            self.client
                .get(self.url(&format!("/results/{year}/{roll}"))),
        )
        .await
    }

    /// GET /results?{query} with the read token.
    pub async fn list(&self, query: &str) -> Reply {
        self.send(
            self.client
                .get(self.url(&format!("/results?{query}")))
                .header("authorization", format!("Bearer {READ_TOKEN}")),
        )
        .await
    }

    pub async fn put_marks(&self, year: i32, roll: i64, marks: Value) -> Reply {
        let url = self.url(&format!("/results/{year}/{roll}"));
        self.send(
            self.authed(self.client.put(url))
                .json(&serde_json::json!({ "marks": marks })),
        )
        .await
    }

    pub async fn delete(&self, year: i32, roll: i64) -> Reply {
        self.delete_as(year, roll, TOKEN).await
    }

    /// DELETE with an explicit bearer token.
    pub async fn delete_as(&self, year: i32, roll: i64, token: &str) -> Reply {
        let url = self.url(&format!("/results/{year}/{roll}"));
        self.send(
            self.client
                .delete(url)
                .header("authorization", format!("Bearer {token}")),
        )
        .await
    }

    /// Inserts rows directly (as board staff would have through create-result).
    pub async fn insert_rows(&self, cluster: &Cluster, rows: &[(i64, i32, i32)]) {
        let client = cluster.direct(&self.database).await;
        for (roll, year, marks) in rows {
            client
                .execute(
                    "INSERT INTO student_results (roll_number, exam_year, marks) VALUES ($1, $2, $3)",
                    &[roll, year, marks],
                )
                .await
                .unwrap();
        }
    }

    /// How many results the test's database holds (read directly, not through the app).
    pub async fn row_count(&self, cluster: &Cluster) -> i64 {
        cluster
            .direct(&self.database)
            .await
            .query_one("SELECT count(*) FROM student_results", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Signals shutdown and waits for the server to drain.
    pub async fn shut_down(&mut self) -> Result<(), tokio::task::JoinError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(server) => server.await,
            None => Ok(()),
        }
    }
}
