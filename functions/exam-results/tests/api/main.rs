//! End-to-end tests of the functions over real HTTP, against a real
//! PostgreSQL behind a real PgBouncer in transaction pooling mode.

mod bad_input;
mod batch;
mod caching;
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
mod page;
mod publication;
mod raw;
mod replica;
mod resilience;
mod schema;
mod statistics;
mod strict_input;
mod support;
mod update;
