//! # exam-results
//!
//! Everything the five exam-results functions share. Each function is its
//! own binary (and its own Knative Service) whose `main` names its route and
//! handler and calls [`server::run`]:
//!
//! ```no_run
//! use exam_results::{operations::get_result, server, Access};
//! fn main() -> std::process::ExitCode {
//!     server::run(server::Function {
//!         name: "get-result",
//!         access: Access::Read,
//!         route: get_result::ROUTE,
//!         routes: get_result::routes,
//!     })
//! }
//! ```
//!
//! # Layout
//! - [`config`]: the typed configuration read once from environment variables.
//! - [`model`]: results, request bodies, and the validation that mirrors the
//!   database's CHECK constraints.
//! - [`error`]: [`ApiError`], the one error enum, and its JSON replies.
//! - [`db`]: the bb8 pool and the five single-round-trip queries (safe for
//!   PgBouncer transaction pooling without prepared statements).
//! - [`state`]: [`AppState`], what handlers share, with the read/fallback policy.
//! - [`replica`]: the read replica's lag, estimated from sampled WAL positions.
//! - [`http`]: the request envelope (request id, log line, metrics), bounded
//!   JSON bodies and bearer-token auth.
//! - [`operations`]: one module per operation (route filter + handler) and the
//!   health probes.
//! - [`telemetry`]: JSON logs and Prometheus metrics, named in one place.
//! - [`limits`]: what one connection may cost: idle, header and body
//!   timeouts, the request-head size, JSON bodies for the HTTP layer's own errors.
//! - [`ratelimit`]: the per-client token bucket on public routes.
//! - [`server`]: assembling a function, the accept loop with its connection
//!   cap, graceful shutdown, the metrics listener, and [`server::run`].

pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod limits;
pub mod model;
pub mod operations;
pub mod ratelimit;
pub mod replica;
pub mod server;
pub mod state;
pub mod telemetry;

pub use config::{Access, Config};
pub use error::ApiError;
pub use server::Function;
pub use state::AppState;
