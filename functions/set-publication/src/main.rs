//! `set-publication`: PUT /publications/{exam_year}: sets, moves or withdraws a year's publication time.
//!
//! A thin binary: its operation module declares the function (route, method,
//! access, handler); the shared library does the rest (configuration, pool,
//! telemetry, serving, graceful shutdown).

fn main() -> std::process::ExitCode {
    exam_results::server::run(exam_results::operations::set_publication::FUNCTION)
}
