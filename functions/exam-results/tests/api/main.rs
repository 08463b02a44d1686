//! End-to-end tests of the five functions over real HTTP, against a real
//! PostgreSQL behind a real PgBouncer in transaction pooling mode.

mod batch;
mod chaos;
mod conditional;
mod consistency;
mod create;
mod delete;
mod docs;
mod errors;
mod get;
mod hardening;
mod idempotency;
mod list;
mod manifest;
mod metrics;
mod replica;
mod resilience;
mod schema;
mod support;
mod update;
