//! Logs and metrics, set up once per process.
//!
//! Metric names follow vector's instrumentation spec and OpenTelemetry's HTTP
//! conventions as Prometheus renders them: `<namespace>_<name>_<unit>`,
//! counters end in `_total`, every label comes from a small bounded set.
//! Each measured event is one function below that records its metrics (and,
//! for requests, writes its log line) side by side. docs/observability.md
//! lists every metric; the dashboards and alerts use exactly these names.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::thread::LocalKey;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

mod request_log;

/// Request duration histogram (seconds), per method, route template and status.
pub const HTTP_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Requests being served right now.
pub const HTTP_ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// Pool connections by `state` (in_use, idle).
pub const POOL_CONNECTIONS: &str = "exam_results_db_pool_connections";
/// The pool's configured size.
pub const POOL_MAX_CONNECTIONS: &str = "exam_results_db_pool_max_connections";
/// Time spent waiting for a pooled connection.
pub const POOL_WAIT_DURATION: &str = "exam_results_db_pool_wait_duration_seconds";
/// Query duration by `operation`.
pub const QUERY_DURATION: &str = "exam_results_db_query_duration_seconds";
/// Error replies by stable `code`.
pub const ERRORS: &str = "exam_results_errors_total";
/// The read replica's replay lag as last measured.
pub const REPLICA_LAG: &str = "exam_results_replica_lag_seconds";
/// Lookups in the read functions' in-process cache, by `cache` (result,
/// statistics) and `outcome`: `hit`, `miss` (this request queried the
/// database) or `coalesced` (it waited for another request's query).
pub const READ_CACHE_LOOKUPS: &str = "exam_results_read_cache_lookups_total";
/// Entries in the in-process cache, by `cache`, as of its last miss.
pub const READ_CACHE_ENTRIES: &str = "exam_results_read_cache_entries";
/// Always 1, labelled with version and revision.
pub const BUILD_INFO: &str = "exam_results_build_info";
/// Client connections open right now.
pub const CONNECTIONS_OPEN: &str = "exam_results_http_connections_open";
/// Connections refused because `HTTP_MAX_CONNECTIONS` were open.
pub const CONNECTIONS_REFUSED: &str = "exam_results_http_connections_refused_total";
/// Connections that ended in an error, by `kind`: `malformed_request` (the
/// HTTP layer could not parse a request), `idle_timeout`, `header_timeout`,
/// `body_timeout`, `incomplete` (the client hung up mid-request), `io`,
/// `accept` (the listener failed to accept), `other`.
pub const CONNECTION_ERRORS: &str = "exam_results_http_connection_errors_total";

/// Histogram buckets (seconds) shared by every duration metric: 1 ms to 10 s.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();
static FUNCTION: OnceLock<&'static str> = OnceLock::new();

/// Names this process's function in every request log line.
pub fn set_function(name: &'static str) {
    let _ = FUNCTION.set(name);
}

fn function() -> &'static str {
    FUNCTION.get().copied().unwrap_or("unknown")
}

static LOG_WRITER: std::sync::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> =
    std::sync::Mutex::new(None);

/// Installs the JSON (or pretty) log subscriber. Safe to call more than once.
///
/// Lines are formatted on the request's thread and written to stdout by one
/// background thread, so a slow stdout pipe never stalls a request. The
/// buffer is not lossy: if it ever fills, logging waits rather than drops
/// lines. Call [`flush_logs`] before the process exits.
pub fn init_logging(level: &str, format: LogFormat) {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // hyper reports every client that hangs up mid-request (a load balancer's
    // idle close, a user closing the tab) as an ERROR "server connection
    // error"; that is not a server fault. Silenced unless LOG_LEVEL names warp.
    if !level.contains("warp") {
        filter = filter.add_directive("warp::server=off".parse().expect("a valid directive"));
    }
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // Buffered: the writer thread drains every queued line, then flushes,
        // so a burst of lines costs one write(2) (docs/performance.md).
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match format {
        LogFormat::Json => builder
            .with_writer(writer.clone())
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
            .map(|()| request_log::install(writer)),
        LogFormat::Pretty => builder.with_writer(writer).try_init(),
    };
    if installed.is_ok() {
        *LOG_WRITER.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
    }
}

/// Logs a panic as one JSON line (message and location) instead of the
/// standard multi-line report on stderr. The serving loop answers the request
/// that panicked with a 500 and keeps the connection.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(function = function(), panic = %message, location, "panic");
    }));
}

