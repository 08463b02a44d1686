//! # exam-results
//!
//! Everything the exam-results functions share. Each function is its own
//! binary (and its own Knative Service) whose `main` serves its operation
//! module's [`Function`] with [`server::run`]:
//!
//! ```no_run
//! use exam_results::{operations::get_result, server};
//! fn main() -> std::process::ExitCode {
//!     server::run(get_result::FUNCTION)
//! }
//! ```
//!
//! The functions are listed once, in `knative/exam-results/functions.yaml`;
//! `tests/api/manifest.rs` fails when the operation modules or the
//! workspace's binaries disagree with it.
//!
//! # Layout
//! - [`config`]: the typed configuration read once from environment variables.
//! - [`model`]: results, request bodies, and the validation that mirrors the
//!   database's CHECK constraints; domain errors ([`model::InputError`]), no HTTP.
//! - [`batch`]: a batch load's body read line by line (CSV, NDJSON) and
//!   the report of a rejected batch; no HTTP, no SQL.
//! - [`error`]: [`ApiError`], the one error enum, its JSON replies, and the
//!   one mapping of every domain and database error to it.
//! - [`db`]: the bb8 pool, the single-round-trip queries (safe for
//!   PgBouncer transaction pooling without prepared statements), the
//!   idempotency-key transaction and the batch load's transaction.
//! - [`state`]: [`AppState`], what handlers share, with the read/fallback policy.
//! - [`publication`]: when a year becomes public, who may read it before
//!   (staff tokens), the publication times' bounded refresh.
//! - [`read_cache`]: `Cache-Control` for shared caches and the in-process
//!   cache with request coalescing.
//! - [`statistics`]: a year's statistics from its mark counts; grade bands.
//! - [`replica`]: the read replica's lag, estimated from sampled WAL positions.
//! - [`route`]: route templates, declared once: path matching and the
//!   bounded `http_route` label.
//! - [`http`]: the request envelope (request id, log line, metrics) and the
//!   typed filters routes are composed of: method, bearer token, JSON body.
//! - [`operations`]: one module per operation (its [`Function`]: route
//!   filter + handler) and the health probes.
//! - [`telemetry`]: JSON logs and Prometheus metrics, named in one place.
//! - [`limits`]: what one connection may cost: idle, header and body
//!   timeouts, the request-head size, JSON bodies for the HTTP layer's own errors.
//! - [`ratelimit`]: the per-client token bucket on public routes.
//! - [`web`]: what browsers get: the results page (text per language in
//!   `web/text.json`) and CORS on public replies.
//! - [`server`]: assembling a function, the accept loop with its connection
//!   cap, graceful shutdown, the metrics listener, and [`server::run`].

pub mod batch;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod limits;
pub mod model;
pub mod operations;
pub mod publication;
pub mod ratelimit;
pub mod read_cache;
pub mod replica;
pub mod route;
pub mod server;
pub mod state;
pub mod statistics;
pub mod telemetry;
pub mod web;

pub use config::{Access, Auth, Config};
pub use error::ApiError;
pub use server::Function;
pub use state::AppState;
