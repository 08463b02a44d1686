//! Assembling a function and serving it: the request envelope around the
//! routes, the accept loop (connection cap, per-connection limits from
//! [`crate::limits`], the per-client rate limit from [`crate::ratelimit`]),
//! the metrics listener, graceful shutdown, and `run`, which each binary's
//! `main` calls.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::Either;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::http::Request;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::config::{Auth, Config};
use crate::error::ApiError;
use crate::http::{context, finish, handle_rejection};
use crate::limits::{raw_error_response, ConnectionState, ServeLimits, TimedBody, WatchedIo};
pub use crate::operations::Function;
use crate::operations::{get_result, health};
use crate::ratelimit::RateLimit;
use crate::state::AppState;
use crate::telemetry;

/// The complete HTTP application of one function: its route, the probes,
/// JSON errors for everything else, and the per-request envelope.
///
/// Requests the serving loop has already decided (rate limited, or a request
/// target that is not a path) are answered first, inside the envelope, so
/// they are logged and counted like any other request.
///
/// get-result's plain reads, the results-day hot path, are served by
/// [`get_result::Direct`] before the filters (same handler, same envelope);
/// every other request, including each of its errors, goes through them.
pub fn app(function: Function, state: AppState) -> App {
    let direct = (function.name == get_result::FUNCTION.name)
        .then(|| get_result::Direct::new(state.clone()));
    App {
        filter: filters(function, state),
        direct,
    }
}

/// A function's HTTP application, as [`serve`] runs it.
#[derive(Clone)]
pub struct App {
    filter: BoxedFilter<(Response,)>,
    direct: Option<Arc<get_result::Direct>>,
}

fn filters(function: Function, state: AppState) -> BoxedFilter<(Response,)> {
    let cors = crate::web::cors_origin(function.auth, &state.web);
    let decided =
        warp::ext::optional::<EdgeVerdict>().and_then(|verdict: Option<EdgeVerdict>| async move {
            verdict
                .map(|v| ApiError::from(v).into_response())
                .ok_or_else(warp::reject::not_found)
        });
    let routes = decided
        .or(health::routes(state.clone()))
        .unify()
        .or((function.routes)(state))
        .unify()
        .recover(handle_rejection)
        .unify();
    let routes = cors.and(routes).map(crate::web::with_cors);
    context(function.served_routes())
        .and(routes)
        .map(finish)
        .boxed()
}

/// What the serving loop decided about a request before routing it.
#[derive(Clone, Copy, Debug)]
enum EdgeVerdict {
    /// The client's bucket is empty: 429 with this `Retry-After`.
    RateLimited(u64),
    /// The request target is not a path (`CONNECT host:port`, `OPTIONS *`).
    NotOriginForm,
}

impl From<EdgeVerdict> for ApiError {
    fn from(verdict: EdgeVerdict) -> Self {
        match verdict {
            EdgeVerdict::RateLimited(retry_after_seconds) => ApiError::RateLimited {
                retry_after_seconds,
            },
            EdgeVerdict::NotOriginForm => ApiError::BadRequest(
                "the request target must be a path such as /results/2026/100000001".into(),
            ),
        }
    }
}

/// Everything a connection needs to serve requests.
#[derive(Clone)]
struct Shared {
    app: App,
    limits: ServeLimits,
    /// The per-client limit; `None` for write functions or when turned off.
    rate_limit: Option<Arc<RateLimit>>,
}

/// Serves `app` on `listener` until `shutdown` resolves, with every
/// connection held to `limits` and, when given, public requests to the
/// per-client `rate_limit`; then lets requests in flight finish for up to
/// `limits.drain` before returning.
///
/// The accept loop takes a permit per connection; with
/// `limits.max_connections` open, a new connection gets an immediate 503
/// `overloaded` and is closed, while the open ones keep being served.
pub async fn serve<F>(
    app: App,
    listener: TcpListener,
    shutdown: F,
    limits: ServeLimits,
    rate_limit: Option<Arc<RateLimit>>,
) where
    F: Future<Output = ()> + Send + 'static,
{
    if let Some(limiter) = &rate_limit {
        limiter.spawn_upkeep();
    }
    let shared = Shared {
        app,
        limits,
        rate_limit,
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    telemetry::record_accept_error(&err);
                    // Out of file descriptors (or similar): give connections
                    // time to close instead of spinning on the error.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refuse(stream, limits.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, shared, watcher).await;
            drop(permit);
        });
    }
    // Stop accepting (the listener closes), close idle keep-alive
    // connections, and let requests in flight finish.
    drop(listener);
    tracing::info!("shutdown requested: no new connections, draining requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all requests drained"),
        () = tokio::time::sleep(limits.drain) => tracing::warn!(drain_seconds = limits.drain.as_secs(), "drain timeout reached; closing remaining connections"),
    }
}

