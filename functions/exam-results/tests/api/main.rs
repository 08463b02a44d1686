//! End-to-end tests of the functions over real HTTP, against a real
//! PostgreSQL behind a real PgBouncer in transaction pooling mode.

mod caching;
mod create;
mod delete;
mod docs;
mod errors;
mod get;
mod hardening;
mod list;
mod manifest;
mod metrics;
mod publication;
mod replica;
mod resilience;
mod schema;
mod statistics;
mod support;
mod update;
