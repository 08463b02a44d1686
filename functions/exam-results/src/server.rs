//! Assembling a function and serving it: the request envelope around the
//! routes, the metrics listener, graceful shutdown, and `run`, which each
//! binary's `main` calls.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::config::Config;
use crate::http::{context, finish, handle_rejection};
use crate::operations::health;
pub use crate::operations::Function;
use crate::state::AppState;
use crate::telemetry;

/// The complete HTTP application of one function: its route, the probes,
/// JSON errors for everything else, and the per-request envelope.
pub fn app(function: Function, state: AppState) -> BoxedFilter<(Response,)> {
    let routes = (function.routes)(state.clone())
        .or(health::routes(state))
        .unify()
        .recover(handle_rejection)
        .unify();
    context(function.served_routes())
        .and(routes)
        .map(finish)
        .boxed()
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests
/// in flight finish for up to `drain` before returning.
pub async fn serve<F>(
    app: BoxedFilter<(Response,)>,
    listener: TcpListener,
    shutdown: F,
    drain: Duration,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutdown requested: no new connections, draining requests in flight");
        let _ = signalled_tx.send(());
    };
    let server = warp::serve(app).incoming(listener).graceful(shutdown).run();
    let deadline = async move {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = server => tracing::info!("all requests drained"),
        () = deadline => tracing::warn!(drain_seconds = drain.as_secs(), "drain timeout reached; closing remaining connections"),
    }
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
    serve(
        app(function, state),
        listener,
        shutdown_signal(),
        Duration::from_secs(config.shutdown_drain_seconds),
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