/// Answers a connection over the cap with a 503 and closes it, without
/// waiting for anything: the response fits in the socket's send buffer.
fn refuse(stream: TcpStream, open: usize) {
    telemetry::record_connection_refused(open);
    let request_id = uuid::Uuid::new_v4().to_string();
    let response = raw_error_response(
        503,
        &ApiError::Overloaded,
        &request_id,
        &[("retry-after", "1")],
    );
    let _ = stream.try_write(&response);
    // Read what already arrived so closing sends FIN, not RST (which could
    // discard the response before the client reads it).
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        if !matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
    if let Ok(stream) = stream.into_std() {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

/// Serves one connection (HTTP/1.1 with keep-alive) until it closes, a
/// timeout closes it, or shutdown closes it once idle.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Shared,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _open = telemetry::OpenConnection::start();
    let state = ConnectionState::new(shared.limits, peer);
    let io = TokioIo::new(WatchedIo::new(stream, Arc::clone(&state)));
    let service_state = Arc::clone(&state);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let started = service_state.request_started();
        let request = edge(request, &service_state, shared.rate_limit.as_deref());
        let direct = match &shared.app.direct {
            Some(direct) if request.extensions().get::<EdgeVerdict>().is_none() => {
                direct.serve(&request)
            }
            _ => None,
        };
        let response = match direct {
            Some(response) => Either::Left(response.map(Ok::<_, Infallible>)),
            None => Either::Right(warp::service(shared.app.filter.clone()).call(request)),
        };
        let response = AssertUnwindSafe(response).catch_unwind();
        async move {
            let response = match response.await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                // A bug, not the client's fault: a JSON 500 instead of a dropped
                // connection (the panic itself is logged by the panic hook).
                Err(_) => {
                    let mut response =
                        ApiError::Internal("a request handler panicked".into()).into_response();
                    if let Ok(id) = uuid::Uuid::new_v4().to_string().parse() {
                        response.headers_mut().insert(crate::http::REQUEST_ID, id);
                    }
                    response
                }
            };
            drop(started);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(shared.limits.max_header_bytes)
        .writev(false)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    let outcome = watcher.watch(connection).await;
    // A connection closed by a timeout is counted even where hyper treats
    // the close as clean (an idle keep-alive connection).
    match (state.stalled(), outcome) {
        (Some(stall), _) => telemetry::record_connection_error(stall.label(), peer, &stall.label()),
        (None, Err(err)) => {
            telemetry::record_connection_error(connection_error_kind(&err), peer, &err);
        }
        (None, Ok(())) => {}
    }
}

/// Decides what the serving loop can about a request before routing it:
/// the request target, the rate limit and the body deadline.
fn edge(
    request: Request<Incoming>,
    state: &ConnectionState,
    rate_limit: Option<&RateLimit>,
) -> Request<TimedBody<Incoming>> {
    let (mut parts, body) = request.into_parts();
    let peer = state.peer();
    // warp panics on a request target that is not a path: an authority
    // (`CONNECT host:port`) or `*` (`OPTIONS *`); seanmonstar/warp#1166.
    // Such requests are routed as `/` and answered 400 by `app`.
    if !parts.uri.path().starts_with('/') {
        parts.uri = warp::http::Uri::from_static("/");
        parts.extensions.insert(EdgeVerdict::NotOriginForm);
    } else if let Some(limiter) = rate_limit {
        let probe = matches!(parts.uri.path(), "/healthz" | "/readyz");
        if !probe {
            if let Err(retry_after) = limiter.check(&parts.headers, Some(peer)) {
                parts
                    .extensions
                    .insert(EdgeVerdict::RateLimited(retry_after));
            }
        }
    }
    Request::from_parts(parts, TimedBody::new(body, state.body_deadline()))
}

/// The `kind` label of a connection that ended in an error.
fn connection_error_kind(err: &hyper::Error) -> &'static str {
    use std::error::Error as _;
    if err.is_parse() || err.is_parse_too_large() || err.is_parse_status() {
        return "malformed_request";
    }
    if err.is_incomplete_message() {
        return "incomplete";
    }
    if err
        .source()
        .is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some())
    {
        return "io";
    }
    "other"
}