/// Writes out every buffered log line (at shutdown).
pub fn flush_logs() {
    drop(LOG_WRITER.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// Installs the Prometheus recorder once per process and returns its handle.
/// `function` becomes a label on every series.
pub fn init_metrics(function: &'static str) -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .add_global_label("function", function)
                .set_buckets(&DURATION_BUCKETS)
                .expect("buckets are non-empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "revision" => option_env!("GIT_REVISION").unwrap_or("unknown"))
                .set(1.0);
            handle
        })
        .clone()
}

/// Runs the exporter's upkeep (histogram bucket maintenance) every few seconds.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Everything the request log line and metrics need to know about one request.
pub struct RequestRecord<'a> {
    /// Bounded method label (GET, POST, PUT, DELETE, HEAD, OTHER).
    pub method: &'static str,
    /// Route template or `unmatched`.
    pub route: &'static str,
    /// Raw path, for the log line only (never a label).
    pub path: &'a str,
    /// HTTP status sent.
    pub status: u16,
    /// Time from receipt to response.
    pub elapsed: Duration,
    /// The request id echoed to the client.
    pub request_id: &'a str,
    /// Stable error code, if the reply was an error.
    pub error_code: Option<&'static str>,
    /// Server-side cause of a 5xx, logged only.
    pub error_cause: Option<&'a str>,
}

