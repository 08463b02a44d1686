//! Test support: a real, throwaway PostgreSQL with PgBouncer in front of it
//! (transaction pooling), a fresh database per test with the migrations
//! applied, and the function under test served in-process on port 0.
//!
//! Nothing here is mocked. Set `TEST_LOG=1` to see the functions' logs.

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use exam_results::config::{Auth, Config};
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

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// PostgreSQL's server binaries (initdb, postgres, pg_ctl): `PG_BIN`, or the newest in /usr/lib/postgresql.
fn pg_bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Path::new(&dir).join(name);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|dir| dir.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A command run as the unprivileged `postgres` user when we are root
/// (initdb, postgres and pgbouncer refuse to run as root).
fn unprivileged(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PostgreSQL server and a PgBouncer in front of it, in a temp directory,
/// cleaned up by a watchdog when the test process exits.
pub struct Cluster {
    pub dir: PathBuf,
    pub pg_port: u16,
    pub bouncer_port: u16,
    /// Set when started with a streaming replica ([`Cluster::start_replicated`]).
    pub replica_port: Option<u16>,
    postgres: Mutex<Option<Child>>,
    replica: Mutex<Option<Child>>,
    pgbouncer: Mutex<Option<Child>>,
}

/// The database a replicated cluster creates; PgBouncer serves it as
/// `exam_results` (primary) and `exam_results_ro` (replica), like the local stack.
pub const REPLICATED_DB: &str = "exam_results";

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_inner(false)
    }

    /// A primary with a streaming replica (pg_basebackup) and PgBouncer
    /// serving `exam_results` (primary) and `exam_results_ro` (replica).
    pub fn start_replicated() -> Cluster {
        Self::start_inner(true)
    }

    fn start_inner(replicated: bool) -> Cluster {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "exam-results-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if running_as_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success(), "chown of the test directory failed");
        }
        let status = unprivileged(pg_bin("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("pg"))
            .stdout(Stdio::null())
            .status()
            .expect("initdb is installed (make test installs postgresql)");
        assert!(status.success(), "initdb failed");
        let cluster = Cluster {
            pg_port: free_port(),
            bouncer_port: free_port(),
            replica_port: replicated.then(free_port),
            dir,
            postgres: Mutex::new(None),
            replica: Mutex::new(None),
            pgbouncer: Mutex::new(None),
        };
        cluster.spawn_watchdog();
        cluster.write_pgbouncer_config();
        cluster.start_postgres();
        if replicated {
            cluster.create_replicated_database();
            cluster.clone_replica();
            cluster.start_replica();
        }
        cluster.start_pgbouncer();
        cluster
    }

    /// Starts (or restarts) PostgreSQL on the same port and data directory.
    pub fn start_postgres(&self) {
        let child = unprivileged(pg_bin("postgres"))
            .arg("-D")
            .arg(self.dir.join("pg"))
            .args(["-p", &self.pg_port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("postgres.log")).unwrap())
            .spawn()
            .expect("postgres starts");
        *self.postgres.lock().unwrap() = Some(child);
        wait_for_port(self.pg_port, "postgres");
        // Accepting TCP is not the same as accepting logins.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(pg_bin("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.pg_port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "postgres never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops PostgreSQL immediately (as a crash or failover would); PgBouncer stays up.
    pub fn stop_postgres(&self) {
        if let Some(mut child) = self.postgres.lock().unwrap().take() {
            // SIGQUIT to the postmaster is an immediate shutdown (like a crash).
            let pidfile =
                std::fs::read_to_string(self.dir.join("pg/postmaster.pid")).unwrap_or_default();
            if let Some(pid) = pidfile.lines().next() {
                let _ = Command::new("kill").args(["-QUIT", pid]).status();
            }
            let _ = child.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", self.pg_port)).is_ok() {
                assert!(Instant::now() < deadline, "postgres did not stop");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn create_replicated_database(&self) {
        // Called from inside a test's runtime: run on a thread with its own.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let admin = self.direct("postgres").await;
                    admin
                        .batch_execute(&format!("CREATE DATABASE {REPLICATED_DB}"))
                        .await
                        .unwrap();
                    apply_migrations(&self.direct(REPLICATED_DB).await).await;
                });
            });
        });
    }

    fn clone_replica(&self) {
        let status = unprivileged(pg_bin("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.pg_port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-R", "-X", "stream", "-c", "fast", "-D"])
            .arg(self.dir.join("replica"))
            .status()
            .unwrap();
        assert!(status.success(), "pg_basebackup failed");
    }

    /// Starts (or restarts) the replica.
    pub fn start_replica(&self) {
        let port = self.replica_port.expect("a replicated cluster");
        let child = unprivileged(pg_bin("postgres"))
            .arg("-D")
            .arg(self.dir.join("replica"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "hot_standby=on",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("replica.log")).unwrap())
            .spawn()
            .expect("replica starts");
        *self.replica.lock().unwrap() = Some(child);
        if std::panic::catch_unwind(|| wait_for_port(port, "replica")).is_err() {
            panic!(
                "replica did not listen:\n{}",
                std::fs::read_to_string(self.dir.join("replica.log")).unwrap_or_default()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new(pg_bin("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            assert!(
                Instant::now() < deadline,
                "replica never became ready:\n{}",
                std::fs::read_to_string(self.dir.join("replica.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the replica immediately; the primary and PgBouncer stay up.
    pub fn stop_replica(&self) {
        if let Some(mut child) = self.replica.lock().unwrap().take() {
            let pidfile = std::fs::read_to_string(self.dir.join("replica/postmaster.pid"))
                .unwrap_or_default();
            if let Some(pid) = pidfile.lines().next() {
                let _ = Command::new("kill").args(["-QUIT", pid]).status();
            }
            let _ = child.wait();
        }
    }

    /// A superuser connection straight to the replica.
    pub async fn direct_replica(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.replica_port.expect("a replicated cluster"))
            .user("postgres")
            .dbname(REPLICATED_DB)
            .connect(NoTls)
            .await
            .expect("direct connection to the replica");
        tokio::spawn(connection);
        client
    }

    fn write_pgbouncer_config(&self) {
        let replicated = match self.replica_port {
            Some(replica) => format!(
                "{REPLICATED_DB} = host=127.0.0.1 port={pg}\n{REPLICATED_DB}_ro = host=127.0.0.1 port={replica} dbname={REPLICATED_DB}\n",
                pg = self.pg_port
            ),
            None => String::new(),
        };
        let ini = format!(
            "[databases]\n\
             {replicated}\
             * = host=127.0.0.1 port={pg}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {bouncer}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = transaction\n\
             max_client_conn = 500\n\
             default_pool_size = 20\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             server_login_retry = 1\n\
             query_wait_timeout = 5\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            pg = self.pg_port,
            bouncer = self.bouncer_port,
            dir = self.dir.display()
        );
        std::fs::write(self.dir.join("pgbouncer.ini"), ini).unwrap();
        std::fs::write(self.dir.join("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
    }

    fn start_pgbouncer(&self) {
        let child = unprivileged("pgbouncer")
            .arg(self.dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer is installed (make test installs it)");
        *self.pgbouncer.lock().unwrap() = Some(child);
        wait_for_port(self.bouncer_port, "pgbouncer");
    }

    /// Kills both servers and removes the directory once this test process exits.
    fn spawn_watchdog(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             kill -QUIT $(head -n1 '{dir}/pg/postmaster.pid'); kill $(cat '{dir}/pgbouncer.pid'); \
             sleep 1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        // Deliberately not waited for: it outlives this process by design.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh exists");
    }

    /// A superuser connection straight to PostgreSQL (bypassing the pooler).
    pub async fn direct(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.pg_port)
            .user("postgres")
            .dbname(database)
            .connect(NoTls)
            .await
            .expect("direct connection to postgres");
        tokio::spawn(connection);
        client
    }

    /// Creates an empty database with the migrations applied.
    pub async fn fresh_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        self.direct("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        apply_migrations(&self.direct(&name).await).await;
        name
    }

    /// A libpq URL to `database` through PgBouncer.
    pub fn pooled_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.bouncer_port
        )
    }
}

/// Applies every file in sql/migrations in order.
pub async fn apply_migrations(client: &tokio_postgres::Client) {
    for file in migration_files() {
        let sql = std::fs::read_to_string(&file).unwrap();
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

pub fn migration_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("sql/migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

/// The cluster most tests share (each test gets its own database in it).
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
    let cluster = shared_cluster();
    let database = cluster.fresh_database().await;
    spawn_with(
        function,
        Spawn {
            cluster,
            database,
            extra_env: vec![],
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
            options.cluster.pooled_url(&options.database),
        ),
        (
            "WRITE_TOKENS".into(),
            format!("{TOKEN},another-token-0123456789"),
        ),
        ("READ_TOKENS".into(), READ_TOKEN.into()),
        ("DATABASE_POOL_TIMEOUT_MS".into(), "500".into()),
        ("DATABASE_CONNECT_TIMEOUT_MS".into(), "500".into()),
        ("DATABASE_STATEMENT_TIMEOUT_MS".into(), "1500".into()),
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