/// Serves `GET /metrics` (Prometheus text format) on its own listener.
pub async fn serve_metrics<F>(
    listener: TcpListener,
    handle: PrometheusHandle,
    state: AppState,
    shutdown: F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        let (in_use, idle) = state.db.connections();
        telemetry::record_pool(in_use, idle, state.db.max_size());
        warp::reply::with_header(handle.render(), "content-type", "text/plain; version=0.0.4")
            .into_response()
    });
    warp::serve(metrics)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Measures the replica's lag every second while the process runs
/// (see [`crate::replica`] for what "lag" means here).
pub fn spawn_replica_lag_probe(state: &AppState) {
    let Some(lag) = state.lag.clone() else { return };
    let db = state.db.clone();
    tokio::spawn(async move {
        let mut estimator = crate::replica::LagEstimator::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            match db.wal_positions().await {
                Ok(positions) => {
                    let seconds = estimator
                        .observe(positions, std::time::Instant::now())
                        .as_secs_f64();
                    lag.set(seconds);
                    telemetry::record_replica_lag(seconds);
                }
                // Kept as it was: a probe that fails because the pool is saturated
                // must not send every read to the primary; an unreachable replica
                // is handled per request (fallback or 503).
                Err(err) => tracing::debug!(error = %err, "replica lag probe failed"),
            }
        }
    });
}

/// Resolves on SIGTERM (Knative scaling down) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = ctrl_c => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

/// The whole life of a function process: configuration, telemetry, pools,
/// listeners, serving, and a clean exit. Each binary's `main` is one call.
pub fn run(function: Function) -> ExitCode {
    let config = match Config::from_env(function.auth) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{}: configuration error: {err}", function.name);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{}: cannot start the async runtime: {err}", function.name);
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_async(function, config))
}

async fn run_async(function: Function, config: Config) -> ExitCode {
    telemetry::init_logging(&config.log_level, config.log_format());
    telemetry::set_function(function.name);
    telemetry::log_panics();
    let handle = telemetry::init_metrics(function.name);
    telemetry::spawn_upkeep(handle.clone());
    let state = AppState::from_config(&config);

    let serving = SocketAddr::new(config.bind_address, config.port);
    let metrics_addr = SocketAddr::new(config.bind_address, config.metrics_port);
    let (listener, metrics_listener) = match (
        TcpListener::bind(serving).await,
        TcpListener::bind(metrics_addr).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(err), _) => return bind_failed(function, "PORT", serving, err),
        (_, Err(err)) => return bind_failed(function, "METRICS_PORT", metrics_addr, err),
    };
    tracing::info!(
        function = function.name,
        route = function.route.template(),
        address = %serving,
        metrics = %metrics_addr,
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    spawn_replica_lag_probe(&state);

    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = tokio::spawn(serve_metrics(
        metrics_listener,
        handle,
        state.clone(),
        async move {
            let _ = metrics_stopped.await;
        },
    ));
    // Every public (anonymous) route is limited per client; token holders are not.
    let rate_limit = match function.auth {
        Auth::Public => RateLimit::from_config(&config),
        Auth::ReadToken | Auth::WriteToken => None,
    };
    serve(
        app(function, state),
        listener,
        shutdown_signal(),
        ServeLimits::from_config(&config),
        rate_limit,
    )
    .await;
    let _ = stop_metrics.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), metrics_task).await;
    tracing::info!(function = function.name, "stopped");
    telemetry::flush_logs();
    ExitCode::SUCCESS
}

fn bind_failed(
    function: Function,
    variable: &str,
    addr: SocketAddr,
    err: std::io::Error,
) -> ExitCode {
    eprintln!(
        "{}: cannot listen on {addr} ({variable}): {err}",
        function.name
    );
    ExitCode::FAILURE
}
