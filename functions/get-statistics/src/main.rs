//! `get-statistics`: GET /results/{exam_year}/statistics: a year's statistics.
//!
//! A thin binary: its operation module declares the function (route, method,
//! access, handler); the shared library does the rest (configuration, pool,
//! telemetry, serving, graceful shutdown).

fn main() -> std::process::ExitCode {
    exam_results::server::run(exam_results::operations::get_statistics::FUNCTION)
}