/// Records one served request: its metrics and its single JSON log line.
pub fn record_request(record: RequestRecord<'_>) {
    let status = status_label(record.status);
    thread_local! {
        static DURATION: Handles<(&'static str, &'static str, &'static str), Histogram> = const { Handles::new() };
        static ERROR_CODES: Handles<&'static str, Counter> = const { Handles::new() };
    }
    with_handle(
        &DURATION,
        (record.method, record.route, status),
        || histogram!(HTTP_REQUEST_DURATION, "http_request_method" => record.method, "http_route" => record.route, "http_response_status_code" => status),
        |h| h.record(record.elapsed.as_secs_f64()),
    );
    if let Some(code) = record.error_code {
        with_handle(
            &ERROR_CODES,
            code,
            || counter!(ERRORS, "code" => code),
            |c| c.increment(1),
        );
    }
    // One line per request; server errors at ERROR level with their cause.
    let error = record.status >= 500;
    if !request_log::installed() {
        request_event(error, &record);
    } else if error && tracing::enabled!(tracing::Level::ERROR) {
        request_log::write("ERROR", function(), &record);
    } else if !error && tracing::enabled!(tracing::Level::INFO) {
        request_log::write("INFO", function(), &record);
    }
}

/// The request line as a tracing event: what every format but JSON writes
/// (the JSON line, the same fields, is written by [`request_log`]).
fn request_event(error: bool, record: &RequestRecord<'_>) {
    macro_rules! request_line {
        ($level:expr) => {
            tracing::event!(
                $level,
                function = function(),
                method = record.method,
                route = record.route,
                path = record.path,
                status = record.status,
                latency_ms = record.elapsed.as_secs_f64() * 1000.0,
                request_id = record.request_id,
                error.code = record.error_code,
                error.cause = record.error_cause,
                "request"
            )
        };
    }
    if error {
        request_line!(tracing::Level::ERROR);
    } else {
        request_line!(tracing::Level::INFO);
    }
}

/// Metric handles of one metric by label set, per thread: each label set is
/// registered once (per thread) instead of looked up on every use, which
/// would build and hash its key each time.
struct Handles<K, H>(RefCell<Vec<(K, H)>>);

impl<K, H> Handles<K, H> {
    const fn new() -> Self {
        Self(RefCell::new(Vec::new()))
    }
}

/// Runs `use_it` on the handle for `key`, registering it with `register`
/// the first time. Until the recorder is installed ([`init_metrics`])
/// nothing is kept: a handle taken before would record nowhere.
fn with_handle<K: PartialEq + Copy, H>(
    cache: &'static LocalKey<Handles<K, H>>,
    key: K,
    register: impl FnOnce() -> H,
    use_it: impl FnOnce(&H),
) {
    if METRICS.get().is_none() {
        return use_it(&register());
    }
    cache.with(|handles| {
        let mut handles = handles.0.borrow_mut();
        match handles.iter().find(|(k, _)| *k == key) {
            Some((_, handle)) => use_it(handle),
            None => {
                let handle = register();
                use_it(&handle);
                handles.push((key, handle));
            }
        }
    });
}

/// Counts a request as in flight until the guard is dropped (even if the
/// client goes away mid-request).
pub struct InFlight(Gauge);

impl InFlight {
    /// Starts counting.
    pub fn start(method: &'static str, route: &'static str) -> Self {
        thread_local! {
            static ACTIVE: Handles<(&'static str, &'static str), Gauge> = const { Handles::new() };
        }
        let mut gauge = None;
        with_handle(
            &ACTIVE,
            (method, route),
            || gauge!(HTTP_ACTIVE_REQUESTS, "http_request_method" => method, "http_route" => route),
            |g| gauge = Some(g.clone()),
        );
        let gauge = gauge.unwrap_or_else(Gauge::noop);
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Records how long a request waited for a pooled connection.
pub fn record_pool_wait(waited: Duration) {
    thread_local! {
        static WAIT: Handles<(), Histogram> = const { Handles::new() };
    }
    with_handle(
        &WAIT,
        (),
        || histogram!(POOL_WAIT_DURATION),
        |h| {
            h.record(waited.as_secs_f64());
        },
    );
}

/// Records one query's duration.
pub fn record_query(operation: &'static str, elapsed: Duration) {
    thread_local! {
        static QUERIES: Handles<&'static str, Histogram> = const { Handles::new() };
    }
    with_handle(
        &QUERIES,
        operation,
        || histogram!(QUERY_DURATION, "operation" => operation),
        |h| h.record(elapsed.as_secs_f64()),
    );
}

/// Publishes the pool's state (called at each scrape).
pub fn record_pool(in_use: u32, idle: u32, max: u32) {
    gauge!(POOL_CONNECTIONS, "state" => "in_use").set(f64::from(in_use));
    gauge!(POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    gauge!(POOL_MAX_CONNECTIONS).set(f64::from(max));
}

/// Counts one in-process cache lookup.
pub fn record_cache_lookup(cache: &'static str, outcome: &'static str) {
    counter!(READ_CACHE_LOOKUPS, "cache" => cache, "outcome" => outcome).increment(1);
}

/// Publishes an in-process cache's entry count.
pub fn record_cache_entries(cache: &'static str, entries: u64) {
    gauge!(READ_CACHE_ENTRIES, "cache" => cache).set(entries as f64);
}

/// Publishes the replica's measured lag.
pub fn record_replica_lag(seconds: f64) {
    gauge!(REPLICA_LAG).set(seconds);
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        429 => "429",
        431 => "431",
        422 => "422",
        500 => "500",
        503 => "503",
        // Anything else is folded into its class, keeping the label set bounded.
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// Counts an open connection until the guard is dropped.
pub struct OpenConnection(());

impl OpenConnection {
    /// Starts counting.
    pub fn start() -> Self {
        gauge!(CONNECTIONS_OPEN).increment(1.0);
        Self(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        gauge!(CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Records a connection that ended in an error (see [`CONNECTION_ERRORS`]).
/// Logged at DEBUG: a client's broken connection is not a server fault, and
/// anyone can cause thousands of them.
pub fn record_connection_error(
    kind: &'static str,
    peer: std::net::SocketAddr,
    error: &dyn std::fmt::Display,
) {
    counter!(CONNECTION_ERRORS, "kind" => kind).increment(1);
    tracing::debug!(function = function(), kind, peer = %peer, error = %error, "connection error");
}

/// Records a request whose body did not arrive within `HTTP_BODY_READ_TIMEOUT_MS`
/// (the request is answered 400 and its connection closed).
pub fn record_body_timeout() {
    counter!(CONNECTION_ERRORS, "kind" => "body_timeout").increment(1);
}

/// Records a failed `accept` (e.g. the open-file limit): always logged, at most
/// once a second with the count since the last line.
pub fn record_accept_error(error: &std::io::Error) {
    counter!(CONNECTION_ERRORS, "kind" => "accept").increment(1);
    static THROTTLE: Throttle = Throttle::new();
    if let Some(count) = THROTTLE.ready() {
        tracing::warn!(function = function(), error = %error, count, "accept failed");
    }
}

/// Records a connection refused at the connection cap (answered 503
/// `overloaded`): counted, and logged at most once a second with the count
/// since the last line.
pub fn record_connection_refused(open: usize) {
    counter!(CONNECTIONS_REFUSED).increment(1);
    counter!(ERRORS, "code" => "overloaded").increment(1);
    static THROTTLE: Throttle = Throttle::new();
    if let Some(count) = THROTTLE.ready() {
        tracing::warn!(
            function = function(),
            open,
            count,
            "connection refused: HTTP_MAX_CONNECTIONS reached"
        );
    }
}

/// Records a request the HTTP layer could not parse, answered with a JSON
/// error: its error code and one log line with a request id (the client sees
/// the same id in `x-request-id`). The connection error itself is counted
/// when the connection ends.
pub fn record_malformed_request(
    status: u16,
    code: &'static str,
    request_id: &str,
    peer: std::net::SocketAddr,
) {
    counter!(ERRORS, "code" => code).increment(1);
    tracing::info!(
        function = function(),
        status,
        request_id,
        peer = %peer,
        error.code = code,
        "malformed request"
    );
}

/// Lets one event through per second and counts the ones held back.
struct Throttle {
    last_second: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicU64,
}

impl Throttle {
    const fn new() -> Self {
        Self {
            last_second: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(events since the last one let through)` at most once a second.
    fn ready(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let held = self.held.fetch_add(1, Relaxed) + 1;
        let last = self.last_second.load(Relaxed);
        if now > last
            && self
                .last_second
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.held.fetch_sub(held, Relaxed);
            Some(held)
        } else {
            None
        }
    }
}
